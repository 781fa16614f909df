"""A local web server for test pages: tests never reach the internet.

`serve_pages({"/red": html, ...})` is an async context manager yielding the base URL of an
aiohttp server on 127.0.0.1.

A sandboxed browser reaches only the host ports in ALLOW_HOST_PORTS, so page servers take a
port from a block of this test process's own (`PAGE_PORTS`), which every test's settings let
through (`ALLOW_HOST_PORTS`, also put in the environment for servers started as processes).
The block is chosen from the pid, and a port another run holds is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

SOLID = "<html><body style='margin:0;background:{color}'></body></html>"
ANIMATED = """<html><body style='margin:0'><canvas id=c></canvas><script>
const c = document.getElementById('c'); c.width = innerWidth; c.height = innerHeight;
const g = c.getContext('2d'); let n = 0;
(function f() { n++; g.fillStyle = `hsl(${n % 360},80%,50%)`; g.fillRect(0, 0, c.width, c.height);
  requestAnimationFrame(f); })();
</script></body></html>"""
CLICKS = """<html><body style='margin:0;width:100vw;height:100vh'>
<input id=t style='position:absolute;left:10px;top:10px;width:200px'>
<script>window.clicks = [];
document.addEventListener('mousedown', e => window.clicks.push([e.clientX, e.clientY]));
</script></body></html>"""
TONE = """<html><body><script>
const ctx = new AudioContext(); const o = ctx.createOscillator(); o.frequency.value = 440;
const g = ctx.createGain(); g.gain.value = 0.5; o.connect(g); g.connect(ctx.destination);
o.start(); window.audioState = () => ctx.state;
</script></body></html>"""


PAGE_PORT_COUNT = 32
_first = 20000 + (os.getpid() % 600) * PAGE_PORT_COUNT
PAGE_PORTS = range(_first, _first + PAGE_PORT_COUNT)
ALLOW_HOST_PORTS = f"{PAGE_PORTS[0]}-{PAGE_PORTS[-1]}"


def solid(color: str) -> str:
    return SOLID.format(color=color)


@contextlib.asynccontextmanager
async def serve_pages(pages: Mapping[str, str], *, delays: Mapping[str, float] | None = None
                      ) -> AsyncIterator[str]:
    """`delays`: seconds a path waits before it answers (a slow resource)."""
    async def handler(request: web.Request) -> web.Response:
        body = pages.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        if delays and request.path in delays:
            await asyncio.sleep(delays[request.path])
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await _start_on_a_page_port(runner)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _start_on_a_page_port(runner: web.AppRunner) -> int:
    for port in PAGE_PORTS:
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return port
    await runner.cleanup()
    raise RuntimeError(f"every page port {ALLOW_HOST_PORTS} is taken")


def bind_page_port() -> socket.socket:
    """A listening-ready socket on a free port of the block: for tests that serve pages
    their own way (a server that never answers)."""
    for port in PAGE_PORTS:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        return sock
    raise RuntimeError(f"every page port {ALLOW_HOST_PORTS} is taken")
