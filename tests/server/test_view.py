"""The live view and the lease list, driven in a real Chromium by Playwright."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import pytest
import simplejpeg
from playwright.async_api import async_playwright

from tests.server.conftest import run_server
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(120)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
BUTTON = """<html><body style='margin:0;background:#0000ff'>
<button id=b style='position:absolute;left:100px;top:80px;width:120px;height:80px'
 onclick="window.clicked = true; document.body.style.background = '#00ff00'">go</button>
<button id=ask style='position:absolute;left:250px;top:190px;width:60px;height:40px'
 onclick="window.name_given = prompt('your name?', '')">ask</button>
</body></html>"""


async def _evaluate(http: aiohttp.ClientSession, base: str, sid: str, expr: str) -> Any:
    """CDP Runtime.evaluate on the lease's page, through the server's DevTools proxy."""
    async with http.get(f"{base}/session/{sid}/json/list") as resp:
        targets = await resp.json()
    ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    async with http.ws_connect(ws_url) as ws:
        await ws.send_json({"id": 1, "method": "Runtime.evaluate",
                            "params": {"expression": expr, "returnByValue": True}})
        while (msg := await ws.receive_json(timeout=10)).get("id") != 1:
            pass
    return msg["result"]["result"].get("value")


async def test_view_shows_and_drives_the_page(settings, tmp_path) -> None:
    """A click in the view reaches the page, the view shows its pixels, the list links to it,
    and the view says when the lease ends."""
    small = settings.replace(width=320, height=240, framerate=30, max_instances=1, audio=False)
    async with serve_pages({"/button": BUTTON}) as site, run_server(small) as server, \
            async_playwright() as pw:
        lease = await server.pool.acquire(60, url=site + "/button")
        sid = lease.session_id
        for _ in itertools.repeat(None, 200):
            if await lease.page.evaluate("location.pathname") == "/button":
                break
            await asyncio.sleep(0.05)
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            # the view's CSP forbids eval, which Playwright's wait_for_function needs
            context = await browser.new_context(viewport={"width": 800, "height": 600},
                                                bypass_csp=True)
            view = await context.new_page()
            await view.goto(f"{server.base}/session/{sid}/view")
            await view.wait_for_function("window.lkview.frames > 0", timeout=20_000)
            canvas = view.locator("#screen")

            async def centre_pixel() -> tuple[int, int, int]:
                shot = await canvas.screenshot(type="jpeg", quality=95)
                rgb = simplejpeg.decode_jpeg(shot)
                h, w = rgb.shape[:2]
                return tuple(int(v) for v in rgb[h // 8, w // 8])  # beside the button

            await wait_until_async(lambda: _is(centre_pixel(), (0, 0, 255)), "blue page in view")

            box = await canvas.bounding_box()
            assert box is not None
            # the button's centre in page pixels -> where it is on the (maybe scaled) canvas
            x = box["x"] + 160 * box["width"] / 320
            y = box["y"] + 120 * box["height"] / 240
            await view.mouse.click(x, y)
            await wait_until_async(
                lambda: _evaluate(server.http, server.base, sid, "window.clicked === true"),
                "the click to reach the page")
            await wait_until_async(lambda: _is(centre_pixel(), (0, 255, 0)), "green in view")

            # a prompt the page opens shows above the screen, and is answered there
            await view.mouse.click(box["x"] + 280 * box["width"] / 320,
                                   box["y"] + 210 * box["height"] / 240)
            await view.wait_for_function("window.lkview.dialog !== null", timeout=10_000)
            assert "your name?" in await view.locator("#dialog-text").inner_text()
            await view.locator("#dialog-input").fill("Ada")
            await view.locator("#dialog-ok").click()
            await wait_until_async(
                lambda: _evaluate(server.http, server.base, sid, "window.name_given === 'Ada'"),
                "the answer to reach the page")
            assert not await view.locator("#dialog").is_visible()

            listing = await context.new_page()
            await listing.goto(server.base + "/")
            link = listing.locator(f"a[href='/session/{sid}/view']")
            await link.wait_for(timeout=10_000)

            await server.pool.release(sid)
            await view.wait_for_function("window.lkview.ended", timeout=10_000)
            text = await view.locator("#ended").inner_text()
            assert "ended" in text and "released" in text
        finally:
            await browser.close()


async def _is(pixel_coro, want: tuple[int, int, int]) -> bool:
    pixel = await pixel_coro
    return all(abs(a - b) < 40 for a, b in zip(pixel, want, strict=True))


async def wait_until_async(make, what: str, timeout: float = 20.0) -> None:
    """Awaits `make()` until it is truthy, bounded (not a timed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await make():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def test_lease_list_asks_for_the_token(settings) -> None:
    """With TOKEN set, / still loads, asks for the token and then lists with it (sent in a
    header: the address bar never shows it)."""
    guarded = settings.replace(token="s3cret", num_warm=0, audio=False)
    async with run_server(guarded) as server, async_playwright() as pw:
        async with server.http.get(server.base + "/browsers") as resp:
            assert resp.status == 401
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(server.base + "/")
            await page.locator("#token").fill("s3cret")
            await page.locator("#auth button").click()
            await page.locator("#msg", has_text="no leases").wait_for(timeout=10_000)
            assert "s3cret" not in page.url
        finally:
            await browser.close()
