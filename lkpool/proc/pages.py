"""The pages of one instance: each a Chromium tab with its frame buffers and its frame source.

The first page takes the tab in Chromium's kiosk window: it is captured from the X screen
(x11), which with the window follows its size (`screen.py`), for as long as it fits the
largest screen. Every other page of an x11 instance gets a browser window of its own,
full screen (no toolbar) and redirected off screen with Composite: it never covers the
first page, Chromium renders it at its framerate like the first (a background tab would
not be painted at all), and its frames are grabbed from the window itself the same way.
A page larger than its window, and every page of a screencast instance, is captured by the
CDP screencast. Closing the last page keeps its tab, blank, for the next one: closing
Chromium's last tab would end the browser.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH
from ..shm.framebuffer import ChildFrameBuffers
from . import protocol as p
from .capture import FrameOut, X11Capture
from .cdp import CDPConnection, CDPError
from .screen import Screen, browser_windows, new_window, window_for
from .screencast import ScreencastCapture
from .tab import Page, PageGone

logger = logging.getLogger("lkpool.proc")

CAPTURES: dict[str, type] = {"x11": X11Capture, "screencast": ScreencastCapture}


@dataclass
class PageState:
    page: Page
    out: FrameOut
    capture: Any
    native: bool  # captured from the x11 screen (else by screencast)
    on_screen: bool = False  # the kiosk window's tab: x11 capture whenever it fits the screen
    framerate: int = 30
    window: int | None = None  # its own X window (not the first page), grabbed while it fits
    window_size: tuple[int, int] = (0, 0)


def check_size(width: int, height: int, framerate: int | None = None) -> None:
    """The parent checked these already (lkpool.page.check_size); the duplex is checked
    again at this end, with the same limits."""
    if not (0 < width <= MAX_WIDTH and 0 < height <= MAX_HEIGHT):
        raise ValueError(f"page size {width}x{height} is out of range")
    if framerate is not None and not 0 < framerate <= MAX_FRAMERATE:
        raise ValueError(f"framerate {framerate} is not in 1..{MAX_FRAMERATE}")


FRONT_AGAIN = (0.0, 0.1, 0.4)  # seconds between the bringToFront calls after a new page

# a tab's event (kind, value) -> the message that tells the parent
EVENTS: dict[str, Callable[[int, Any], p.Message]] = {
    "url": p.UrlChanged, "title": p.TitleChanged, "cursor": p.CursorChanged,
    "closed": p.PageClosed,
    "dialog_opened": lambda page_id, d: p.DialogOpened(
        page_id, d.get("type", ""), d.get("message", ""), d.get("defaultPrompt", "")),
    "dialog_closed": lambda page_id, d: p.DialogClosed(page_id, bool(d.get("result"))),
}


def _within(page: tuple[int, int], window: tuple[int, int]) -> bool:
    return page[0] <= window[0] and page[1] <= window[1]


class Pages:
    """Page id -> its state, with the commands that make, resize and end pages."""

    def __init__(self, mode: str, send: Callable[[p.Message], None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.mode = mode
        self._send = send
        self._spawn = spawn
        self.states: dict[int, PageState] = {}
        self.first: int | None = None  # the page that gets the instance's audio
        self.spare_target: str | None = None  # the tab no page uses (first tab, last closed)
        self.cdp: CDPConnection | None = None
        self.screen: Screen | None = None  # x11 only
        self.display = ""
        self._window_lock = asyncio.Lock()  # one new window at a time: told apart by appearing

    def open(self, cdp: CDPConnection, screen: Screen | None, display: str,
             spare_target: str | None) -> None:
        """The browser is up: pages can be made in it."""
        self.cdp, self.screen, self.display = cdp, screen, display
        self.spare_target = spare_target

    @property
    def _x11_screen(self) -> Screen:
        """The X screen, which a page captured natively (x11 mode) always has."""
        assert self.screen is not None, "native capture without an X screen"
        return self.screen

    async def drop_all(self) -> None:
        for page_id in list(self.states):
            try:
                await self.drop(page_id)
            except Exception:
                logger.exception("closing page %d", page_id)

    def get(self, page_id: int) -> Page:
        state = self.states.get(page_id)
        if state is None:
            raise PageGone(f"no page {page_id}")
        return state.page

    async def create(self, m: p.CreatePage) -> str:
        if m.page_id in self.states:
            raise ValueError(f"page {m.page_id} exists already")
        check_size(m.width, m.height, m.framerate)
        assert self.cdp is not None
        on_screen = self.mode == "x11" and self.spare_target is not None and not self.states
        native = on_screen and self._fits(m.width, m.height)
        spare = self.spare_target
        window, window_size = None, (0, 0)
        if spare is not None:
            target, self.spare_target = spare, None
        elif self.mode == "x11" and self.screen is not None:
            target, window, window_size = await self._open_window(m.width, m.height)
        else:
            target = (await self.cdp.send("Target.createTarget", {
                "url": "about:blank"}))["targetId"]
        buffers = ChildFrameBuffers(m.shm_names, m.width, m.height, generation=0)
        page = None
        try:
            page = await Page.attach(self.cdp, m.page_id, target,
                                     lambda kind, value: self._event(m.page_id, kind, value))
            if native:
                await self._x11_screen.fit(self.cdp, target, (m.width, m.height))
            await page.set_size(m.width, m.height, self._native_size(native))
            out = FrameOut(m.page_id, buffers, m.shm_names, self._send)
            if window is not None and not _within((m.width, m.height), window_size):
                window = None  # larger than its window: screencast
            capture = self._capture(native, out, m.framerate, page, window)
        except BaseException:
            # nothing of the failed page stays: its buffers, its listeners, and the kiosk
            # tab, which goes back to being the spare one
            buffers.close()
            if page is not None:
                page.detach_listeners()
            if spare is not None and self.spare_target is None and not self.states:
                self.spare_target = spare
            raise
        self.states[m.page_id] = PageState(page, out, capture, native, on_screen, m.framerate,
                                           window, window_size)
        if self.first is None:
            self.first = m.page_id
        if m.url:  # answered after the first load, as Playwright's newPage + goto would
            await self._initial_load(page, m.url)
        return json.dumps({"target_id": target})  # the parent exposes it as page.target_id

    async def _open_window(self, width: int, height: int
                           ) -> tuple[str, int | None, tuple[int, int]]:
        """A new browser window for a page that is not the first: its target, its X window
        (None when it could not be told apart: that page is then captured by screencast)
        and the window's size once full screen."""
        assert self.cdp is not None  # open() came first
        async with self._window_lock:
            before = set(browser_windows(self.display))
            target = (await self.cdp.send("Target.createTarget", {
                "url": "about:blank", "newWindow": True, "background": True}))["targetId"]
            try:
                window, _ = await new_window(self.display, before)
            except RuntimeError as exc:
                logger.warning("page window not found: screencast capture (%s)", exc)
                return target, None, (0, 0)
        # at least the page's size, then full screen: no toolbar, the page from the top-left
        want = window_for((width, height))
        win = (await self.cdp.send("Browser.getWindowForTarget",
                                   {"targetId": target}))["windowId"]
        for bounds in ({"windowState": "normal"},
                       {"left": 0, "top": 0, "width": want[0], "height": want[1]},
                       {"windowState": "fullscreen"}):
            await self.cdp.send("Browser.setWindowBounds", {"windowId": win, "bounds": bounds})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while True:
            got = (await self.cdp.send("Browser.getWindowBounds", {"windowId": win}))["bounds"]
            size = browser_windows(self.display).get(window, (0, 0))
            if got.get("windowState") == "fullscreen" and _within((width, height), size):
                return target, window, size
            if loop.time() > deadline:
                return target, window, size  # too small: its page falls back to screencast
            await asyncio.sleep(0.02)

    async def _initial_load(self, page: Page, url: str) -> None:
        for attempt in (1, 2):
            try:
                await page.navigate(url)
                return
            except Exception as exc:  # creation succeeded; a bad first URL is only logged
                # a fresh tab may still be committing its start-up about:blank, which
                # aborts the first navigation: that one is worth a second try
                if attempt == 1 and "ERR_ABORTED" in str(exc):
                    continue
                logger.warning("page %d: initial load of %s failed: %s", page.id, url, exc)
                return

    async def close(self, m: p.ClosePage) -> None:
        state = self.states.get(m.page_id)
        if state is None:
            raise PageGone(f"no page {m.page_id}")
        await self.drop(m.page_id)
        assert self.cdp is not None
        if not self.states and self.spare_target is None:
            # closing the last tab would quit Chromium: keep it blank for the next page
            try:
                await self.cdp.send("Page.navigate", {"url": "about:blank"},
                                    session_id=state.page.session)
                await self.cdp.send("Target.detachFromTarget", {"sessionId": state.page.session})
                self.spare_target = state.page.target_id
            except CDPError:
                pass
        else:
            try:
                await self.cdp.send("Target.closeTarget", {"targetId": state.page.target_id})
            except CDPError:
                pass
        self._send(p.PageClosed(m.page_id, "closed"))

    async def resize(self, m: p.Resize) -> None:
        state = self.states.get(m.page_id)
        if state is None:
            raise PageGone(f"no page {m.page_id}")
        check_size(m.width, m.height)
        native = state.on_screen and self._fits(m.width, m.height)
        buffers = ChildFrameBuffers(m.shm_names, m.width, m.height, generation=m.generation)
        old = state.out.buffers
        if state.window is not None and not _within((m.width, m.height), state.window_size):
            # outgrew its window: screencast from now on
            await state.capture.aclose()
            state.window = None
            state.out = FrameOut(m.page_id, buffers, m.shm_names, self._send)
            try:
                await state.page.set_size(m.width, m.height, None)
            finally:
                state.capture = self._capture(False, state.out, state.framerate, state.page)
            old.close()
            return
        moving = native and window_for((m.width, m.height)) != self._x11_screen.window
        out = FrameOut(m.page_id, buffers, m.shm_names, self._send)
        if moving or native is not state.native:
            # a new frame source: the page outgrew the screen or fits it again, or the
            # window moves, which nobody should see mid-way
            await state.capture.aclose()
            try:
                if moving:
                    await self._x11_screen.fit(self.cdp, state.page.target_id, (m.width, m.height))
                await state.page.set_size(m.width, m.height, self._native_size(native))
            finally:
                state.out, state.native = out, native
                state.capture = self._capture(native, out, state.framerate, state.page)
        else:
            await state.page.set_size(m.width, m.height, self._native_size(native))
            state.out = out
            state.capture.switch(out)
        old.close()

    def _native_size(self, native: bool) -> tuple[int, int] | None:
        return self.screen.window if native and self.screen is not None else None

    def _fits(self, width: int, height: int) -> bool:
        """Xvfb's screen grows only up to the size it started with: a page larger than that
        is captured by screencast."""
        assert self.screen is not None
        fits = self.screen.fits((width, height))
        if not fits:
            logger.info("%dx%d is larger than the x11 screen can grow (%dx%d): screencast "
                        "capture", width, height, *self.screen.largest)
        return fits

    def _capture(self, native: bool, out: FrameOut, framerate: int, page: Page,
                 window: int | None = None) -> Any:
        return CAPTURES["x11" if native or window is not None else "screencast"](
            out, framerate, display=self.display, page=page, window=window)

    async def set_framerate(self, m: p.SetFramerate) -> None:
        if not 0 < m.framerate <= MAX_FRAMERATE:
            raise ValueError(f"framerate {m.framerate} is not in 1..{MAX_FRAMERATE}")
        state = self.states.get(m.page_id)
        if state is None:
            raise PageGone(f"no page {m.page_id}")
        state.capture.set_framerate(m.framerate)
        state.framerate = m.framerate


    def release_paint(self, m: p.ReleasePaint) -> None:
        state = self.states.get(m.page_id)
        if state is not None and state.out.buffers.generation == m.generation:
            state.out.buffers.release(m.buffer_id)


    def _event(self, page_id: int, kind: str, value: Any) -> None:
        if kind == "closed":
            self._spawn(self.drop(page_id))
        self._send(EVENTS[kind](page_id, value))

    def target_created(self, info: dict) -> None:
        """A page Chromium opened on its own (a popup, `window.open`, a client's new tab)
        comes to the front of the X screen, over the page the x11 capture shows: frames
        would show it while input still goes to the leased page. The leased page is
        brought back in front, so what the frames show is what input reaches."""
        if info.get("type") != "page":
            return
        for state in self.states.values():
            if state.native and state.on_screen and info.get("targetId") != state.page.target_id:
                self._spawn(self._to_front(state.page))

    async def _to_front(self, page: Page) -> None:
        for delay in FRONT_AGAIN:  # the new window maps a moment after its target exists
            await asyncio.sleep(delay)
            try:
                await page.call("Page.bringToFront")
            except (CDPError, PageGone):
                return

    def target_gone(self, target_id: str | None, reason: str) -> None:
        for state in list(self.states.values()):
            if state.page.target_id == target_id:
                state.page.mark_closed(reason)

    async def drop(self, page_id: int) -> None:
        state = self.states.pop(page_id, None)
        if state is None:
            return
        state.page.detach_listeners()
        await state.capture.aclose()
        state.out.buffers.close()
        if self.first == page_id:
            self.first = None
