"""The pages of one instance: each a Chromium tab with its frame buffers and its frame source.

The first page takes the tab in Chromium's kiosk window: it is captured from the X screen
(x11), which with the window follows its size (`screen.py`), for as long as it fits the
largest screen; beyond that, and for every other page (background tabs, which Chromium does
not paint on screen), frames come from the CDP screencast. Closing the last page keeps its
tab, blank, for the next one: closing Chromium's last tab would end the browser.
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
from .capture import CAPTURES, FrameOut
from .cdp import CDPConnection, CDPError
from .screen import Screen, window_for
from .tab import Page, PageGone

logger = logging.getLogger("lkpool.proc")


@dataclass
class PageState:
    page: Page
    out: FrameOut
    capture: Any
    native: bool  # captured from the x11 screen (else by screencast)
    on_screen: bool = False  # the kiosk window's tab: x11 capture whenever it fits the screen
    framerate: int = 30


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
        if spare is not None:
            target, self.spare_target = spare, None
        else:  # in kiosk mode a background tab keeps the on-screen one in front
            target = (await self.cdp.send("Target.createTarget", {
                "url": "about:blank", "background": self.mode == "x11"}))["targetId"]
        buffers = ChildFrameBuffers(m.shm_names, m.width, m.height, generation=0)
        page = None
        try:
            page = await Page.attach(self.cdp, m.page_id, target,
                                     lambda kind, value: self._event(m.page_id, kind, value))
            if native:
                await self._x11_screen.fit(self.cdp, target, (m.width, m.height))
            await page.set_size(m.width, m.height, self._native_size(native))
            out = FrameOut(m.page_id, buffers, m.shm_names, self._send)
            capture = self._capture(native, out, m.framerate, page)
        except BaseException:
            # nothing of the failed page stays: its buffers, its listeners, and the kiosk
            # tab, which goes back to being the spare one
            buffers.close()
            if page is not None:
                page.detach_listeners()
            if spare is not None and self.spare_target is None and not self.states:
                self.spare_target = spare
            raise
        self.states[m.page_id] = PageState(page, out, capture, native, on_screen, m.framerate)
        if self.first is None:
            self.first = m.page_id
        if m.url:  # answered after the first load, as Playwright's newPage + goto would
            await self._initial_load(page, m.url)
        return json.dumps({"target_id": target})  # the parent exposes it as page.target_id

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

    def _capture(self, native: bool, out: FrameOut, framerate: int, page: Page) -> Any:
        return CAPTURES["x11" if native else "screencast"](
            out, framerate, display=self.display, page=page)

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
