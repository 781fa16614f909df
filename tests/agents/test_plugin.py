"""livekit-plugins-browser's PageActions and BrowserSession, and livekit-plugins-anthropic's
ComputerTool, from PyPI and unchanged, driving an lkpool page in a real Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from livekit.plugins.anthropic.computer_tool import ComputerTool
from livekit.plugins.browser import BrowserSession, PageActions
from PIL import Image

pytestmark = pytest.mark.asyncio(loop_scope="module")


def image_of(content: list[dict]) -> np.ndarray:
    """The RGB pixels of the image block a ComputerTool call answered with."""
    assert content[0]["type"] == "image", content
    src = content[0]["source"]
    assert src["media_type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src["data"]))).convert("RGB"))


async def value(page) -> str:
    return await page.evaluate("document.getElementById('t').value")


async def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    """A bounded wait for the page to show an effect (not a timed assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not met in time"
        await asyncio.sleep(0.05)


async def test_screenshot_right_after_new_page_of_a_still_page(ctx, site) -> None:
    """A still page painted before PageActions subscribed: the screenshot is the page."""
    page = await ctx.new_page(url=f"{site}/blue", width=320, height=240)
    try:
        await asyncio.sleep(0.5)  # nothing paints any more
        tool = ComputerTool(actions=PageActions(page=page), width=320, height=240)
        pixels = image_of(await tool.execute("screenshot"))
        assert pixels.shape == (240, 320, 3)
        assert tuple(pixels[120, 160]) == (0, 0, 255)
        await tool.aclose()
    finally:
        await page.aclose()


async def test_computer_tool_clicks_types_keys_and_scrolls(ctx, site) -> None:
    """left_click focuses the input, type lands shifted characters exactly, ctrl+a then
    backspace clears it, scroll down moves the page down."""
    page = await ctx.new_page(url=f"{site}/form", width=640, height=480)
    tool = ComputerTool(actions=PageActions(page=page), width=640, height=480)
    try:
        await tool.execute("left_click", coordinate=[100, 25])
        assert await page.evaluate("document.activeElement.id") == "t"
        text = 'Hello, World! @#$%^&*()_+{}|:"<>?~ ABC'
        await tool.execute("type", text=text)
        await until(lambda: _equals(value(page), text))
        await tool.execute("key", text="ctrl+a")
        await tool.execute("key", text="backspace")
        await until(lambda: _equals(value(page), ""))
        await tool.execute("scroll", coordinate=[300, 300], scroll_direction="down",
                           scroll_amount=3)
        await until(lambda: _greater(page.evaluate("scrollY"), 0))
        await tool.execute("scroll", coordinate=[300, 300], scroll_direction="up",
                           scroll_amount=10)
        await until(lambda: _equals(page.evaluate("scrollY"), 0))
    finally:
        await tool.aclose()
        await page.aclose()


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def _greater(awaitable, bound) -> bool:
    return await awaitable > bound


async def test_page_actions_aclose_removes_its_listener(ctx, site) -> None:
    """PageActions.aclose() unsubscribes its bound method: no paint listener is left."""
    page = await ctx.new_page(url=f"{site}/blue", width=320, height=240)
    try:
        assert not page.has_listeners("paint")
        actions = PageActions(page=page)
        assert page.has_listeners("paint")
        actions.aclose()
        assert not page.has_listeners("paint")
    finally:
        await page.aclose()


async def test_session_opts_and_cursor_are_livekit_browser_s(ctx, site) -> None:
    """BrowserSession reads page._opts; cursor_changed carries CEF's int, which the
    plugin's map turns into the CSS cursor (the input over a text field: 3, "text")."""
    page = await ctx.new_page(url=f"{site}/form", width=640, height=480, framerate=25)
    try:
        opts = page._opts
        assert (opts.width, opts.height, opts.framerate) == (640, 480, 25)
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        page.on("cursor_changed", lambda c: got.done() or got.set_result(c))
        await page.send_mouse_move(100, 25)
        cursor = await asyncio.wait_for(got, 10)
        assert cursor == 3 and BrowserSession._CEF_CURSOR_MAP[cursor] == "text"
        assert page.cursor == "text"
    finally:
        await page.aclose()


async def test_browser_session_input_reaches_the_page(ctx, site) -> None:
    """The plugin's own input handling, fed the JSON its front end sends on
    `browser-input` (mousemove/mousedown/mouseup, keydown/char/keyup, wheel), drives the
    lkpool page. The room is never touched by input, so none is needed."""
    page = await ctx.new_page(url=f"{site}/form", width=640, height=480)
    session = BrowserSession(page=page, room=None)
    sender = asyncio.create_task(session._input_sender_loop())
    try:
        packet = json.dumps([
            {"type": "mousemove", "x": 100, "y": 25},
            {"type": "mousedown", "x": 100, "y": 25, "button": 0},
            {"type": "mouseup", "x": 100, "y": 25, "button": 0},
            {"type": "keydown", "keyCode": 72, "modifiers": 2},  # shift held
            {"type": "char", "keyCode": 72, "charCode": 72, "modifiers": 2},
            {"type": "keyup", "keyCode": 72, "modifiers": 2},
            {"type": "keydown", "keyCode": 73},
            {"type": "char", "keyCode": 105, "charCode": 105},
            {"type": "keyup", "keyCode": 73},
            {"type": "wheel", "x": 300, "y": 300, "deltaX": 0, "deltaY": -240},
        ])
        for evt in json.loads(packet):
            session._dispatch_input(evt)
        await until(lambda: _equals(value(page), "Hi"), what="'Hi' typed")
        await until(lambda: _greater(page.evaluate("scrollY"), 0))
    finally:
        sender.cancel()
        await page.aclose()


async def test_two_animated_pages_of_one_context_each_paint_at_their_framerate(ctx,
                                                                               site) -> None:
    """livekit.browser renders every page it opens: so does lkpool, each page of one x11
    instance in a window of its own. Counted over a long window, with slack for a loaded
    machine: each page's frames reach 0.9x its framerate (before, the second got none)."""
    framerate = 10  # low enough that a busy 2-core machine keeps up with two pages
    pages = [await ctx.new_page(url=f"{site}/animated", width=320, height=240,
                                framerate=framerate) for _ in range(2)]
    try:
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        start, counts = loop.time(), [p.frames for p in pages]
        await asyncio.sleep(5.0)
        elapsed = loop.time() - start
        rates = [(p.frames - c) / elapsed for p, c in zip(pages, counts, strict=True)]
        assert all(r >= 0.9 * framerate for r in rates), rates
    finally:
        for p in pages:
            await p.aclose()
