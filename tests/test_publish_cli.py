"""`lkpool publish` as a user runs it: a real subprocess (engine cef with the painting
stand-in of tests/support/cef.py, so no Chromium starts), its exit status and its message."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from tests.test_publish_server import LIVE, refusing_livekit


async def lkpool(*args: str, env: dict[str, str], timeout: float = 60.0):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkpool", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(ENGINE="cef", NUM_WARM="1", **extra)
    return env


async def test_publish_without_credentials_exits_2_naming_them(cef_standin, tmp_path):
    """No LiveKit key: status 2 and a message naming the variables, before any browser."""
    code, err = await lkpool("publish", "about:blank", "--room", "r",
                             env=clean_env(XDG_CACHE_HOME=os.environ["XDG_CACHE_HOME"]))
    assert code == 2 and "LIVEKIT_API_KEY" in err and "LIVEKIT_URL" in err, err


async def test_publish_to_a_refusing_server_exits_1_with_the_reason(cef_standin, profile_dir):
    """A LiveKit server that refuses the token: status 1, the reason, and the in-process pool
    stopped (no process, shm or profile left)."""
    async with refusing_livekit() as (lk_url, _):
        code, err = await lkpool(
            "publish", "about:blank#ff0000", "--room", "r", "--livekit-url", lk_url,
            "--token", "bad", "--width", "160", "--height", "120",
            env=clean_env(XDG_CACHE_HOME=os.environ["XDG_CACHE_HOME"],
                          CHROMIUM_PROFILE_BASE_DIR=str(profile_dir)))
    assert code == 1 and "cannot join the room" in err and "401" in err, err


@pytest.mark.skipif(not LIVE, reason="needs a LiveKit server: set LIVEKIT_URL, "
                                     "LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
async def test_publish_runs_until_ctrl_c(cef_standin, profile_dir):
    """Against a real LiveKit server: it says it is publishing, and SIGINT ends it with 0."""
    env = dict(os.environ, ENGINE="cef", CHROMIUM_PROFILE_BASE_DIR=str(profile_dir))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkpool", "publish", "about:blank", "--room", "lkpool-cli-test",
        env=env, stderr=asyncio.subprocess.PIPE)
    try:
        while b"publishing" not in (line := await asyncio.wait_for(proc.stderr.readline(), 30)):
            assert line, "exited before publishing"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
