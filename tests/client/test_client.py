"""APIClient against a real server: REST, CDP with pydoll-style events, frames, input,
Playwright through the proxy, and the errors it raises."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lkpool.client import APIClient, APIError, CDPError
from lkpool.errors import UnknownSession
from lkpool.server.header import FrameFormat
from tests.server.conftest import run_server
from tests.support.pages import CLICKS, serve_pages, solid

pytestmark = pytest.mark.timeout(120)


async def test_client_end_to_end(settings) -> None:
    """One session through the client: events, CDP, frames, input, Playwright, release."""
    small = settings.replace(width=320, height=240, framerate=30, max_instances=1, audio=False)
    pages = {"/clicks": CLICKS, "/red": solid("#ff0000"), "/blue": solid("#0000ff")}
    async with serve_pages(pages) as site, run_server(small) as server:
        pool = server.pool
        async with APIClient(server.base) as client:
            async with client.session(timeout=60) as s:
                assert s is client
                sid = client.session_id
                assert pool.get(sid).session_id == sid
                assert client.target_session_id
                assert any(b["session_id"] == sid for b in await client.list_browsers())
                before = pool.get(sid).expires_at
                await client.extend_timeout(30)
                assert pool.get(sid).expires_at > before

                # events: registration order, sync and async, a raising one does not stop
                # the others, a temporary one runs once, removed ones never
                calls: list[str] = []

                async def async_cb(params: dict) -> None:
                    calls.append("async")

                def boom(params: dict) -> None:
                    raise RuntimeError("callback failure is logged, not raised")

                await client.on("Page.loadEventFired", lambda p: calls.append("sync"))
                await client.on("Page.loadEventFired", boom)
                await client.on("Page.loadEventFired", async_cb)
                await client.on("Page.loadEventFired", lambda p: calls.append("temp"),
                                temporary=True)
                gone = await client.on("Page.loadEventFired", lambda p: calls.append("gone"))
                assert await client.remove_callback(gone)
                await client.enable_page_events()
                for path in ("/red", "/clicks"):
                    waiter = asyncio.ensure_future(client.wait_for("Page.loadEventFired", 20))
                    resp = await client.send_cdp_request("Page.navigate",
                                                         {"url": site + path})
                    assert "frameId" in resp["result"]
                    await waiter  # wait_for's callback came last: all the others ran
                assert calls == ["sync", "async", "temp", "sync", "async"]

                value = await client.send_cdp_request(
                    "Runtime.evaluate", {"expression": "location.pathname",
                                         "returnByValue": True})
                assert value["result"]["result"]["value"] == "/clicks"
                with pytest.raises(CDPError):
                    await client.send_cdp_request("No.suchMethod")

                # input through the API
                await client.mouse_click(40, 120)
                await client.mouse_click(20, 20)  # focuses the text field
                await client.type("ok")
                await client.press("Shift+a")
                page = pool.get(sid).page
                assert await page.evaluate("window.clicks") == [[40, 120], [20, 20]]
                assert await page.evaluate("document.getElementById('t').value") == "okA"
                with pytest.raises(APIError) as info:
                    await client.mouse_click(9999, 1)
                assert info.value.status == 400 and "'x'" in info.value.detail

                # frames: raw as numpy arrays, JPEG as bytes
                async with client.frames("raw") as frames:
                    frame = await anext(frames)
                    assert frame.format is FrameFormat.RAW
                    assert isinstance(frame.data, np.ndarray)
                    assert frame.data.shape == (240, 320, 4)
                    assert frame.received_ns >= frame.ready_ns >= frame.captured_ns
                async with client.frames("jpeg", fps=5, max_width=160) as frames:
                    frame = await anext(frames)
                    assert frame.data[:2] == b"\xff\xd8" and frame.width == 160
                with pytest.raises(APIError) as info:
                    await anext(client.frames("raw", quality=0))
                assert info.value.status == 400 and "'quality'" in info.value.detail

                await client.navigate(site + "/blue")
                async with client.playwright() as browser:
                    pw_page = browser.contexts[0].pages[0]
                    for _ in range(100):
                        if pw_page.url.endswith("/blue"):
                            break
                        await asyncio.sleep(0.05)
                    assert await pw_page.evaluate("location.pathname") == "/blue"

            # leaving the session released the lease
            assert client.session_id is None
            with pytest.raises(UnknownSession):
                pool.get(sid)
            with pytest.raises(APIError) as info:
                await client.extend_timeout(10)
            assert info.value.error == "no_session"

        with pytest.raises(APIError) as info:
            async with APIClient(server.base) as other:
                await other.allocate_browser(timeout=-1)
        assert info.value.status == 400 and info.value.error == "invalid_argument"
