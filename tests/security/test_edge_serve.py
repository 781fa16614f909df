"""No token, no network: `lkpool serve --host 0.0.0.0` without TOKEN never serves the pool
to a client that lacks the token it generated and printed once."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest

from tests.security.conftest import request
from tests.support import leaks

pytestmark = pytest.mark.timeout(120)

LISTENING = re.compile(rb"listening on http://[^:]+:(\d+)")
TOKEN_LINE = re.compile(rb"TOKEN=(\S+)")


async def _serve(host: str, profile_dir) -> tuple[asyncio.subprocess.Process, int, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "TOKEN"}
    env["CHROMIUM_PROFILE_BASE_DIR"] = str(profile_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkpool", "serve", "--host", host, "--port", "0",
        "--num-warm", "0", stderr=asyncio.subprocess.PIPE, env=env)
    leaks.spawned_pids.add(proc.pid)
    log = b""
    while not (found := LISTENING.search(log)):
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, log.decode(errors="replace")
        log += line
    return proc, int(found.group(1)), log


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    proc.terminate()
    rest = await asyncio.wait_for(proc.stderr.read(), 30)
    await proc.wait()
    return rest


async def test_any_address_without_token_requires_a_generated_one(profile_dir) -> None:
    """0.0.0.0 without TOKEN: /browsers is 401 without the token printed once at start,
    200 with it; /health stays open; the token is printed exactly once."""
    proc, port, log = await _serve("0.0.0.0", profile_dir)
    try:
        base = f"http://127.0.0.1:{port}"
        found = TOKEN_LINE.search(log)
        assert found and b"TOKEN" in log, log.decode(errors="replace")
        token = found.group(1).decode()
        assert len(token) >= 32
        for path in ("/browsers", "/metrics"):
            status, body = await request(base, "GET", path)
            assert (status, body["error"]) == (401, "unauthorized"), (path, body)
        status, body = await request(base, "POST", "/browser")
        assert status == 401
        status, _ = await request(base, "GET", "/browsers",
                                  headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        status, _ = await request(base, "GET", "/health")
        assert status == 200
    finally:
        rest = await _stop(proc)
    assert (log + rest).count(token.encode()) == 1  # printed once, never logged again


async def test_loopback_without_token_is_open_to_this_machine(profile_dir) -> None:
    """On 127.0.0.1 no token is made up: local tools keep working without one."""
    proc, port, log = await _serve("127.0.0.1", profile_dir)
    try:
        assert b"TOKEN=" not in log
        status, _ = await request(f"http://127.0.0.1:{port}", "GET", "/browsers")
        assert status == 200
    finally:
        await _stop(proc)
