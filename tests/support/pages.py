"""A local web server for test pages: tests never reach the internet.

`serve_pages({"/red": html, ...})` is an async context manager yielding the base URL of an
aiohttp server on 127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
