"""The cef engine's page (see lkpool/cef.py for the engine): a livekit.browser page behind
lkpool's BrowserPage API. It absorbs what livekit's page lacks: no resize or framerate change
(a new livekit page at the new size on the current URL, behind the same CefPage), no reload
(navigates to the current URL), no evaluate (goes over CEF's own DevTools endpoint), no
Playwright-style click/press/type (raw input events, keys from lkpool.keys), and CEF's cursor
enum (held as a CSS keyword).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from . import cursors, errors, keys
from .events import EventEmitter

if TYPE_CHECKING:
    from livekit import rtc

    from .cef import CefContext

MOUSE_BUTTONS = {"left": 0, "middle": 1, "right": 2}


class CefPage(EventEmitter[str]):
    """A livekit.browser page with lkpool's BrowserPage API (see the module docstring)."""

    def __init__(self, ctx: CefContext, inner: Any, *, url: str, width: int, height: int,
                 framerate: int) -> None:
        super().__init__()
        self._ctx = ctx
        self.id: int = inner.id  # stays when a resize swaps the livekit page underneath
        self.width, self.height, self.framerate = width, height, framerate
        self.url = url
        self.title = ""
        self.cursor = "default"
        self.frames = 0
        self.dropped = 0  # livekit.browser's child drops silently; it does not tell us
        self.closed = False
        self.close_reason: str | None = None
        self._request_timeout = ctx.settings.request_timeout
        self.log = logging.getLogger(f"lkpool.cef.page{self.id}")
        self._forward = {"paint": self._on_paint, "audio": self._on_audio,
                         "url_changed": self._on_url, "cursor_changed": self._on_cursor}
        self._attach(inner)

    @property
    def context(self) -> CefContext:
        return self._ctx

    def _attach(self, inner: Any) -> None:
        self._inner = inner
        for event, cb in self._forward.items():
            inner.on(event, cb)

    def _detach(self) -> Any:
        inner = self._inner
        for event, cb in self._forward.items():
            inner.off(event, cb)
        return inner

    def _on_audio(self, data: Any) -> None:
        self.emit("audio", data)

    def _on_paint(self, data: Any) -> None:
        # livekit's PaintData is a plain dataclass made per paint: add the field ours has
        data.captured_ns = time.monotonic_ns()  # the clock lkpool.context uses
        self.width, self.height = data.width, data.height
        self.frames += 1
        self._last_frame = data.frame  # livekit's page merges dirty rects into it, as ours
        self.emit("paint", data)

    def _listener_added(self, event: str, cb_id: int) -> None:
        if event == "paint":  # the current frame at once, as lkpool.page.BrowserPage does
            from .page_data import replay_paint

            replay_paint(self, cb_id)

    @property
    def last_frame(self) -> rtc.VideoFrame | None:
        """The page's current image, as lkpool.page.BrowserPage.last_frame."""
        return getattr(self, "_last_frame", None)

    def _on_url(self, url: str) -> None:
        self.url = url
        self.emit("url_changed", url)

    def _on_cursor(self, cursor_type: int) -> None:
        self.cursor = cursors.css(cursor_type)
        self.emit("cursor_changed", cursor_type)  # livekit.browser's int, as it came

    def _check_open(self) -> None:
        if self.closed:
            raise errors.ClosedError(f"page {self.id} is closed")

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._check_open()
        from livekit.agents.utils.aio.duplex_unix import DuplexClosed
        try:
            await asyncio.wait_for(getattr(self._inner, method)(*args, **kwargs),
                                   self._request_timeout)
        except DuplexClosed as exc:
            raise errors.InstanceCrashed("the cef process is gone") from exc
        except TimeoutError as exc:
            raise errors.RequestTimeout(f"cef page {self.id}: {method} timed out") from exc

    # raw input, as livekit.browser has it
    async def send_mouse_move(self, x: int, y: int, mouse_leave: bool = False) -> None:
        await self._call("send_mouse_move", x, y, mouse_leave)

    async def send_mouse_click(self, x: int, y: int, button: int = 0, mouse_up: bool = False,
                               click_count: int = 1) -> None:
        await self._call("send_mouse_click", x, y, button, mouse_up, click_count)

    async def send_mouse_wheel(self, x: int, y: int, delta_x: int = 0, delta_y: int = 0) -> None:
        await self._call("send_mouse_wheel", x, y, delta_x, delta_y)

    async def send_key_event(self, type: int, modifiers: int, windows_key_code: int,
                             native_key_code: int = 0, character: int = 0) -> None:
        await self._call("send_key_event", type, modifiers, windows_key_code, native_key_code,
                         character)

    async def send_focus_event(self, set_focus: bool = True) -> None:
        await self._call("send_focus_event", set_focus)

    async def navigate(self, url: str) -> None:
        await self._call("navigate", url)

    async def go_back(self) -> None:
        await self._call("go_back")

    async def go_forward(self) -> None:
        await self._call("go_forward")

    async def reload(self) -> None:
        await self._call("navigate", self.url)  # livekit.browser has no reload message

    # Playwright-style helpers, built from the raw events
    async def click(self, x: int, y: int, button: str = "left", click_count: int = 1) -> None:
        if button not in MOUSE_BUTTONS:
            raise errors.InvalidArgument(f"button must be one of {', '.join(MOUSE_BUTTONS)}")
        await self.send_mouse_move(x, y)
        await self.send_mouse_click(x, y, MOUSE_BUTTONS[button], False, click_count)
        await self.send_mouse_click(x, y, MOUSE_BUTTONS[button], True, click_count)

    async def _strokes(self, strokes: list[keys.KeyStroke]) -> None:
        for s in strokes:
            mods = keys.cdp_to_cef(s.modifiers)
            if s.type is keys.KeyType.KEYDOWN and s.text:
                # CEF types a character as a raw key-down followed by a char event
                await self.send_key_event(keys.KeyType.RAWKEYDOWN, mods, s.key.vk)
                await self.send_key_event(keys.KeyType.CHAR, mods, s.key.vk, 0, ord(s.text))
            else:
                await self.send_key_event(s.type, mods, s.key.vk, 0,
                                          ord(s.text) if len(s.text) == 1 else 0)

    async def press(self, combo: str) -> None:
        await self._strokes(keys.press(combo))

    async def type(self, text: str) -> None:
        await self._strokes(keys.type_text(text))

    async def resize(self, width: int, height: int) -> None:
        """livekit.browser has no resize message: the page is made again at the new size on
        the current URL (so it reloads). Paints then come at the new size."""
        from .page import check_size
        check_size(width, height)
        await self._remake(width, height, self.framerate)

    async def set_framerate(self, fps: int) -> None:
        """As resize: the page is made again at the new framerate (so it reloads)."""
        from .page import check_framerate
        check_framerate(fps)
        await self._remake(self.width, self.height, fps)

    async def _remake(self, width: int, height: int, framerate: int) -> None:
        self._check_open()
        if (width, height, framerate) == (self.width, self.height, self.framerate):
            return
        new = await self._ctx._new_inner(self.url, width, height, framerate)
        old = self._detach()
        self._attach(new)
        self.width, self.height, self.framerate = width, height, framerate
        try:
            await asyncio.wait_for(old.aclose(), self._request_timeout)
        except TimeoutError:
            old._cleanup_shm()

    async def evaluate(self, expression: str) -> Any:
        """Runtime.evaluate over CEF's own DevTools endpoint (CEF serves CDP like Chromium)."""
        self._check_open()
        import aiohttp
        base = f"http://127.0.0.1:{self._ctx.remote_debugging_port}"
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self._request_timeout)) as http:
                async with http.get(f"{base}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if not targets:
                    raise errors.PageError("cef exposes no page target over DevTools")
                async with http.ws_connect(targets[0]["webSocketDebuggerUrl"]) as ws:
                    await ws.send_json({"id": 1, "method": "Runtime.evaluate", "params": {
                        "expression": expression, "returnByValue": True,
                        "awaitPromise": True}})
                    while (msg := await ws.receive_json()).get("id") != 1:
                        pass
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.InstanceError(f"cef DevTools endpoint unreachable: {exc}") from exc
        result = msg.get("result", {})
        if "exceptionDetails" in result or "error" in msg:
            detail = result.get("exceptionDetails", {}).get("text") or msg.get("error")
            raise errors.PageError(f"evaluate failed: {detail}")
        return result.get("result", {}).get("value")

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed, self.close_reason = True, reason
            self.emit("closed", reason)

    async def aclose(self) -> None:
        if self.closed:
            return
        try:
            await asyncio.wait_for(self._inner.aclose(), self._request_timeout)
        except TimeoutError:
            self.log.warning("close timed out")
            self._inner._cleanup_shm()  # private, but the shm is ours to unlink either way
        self._mark_closed("closed")
