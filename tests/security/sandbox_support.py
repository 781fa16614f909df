"""What the sandbox tests share: a real server, leases driven the way an attacker would
(full CDP through the proxy), canaries planted where a lease must not reach, and a page
server of test pages on a port the sandbox lets through (ALLOW_HOST_PORTS).

Its fixtures reach every test through the root conftest's `pytest_plugins`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from lkpool.pool import Pool
from lkpool.proc.cdp import CDPConnection, CDPError
from tests.server.conftest import Server, run_server
from tests.support.pages import bind_page_port

FILE_INPUT = "<input id=f type=file>"
DOWNLOAD_NAME = "canary-download.bin"
SW_JS = "self.addEventListener('fetch', () => {});"


@contextlib.asynccontextmanager
async def serve_site(extra: dict[str, web.Response] | None = None) -> AsyncIterator[str]:
    """Test pages on an allowed page port: `/` (a file input), `/sw.js` (a service worker),
    `/download?bytes=N` (N bytes as an attachment), plus `extra` (path -> response)."""
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=f"<html><body>{FILE_INPUT}</body></html>",
                            content_type="text/html")

    async def sw(_: web.Request) -> web.Response:
        return web.Response(text=SW_JS, content_type="application/javascript")

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", "1024"))
        pause = float(request.query.get("pause", "0"))  # seconds between 64 KB chunks
        resp = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size),
            "Content-Disposition": f"attachment; filename={DOWNLOAD_NAME}"})
        await resp.prepare(request)
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < size:
                part = chunk[:min(len(chunk), size - sent)]
                await resp.write(part)
                sent += len(part)
                if pause:
                    await asyncio.sleep(pause)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/sw.js", sw)
    app.router.add_get("/download", download)
    for path, resp in (extra or {}).items():
        app.router.add_get(path, lambda _r, resp=resp: resp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = bind_page_port()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@dataclass
class Lease:
    """One lease as its holder sees it: the allocation's answer and a CDP connection to the
    browser through the proxy, with the lease's page attached."""
    body: dict[str, Any]
    cdp: CDPConnection
    page_target: str
    session: str  # the page's CDP session (flat)

    @property
    def id(self) -> str:
        return self.body["session_id"]

    async def send(self, method: str, **params: Any) -> Any:
        return await self.cdp.send(method, params, timeout=30)

    async def page(self, method: str, **params: Any) -> Any:
        return await self.cdp.send(method, params, session_id=self.session, timeout=30)

    async def js(self, expression: str) -> Any:
        """The value of `expression` in the lease's page (promises awaited)."""
        res = await self.page("Runtime.evaluate", expression=expression, awaitPromise=True,
                              returnByValue=True)
        if "exceptionDetails" in res:
            raise CDPError(res["exceptionDetails"].get("exception", {}).get(
                "description", res["exceptionDetails"].get("text", "script error")))
        return res["result"].get("value")

    async def goto(self, url: str) -> dict[str, Any]:
        """Page.navigate, then waits for the load (or the error page) to be there."""
        res = await self.page("Page.navigate", url=url)
        for _ in range(100):
            if await self.js("document.readyState") == "complete":
                break
            await _sleep(0.05)
        return res

    async def text_of(self, url: str) -> str:
        """What the page shows after navigating to `url` ("" when nothing is shown)."""
        await self.goto(url)
        return str(await self.js("document.documentElement ? "
                                 "document.documentElement.innerText : ''"))


async def _sleep(seconds: float) -> None:
    import asyncio
    await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def lease(srv: Server) -> AsyncIterator[Lease]:
    """Allocates a lease and connects to it through the proxy as its holder would."""
    body = await srv.allocate(timeout=120)
    cdp = await CDPConnection.connect(body["ws_url"], 30)
    try:
        targets = (await cdp.send("Target.getTargets", timeout=30))["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        session = (await cdp.send("Target.attachToTarget", {"targetId": page,
                                                            "flatten": True}))["sessionId"]
        await cdp.send("Runtime.enable", session_id=session)
        yield Lease(body, cdp, page, session)
    finally:
        await cdp.close()
        await srv.json("DELETE", f"/browser/{body['session_id']}")


def instance_of(pool: Pool, session_id: str):
    """The context (instance) serving a lease, for what only the host can see."""
    return pool.get(session_id).context


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def renderers(pid: int) -> int:
    """Renderer processes under `pid` (an instance's child)."""
    count = 0
    for proc in tree(pid):
        try:
            if "--type=renderer" in proc.cmdline():
                count += 1
        except psutil.Error:
            continue
    return count


@dataclass
class Canaries:
    """Secret files planted where no lease may read: path -> secret."""
    files: dict[str, str]

    def leaked_in(self, text: str) -> list[str]:
        return [path for path, secret in self.files.items() if secret in (text or "")]


@contextlib.contextmanager
def plant(*folders: str | Path):
    """A canary file with a secret of its own in each folder; removed afterwards."""
    files = {}
    try:
        for folder in folders:
            secret = "canary-" + secrets.token_hex(8)
            path = os.path.join(folder, f".lkpool-{secret}.txt")
            with open(path, "w") as f:
                f.write(secret)
            files[path] = secret
        yield Canaries(files)
    finally:
        for path in files:
            with contextlib.suppress(OSError):
                os.unlink(path)


@pytest.fixture
def sandboxed(settings):
    """Server settings for the attacks: two instances, small pages, no audio."""
    return settings.replace(width=320, height=240, framerate=10, audio=False, num_warm=2,
                            max_instances=2, acquire_timeout=30.0)


__all__ = ["Canaries", "Lease", "instance_of", "lease", "plant", "renderers", "run_server",
           "sandboxed", "serve_site", "tree"]
