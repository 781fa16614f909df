"""The DevTools proxy: Playwright through it, DevTools' URLs rewritten, escapes refused."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from playwright.async_api import async_playwright
from yarl import URL

from lkpool.proc import forward
from tests.server.conftest import run_server
from tests.support.pages import serve_pages

PAGE = "<title>proxied</title><body style='background:#0f0'><p id=p>hello</p></body>"


async def test_playwright_and_escapes(small) -> None:
    """Playwright's connect_over_cdp works through the proxy (goto, evaluate, screenshot),
    and no path, encoding or Host header gets the proxy anywhere but its own instance."""
    async with serve_pages({"/page": PAGE}) as site, run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        sid = body["session_id"]

        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(body["proxy_url"], timeout=30_000)
            try:
                page = browser.contexts[0].pages[0]
                await page.goto(f"{site}/page")
                assert await page.title() == "proxied"
                assert await page.evaluate("document.getElementById('p').textContent") == "hello"
                shot = await page.screenshot()
                assert shot.startswith(b"\x89PNG")
            finally:
                await browser.close()
        assert srv.pool.get(sid).active  # Playwright's close did not end the lease
        async with srv.http.get(srv.url("/metrics")) as resp:
            assert 'lkpool_proxied_messages_total{direction="to_client"}' in await resp.text()

        # /json/new is PUT only, as in Chromium (a web page can send a GET); its answer comes
        # back rewritten
        status, err = await srv.json("GET", f"/session/{sid}/json/new?about:blank")
        assert (status, err["error"]) == (405, "method_not_allowed")
        status, target = await srv.json("PUT", f"/session/{sid}/json/new?about:blank")
        assert status == 200 and f"/session/{sid}/devtools/page/" in target["webSocketDebuggerUrl"]
        async with srv.http.get(srv.url(f"/session/{sid}/json/close/{target['id']}")) as resp:
            assert resp.status == 200 and "closing" in await resp.text()

        refused = {
            f"/session/{sid}/json/..%2F..%2Fjson": 400,
            f"/session/{sid}/json%2Fversion": 400,
            f"/session/{sid}/devtools/page/%2e%2e": 400,
            f"/session/{sid}/json/a\\b": 400,
            f"/session/{sid}/json//version": 400,
            f"/session/{sid}/json/@127.0.0.1:1/": 400,
            f"/session/{sid}/json/http:/evil.example/": 400,
            f"/session/{sid}/etc/passwd": 404,
            f"/session/{sid}/": 404,
            f"/session/{sid}/devtools": 404,
        }
        for path, expected in refused.items():
            async with srv.http.get(URL(srv.url(path), encoded=True)) as resp:
                err = await resp.json(content_type=None)
                assert resp.status == expected and "error" in err, (path, resp.status, err)
        # an odd Host header cannot end up in the URLs the proxy hands back
        status, err = await srv.json("GET", f"/session/{sid}/json/list",
                                     headers={"Host": "evil.example/x?"})
        assert status == 403  # not a name of this server: refused at the edge
        # a WebSocket to anything but a DevTools target is refused before it upgrades
        for path in (f"/session/{sid}/json/version", f"/session/{sid}/devtools/page/a.b/c"):
            try:
                async with srv.http.ws_connect(srv.url(path)):
                    raise AssertionError(f"{path} upgraded")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status in (400, 404), path
        # a page target of the instance is reachable by its id, through the proxy only
        status, targets = await srv.json("GET", f"/session/{sid}/json/list")
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["url"] == f"{site}/page")
        async with srv.http.ws_connect(page_ws) as ws:
            await ws.send_json({"id": 1, "method": "Runtime.evaluate",
                                "params": {"expression": "location.href", "returnByValue": True}})
            reply = await ws.receive_json(timeout=15)
            assert reply["result"]["result"]["value"] == f"{site}/page"


def _host_connections_to(port: int) -> int:
    """Established TCP connections of the host's network namespace whose far end is
    127.0.0.1:`port` (the child's relay of an instance's DevTools)."""
    count = 0
    for line in open("/proc/self/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and fields[2] == f"0100007F:{port:04X}":
            count += 1
    return count


@pytest.mark.skipif(not forward.can_enter_namespaces(), reason="a root server enters sandboxes")
async def test_the_proxy_reaches_devtools_inside_the_sandbox(small) -> None:
    """A proxied DevTools WebSocket is opened from inside the lease's sandbox: it does not
    go through the child's relay on the host's loopback (one copy of each message fewer)."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        sid, port = body["session_id"], body["debugging_port"]
        status, targets = await srv.json("GET", f"/session/{sid}/json/list")
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        await asyncio.sleep(0.2)  # the HTTP request's connection to the relay is closed
        before = _host_connections_to(port)
        async with srv.http.ws_connect(page_ws) as ws:
            await ws.send_json({"id": 1, "method": "Runtime.evaluate",
                                "params": {"expression": "1"}})
            assert "result" in await ws.receive_json(timeout=15)
            assert _host_connections_to(port) == before


def test_a_namespace_is_only_the_one_the_child_named() -> None:
    """A pid reused by another process (another lease's sandbox) never gets the proxy into
    its namespace: the handle is checked against the namespace's inode."""
    pid = os.getpid()
    inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    assert forward.Namespace.open(pid, inode + 1) is None
    assert forward.Namespace.open(pid, 0) is None
    if not forward.can_enter_namespaces():
        return
    ns = forward.Namespace.open(pid, inode)
    assert ns is not None
    ns.socket().close()
    ns.close()
    with pytest.raises(OSError):
        ns.socket()
