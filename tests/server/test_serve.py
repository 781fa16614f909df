"""`lkpool serve` as a real subprocess: flags, bad values, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp

from tests.server.conftest import serve_subprocess


def lkpool(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lkpool", *args], capture_output=True,
                          timeout=60, **kwargs)


def test_help_lists_every_setting_and_bad_values_exit_2() -> None:
    """--help names each setting's flag, env var and default; a bad value exits 2 with the
    ConfigError message; an unknown command is refused."""
    out = " ".join(lkpool("serve", "--help").stdout.decode().split())  # unwrapped
    for flag, env in (("--num-warm", "NUM_WARM"), ("--max-instances", "MAX_INSTANCES"),
                      ("--chromium-profile-base-dir", "CHROMIUM_PROFILE_BASE_DIR"),
                      ("--proxy-connection-timeout", "PROXY_CONNECTION_TIMEOUT"),
                      ("--host", "HOST"), ("--port", "PORT"), ("--token", "TOKEN")):
        assert flag in out and f"env {env}" in out, flag
    assert "default 8888" in out
    bad = lkpool("serve", "--num-warm", "lots")
    assert bad.returncode == 2 and b"NUM_WARM='lots' is not a valid int" in bad.stderr
    bad = lkpool("serve", env=os.environ | {"MAX_INSTANCES": "0"})
    assert bad.returncode == 2 and b"MAX_INSTANCES=0 is out of range" in bad.stderr
    assert lkpool("nonsense").returncode == 2


async def test_sigterm_stops_everything(small, profile_dir) -> None:
    """A served pool with a lease and a proxied WebSocket stops on SIGTERM: the socket is
    closed as going away, the process exits 0, and nothing is left behind."""
    async with serve_subprocess(
            "--num-warm", "1", "--chromium-profile-base-dir", str(profile_dir), "--width", "320",
            "--height", "240", "--audio", "0", "--framerate", "10") as served:
        proc, base = served.proc, served.base
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/browser", params={"timeout": 60}) as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.ws_connect(body["ws_url"]) as ws:
                proc.send_signal(signal.SIGTERM)
                closing = await ws.receive(timeout=30)
            assert closing.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert b"stopped" in served.log
