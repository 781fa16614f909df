"""The index and live-view pages in a real Chromium: not frameable, no Referer, the token
kept out of every URL (the pages' and the Python client's), and the page's cursor shown
only as a CSS keyword."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from lkpool.client import APIClient
from tests.security.conftest import EVIL, chromium
from tests.server.conftest import run_server, wait_until
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(120)
TOKEN = "tok-" + "q" * 40


async def test_pages_cannot_be_framed_and_send_no_referrer(edge) -> None:
    """/ and /session/{id}/view carry CSP frame-ancestors 'none' and Referrer-Policy
    no-referrer, and a page of evil.example that frames the view gets nothing."""
    async with run_server(edge) as srv:
        sid = (await srv.allocate(timeout=60))["session_id"]
        for path in ("/", f"/session/{sid}/view"):
            async with srv.http.get(srv.url(path)) as resp:
                assert resp.status == 200
                assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
                assert resp.headers["Referrer-Policy"] == "no-referrer"
        frame_html = f"<iframe id=f src='{srv.base}/session/{sid}/view'></iframe>"
        async with serve_pages({"/frame": frame_html}) as site, chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"http://{EVIL}:{site.rsplit(':', 1)[1]}/frame")
            await asyncio.sleep(1.0)
            frame = next(f for f in page.frames if f != page.main_frame)
            # a blocked frame shows Chromium's error page instead of the view
            assert not frame.url.startswith(srv.base) or await frame.evaluate(
                "typeof window.lkview") == "undefined"


async def test_the_token_stays_out_of_urls(edge) -> None:
    """The lease list takes the token once; no request, link, WebSocket URL or Referer of
    the list or the live view carries it, and an old ?token= link is cleaned away."""
    async with run_server(edge.replace(token=TOKEN)) as srv:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with srv.http.post(srv.url("/browser?timeout=60"), headers=auth) as resp:
            sid = (await resp.json())["session_id"]
        async with chromium() as browser:
            context = await browser.new_context(bypass_csp=True)
            page = await context.new_page()
            seen: list[str] = []
            context.on("request", lambda r: seen.append(
                r.url + " " + (r.headers.get("referer") or "")))
            page.on("websocket", lambda ws: seen.append(ws.url))
            await page.goto(srv.base + "/")
            await page.locator("#token").fill(TOKEN)
            await page.locator("#auth button").click()
            link = page.locator(f"a[href='/session/{sid}/view']")
            await link.wait_for(timeout=10_000)
            await link.click()
            await page.wait_for_function("window.lkview && window.lkview.frames > 0",
                                         timeout=20_000)
            assert any("/input" in u for u in seen) and any("/frames" in u for u in seen)
            # an old-style link: the token is taken, then removed from the address bar
            old = await context.new_page()
            old.on("websocket", lambda ws: seen.append(ws.url))
            await old.goto(srv.base + "/?token=" + TOKEN)
            await old.locator(f"a[href='/session/{sid}/view']").wait_for(timeout=10_000)
            assert TOKEN not in old.url
            await old.goto(srv.base + f"/session/{sid}/view?token=" + TOKEN)
            await old.wait_for_function("window.lkview.frames > 0", timeout=20_000)
            assert TOKEN not in old.url
        leaked = [u for u in seen if TOKEN in u and "?token=" + TOKEN not in u.split(" ")[0]]
        assert not leaked, leaked


async def test_the_python_client_sends_the_token_in_a_header(edge) -> None:
    """APIClient's requests and sockets carry the token in Authorization, never in a URL."""
    urls: list[str] = []

    async def on_start(_session, _ctx, params) -> None:
        urls.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with run_server(edge.replace(token=TOKEN)) as srv:
        client = APIClient(srv.base, token=TOKEN)
        client._http = aiohttp.ClientSession(headers=client._headers(), trace_configs=[trace])
        async with client:
            await client.allocate_browser(60)
            await client.extend_timeout(10)
            await client.list_browsers()
            async with client.frames("jpeg", max_width=64) as frames:
                await anext(frames)
            await client.mouse_move(5, 5)
    assert urls and not [u for u in urls if TOKEN in u], urls


CURSOR_PAGE = """<html><body style='margin:0;width:100vw;height:100vh;
cursor: url(http://127.0.0.1:%(port)s/track.png), pointer'></body></html>"""


async def test_the_live_view_shows_cursor_keywords_only(edge) -> None:
    """A page whose cursor is url(tracker), pointer: the view shows `pointer` and never
    asks the tracker for anything (only the leased page itself does)."""
    hits: list[str] = []

    async def tracker(request: web.Request) -> web.Response:
        hits.append(request.headers.get("Referer", ""))
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", tracker)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        async with serve_pages({"/c": CURSOR_PAGE % {"port": port}}) as site, \
                run_server(edge) as srv, chromium() as browser:
            lease = await srv.pool.acquire(60, url=site + "/c")
            # CSP bypassed: the keyword filter alone must keep the tracker out
            context = await browser.new_context(viewport={"width": 800, "height": 600},
                                                bypass_csp=True)
            view = await context.new_page()
            await view.goto(f"{srv.base}/session/{lease.session_id}/view")
            await view.wait_for_function("window.lkview.frames > 0", timeout=20_000)
            box = await view.locator("#screen").bounding_box()
            await view.mouse.click(box["x"] + 10, box["y"] + 10)
            for i in range(20):
                await view.mouse.move(box["x"] + 20 + i, box["y"] + 20 + i)
                await asyncio.sleep(0.05)
            await wait_until(lambda: lease.page.cursor != "default" and lease.page.cursor,
                             what="the page's cursor to reach the server")
            assert "url(" in lease.page.cursor  # the page did send its tracker
            shown = await view.evaluate(
                "getComputedStyle(document.getElementById('screen')).cursor")
            for _ in range(50):
                if shown == "pointer":
                    break
                await asyncio.sleep(0.1)
                shown = await view.evaluate(
                    "getComputedStyle(document.getElementById('screen')).cursor")
            assert shown == "pointer"
            await asyncio.sleep(0.5)
            # the leased page loads its own cursor image (its Referer says so); the view, none
            assert all(h.startswith(site) for h in hits), hits
    finally:
        await runner.cleanup()
