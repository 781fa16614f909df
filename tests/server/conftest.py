"""The shared helper of the server tests: `run_server(settings)` starts the real app (real
pool, real Chromium) on 127.0.0.1 with an ephemeral port, waits for the warm floor, and tears
everything down (pool included) on exit."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from lkpool.config import Settings
from lkpool.pool import Pool
from lkpool.server.app import serve_local
from lkpool.server.appkeys import POOL
from tests.support import leaks


@dataclass
class Server:
    base: str
    app: web.Application
    http: aiohttp.ClientSession

    @property
    def pool(self) -> Pool:
        return self.app[POOL]

    def url(self, path: str) -> str:
        return self.base + path

    async def allocate(self, **params: Any) -> dict[str, Any]:
        """POST /browser with query parameters; asserts 200 and returns the JSON."""
        async with self.http.post(self.url("/browser"), params=params) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body

    async def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url(path), **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0,
                     what: str = "condition") -> Any:
    """Polls `predicate` until it is truthy: a bounded wait, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def run_server(settings: Settings, *, ready: bool = True) -> AsyncIterator[Server]:
    async with serve_local(settings) as (base, app), aiohttp.ClientSession() as http:
        server = Server(base, app, http)
        if ready:
            await server.pool.wait_ready()
        yield server


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Test settings for the server: small pages, no audio, quick health checks."""
    return settings.replace(width=320, height=240, framerate=10, audio=False,
                            health_check_interval=0.5, acquire_timeout=2.0)


LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    """A `lkpool serve` subprocess: its process, base URL, and the log it wrote."""

    proc: asyncio.subprocess.Process
    base: str
    log: bytearray


@contextlib.asynccontextmanager
async def serve_subprocess(*args: str) -> AsyncIterator[Served]:
    """Runs `lkpool serve --port 0 ARGS...` until it listens; kills it if the test did not
    stop it. Its stderr is drained all along, so the pipe never fills up."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkpool", "serve", "--port", "0", *args,
        stderr=asyncio.subprocess.PIPE)
    leaks.spawned_pids.add(proc.pid)
    log = bytearray()
    drain: asyncio.Task | None = None
    try:
        while not (found := LISTENING.search(log)):
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, log.decode(errors="replace")
            log += line

        async def keep_reading() -> None:
            while chunk := await proc.stderr.read(1 << 16):
                log.extend(chunk)

        drain = asyncio.create_task(keep_reading())
        yield Served(proc, found.group(1).decode(), log)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            await drain
