"""One page of an instance, on the parent side: its shared-memory buffers turned into the
`rtc.VideoFrame` it paints, its events, and its requests (livekit.browser's page API plus
`press`, `type`, `click`, `resize`, `set_framerate`, `evaluate`, `last_frame`, counters).

A page talks to its child only through its own `PageChannel` (lkpool/connection.py): it
builds the messages about itself and the channel carries them; the context routes the
child's messages about this page here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from livekit import rtc

from . import cursors, keys
from .errors import ClosedError, InstanceCrashed, InvalidArgument, RequestTimeout
from .events import EventEmitter
from .page_data import (
    AudioData,
    Dialog,
    PageOptions,
    PaintData,
    check_framerate,
    check_size,
    replay_paint,
)
from .proc import protocol as p
from .shm.framebuffer import FrameBuffers, copy_rects

if TYPE_CHECKING:
    from .connection import PageChannel
    from .context import BrowserContext

__all__ = ["AudioData", "BrowserPage", "Dialog", "PageOptions", "PaintData",
           "check_framerate", "check_size", "replay_paint"]

PageEvent = Literal["paint", "audio", "url_changed", "title_changed", "cursor_changed",
                   "dialog_opened", "dialog_closed", "closed"]
_BUTTONS = {"left": 0, "middle": 1, "right": 2}


class BrowserPage(EventEmitter[PageEvent]):
    """One page of an instance. Its paint frame is reused: copy it to keep it."""

    def __init__(self, channel: PageChannel, page_id: int, *, url: str, width: int,
                 height: int, framerate: int, context: BrowserContext) -> None:
        super().__init__()
        self._channel = channel
        self._ctx = context  # only for the public `context` property
        self._id = page_id
        self.url = url
        self.title = ""
        self.cursor = "default"
        self.dialog: Dialog | None = None  # the open JavaScript dialog, if any
        self.width = width
        self.height = height
        self.framerate = framerate
        self.frames = 0
        self.dropped = 0
        self.closed = False
        self.close_reason: str | None = None
        self.target_id = ""  # the page's CDP target, for callers that drive it over CDP
        self._buffers: dict[int, FrameBuffers] = {}  # generation -> buffers
        self._generation = 0
        self._frame: rtc.VideoFrame | None = None
        self._pixels: np.ndarray | None = None

    @property
    def id(self) -> int:
        return self._id

    @property
    def _opts(self) -> PageOptions:
        """livekit.browser's page options, which livekit-plugins-browser's BrowserSession
        reads (`page._opts.width / height / framerate`): the page's current values."""
        return PageOptions(page_id=self._id, url=self.url, width=self.width,
                           height=self.height, framerate=self.framerate)

    @property
    def context(self) -> BrowserContext:
        return self._ctx

    @property
    def last_frame(self) -> rtc.VideoFrame | None:
        """The page's current image (None before its first paint): what a new viewer shows
        at once, since a still page may not paint again. Reused in place: copy to keep."""
        return self._frame if self.frames else None

    def __repr__(self) -> str:
        return f"<BrowserPage {self._ctx.instance_id}/{self._id} {self.width}x{self.height}>"

    def _listener_added(self, event: str, cb_id: int) -> None:
        """A new lasting `paint` listener gets the current frame at once (on the next loop
        turn): a still page paints nothing more, and livekit.browser's consumers (the
        plugin's PageActions, BrowserSession) subscribe only after `new_page` returned,
        which with us is after the first frame. `once("paint")` still means the next
        paint."""
        if event == "paint":
            replay_paint(self, cb_id)

    # ---- lifecycle ----------------------------------------------------------------------

    async def _start(self) -> None:
        buffers = FrameBuffers(self.width, self.height, generation=0)
        self._buffers[0] = buffers
        self._alloc_frame(self.width, self.height)
        try:
            value = await self._channel.request(lambda req: p.CreatePage(
                req=req, page_id=self._id, url=self.url, width=self.width, height=self.height,
                framerate=self.framerate, shm_names=buffers.names),
                timeout=self._channel.start_timeout)
        except BaseException:
            self._release_buffers()
            raise
        if value:
            self.target_id = json.loads(value).get("target_id", "")

    async def aclose(self) -> None:
        if self.closed:
            return
        try:
            if self._channel.alive:
                await self._channel.request(lambda req: p.ClosePage(req=req, page_id=self._id))
        except (InstanceCrashed, ClosedError, RequestTimeout):
            pass  # the instance is gone or stuck: the page is closed all the same
        finally:
            self._mark_closed("closed")

    def _mark_closed(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._release_buffers()
        # the pixels go too: ended leases keep their page object for a while (to say why
        # they ended), and a 1280x720 frame is 3.7 MB
        self._frame = self._pixels = None
        self._channel.detach()
        self.emit("closed", reason)

    def _release_buffers(self) -> None:
        buffers, self._buffers = self._buffers, {}
        for fb in buffers.values():
            fb.close()

    def _alloc_frame(self, width: int, height: int) -> None:
        data = bytearray(width * height * 4)
        self._frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.BGRA, data)
        self._pixels = np.frombuffer(data, np.uint8).reshape(height, width, 4)

    # ---- messages from the child --------------------------------------------------------

    def _on_paint(self, msg: p.AcquirePaint) -> None:
        buffers = self._buffers.get(msg.generation)
        if buffers is None or self.closed:
            return  # a paint into buffers already given up: nothing to release
        try:
            if msg.generation != self._generation:
                return  # written before a resize took effect: stale, just release it
            if self._pixels is None or self._pixels.shape[:2] != (msg.height, msg.width):
                self._alloc_frame(msg.width, msg.height)
                rects: list = []  # a new frame needs every pixel
            else:
                rects = msg.dirty_rects
            src = buffers.array(msg.buffer_id)[:msg.height, :msg.width]
            assert self._pixels is not None  # allocated just above when missing
            copy_rects(src, self._pixels, rects)
        finally:
            self._channel.send(p.ReleasePaint(page_id=self._id, generation=msg.generation,
                                           buffer_id=msg.buffer_id))
        self.frames += 1
        self.dropped = msg.dropped
        if self.has_listeners("paint") and self._frame is not None:
            self.emit("paint", PaintData(dirty_rects=msg.dirty_rects, frame=self._frame,
                                         width=msg.width, height=msg.height,
                                         captured_ns=msg.captured_ns))

    def _on_audio(self, msg: p.Audio) -> None:
        if msg.channels <= 0 or msg.sample_rate <= 0 or msg.samples_per_channel <= 0:
            return
        if self.has_listeners("audio"):
            frame = rtc.AudioFrame(msg.data, msg.sample_rate, msg.channels,
                                   msg.samples_per_channel)
            self.emit("audio", AudioData(frame=frame, pts=msg.pts))

    def _on_url(self, msg: p.UrlChanged) -> None:
        self.url = msg.url
        self.emit("url_changed", msg.url)

    def _on_title(self, msg: p.TitleChanged) -> None:
        self.title = msg.title
        self.emit("title_changed", msg.title)

    def _on_cursor(self, msg: p.CursorChanged) -> None:
        self.cursor = msg.cursor  # CSS, for lkpool's live view and sockets
        self.emit("cursor_changed", cursors.cef(msg.cursor))  # livekit.browser's int

    def _on_dialog_opened(self, msg: p.DialogOpened) -> None:
        self.dialog = Dialog(msg.kind, msg.message, msg.default_prompt)
        self.emit("dialog_opened", self.dialog)

    def _on_dialog_closed(self, msg: p.DialogClosed) -> None:
        self.dialog = None
        self.emit("dialog_closed", msg.accepted)

    # ---- requests -----------------------------------------------------------------------

    async def _call(self, make: Callable[[int], p.Message], timeout: float | None = None) -> str:
        if self.closed:
            raise ClosedError(f"page {self._id} is closed ({self.close_reason})")
        return await self._channel.request(make, timeout=timeout)

    async def navigate(self, url: str) -> None:
        if not isinstance(url, str) or not url:
            raise InvalidArgument("url must be a non-empty string")
        await self._call(lambda req: p.Navigate(req=req, page_id=self._id, url=url))

    async def go_back(self) -> None:
        await self._call(lambda req: p.GoBack(req=req, page_id=self._id))

    async def go_forward(self) -> None:
        await self._call(lambda req: p.GoForward(req=req, page_id=self._id))

    async def reload(self) -> None:
        await self._call(lambda req: p.Reload(req=req, page_id=self._id))

    async def resize(self, width: int, height: int) -> None:
        """New size: a new pair of buffers, the old pair unlinked once the child let go."""
        check_size(width, height)
        if (width, height) == (self.width, self.height):
            return
        generation = self._generation + 1
        buffers = FrameBuffers(width, height, generation=generation)
        self._buffers[generation] = buffers
        try:
            await self._call(lambda req: p.Resize(req=req, page_id=self._id, width=width,
                                                  height=height, generation=generation,
                                                  shm_names=buffers.names))
        except BaseException:
            stale = self._buffers.pop(generation, None)
            if stale is not None:
                stale.close()
            raise
        old = [g for g in self._buffers if g < generation]
        self._generation = generation
        self.width, self.height = width, height
        for g in old:
            self._buffers.pop(g).close()

    async def set_framerate(self, framerate: int) -> None:
        check_framerate(framerate)
        await self._call(lambda req: p.SetFramerate(req=req, page_id=self._id,
                                                    framerate=framerate))
        self.framerate = framerate

    async def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """Runs JavaScript in the page and returns its JSON value (promises are awaited)."""
        value = await self._call(lambda req: p.Evaluate(req=req, page_id=self._id,
                                                        expression=expression), timeout)
        return json.loads(value) if value else None

    # livekit.browser's input API -----------------------------------------------------------
    # Input is posted, as livekit.browser posts it: a call returns once its event is on its
    # way to Chromium, in the order of the calls, not once the page handled it (a mouse move
    # is handled only at the page's next frame, and waiting for it would hold up every
    # event behind it). `click`, `press` and `type` return once their last event was
    # handled, which means all of theirs were: Chromium handles input in order.

    async def _input(self, make: Callable[[int], p.Message], *, handled: bool = False) -> None:
        if handled:
            await self._call(make)
            return
        if self.closed:
            raise ClosedError(f"page {self._id} is closed ({self.close_reason})")
        await self._channel.post(make)

    async def input_handled(self, timeout: float | None = None) -> None:
        """Returns once the page handled every input event sent so far (`RequestTimeout`
        after `timeout`, default REQUEST_TIMEOUT)."""
        await self._channel.posted_handled(timeout)

    async def send_mouse_move(self, x: int, y: int, mouse_leave: bool = False, *,
                              modifiers: int = 0) -> None:
        await self._input(lambda req: p.MouseMove(req=req, page_id=self._id, x=int(x),
                                                  y=int(y), mouse_leave=bool(mouse_leave),
                                                  modifiers=modifiers))

    async def send_mouse_click(self, x: int, y: int, button: int = 0, mouse_up: bool = False,
                               click_count: int = 1, *, modifiers: int = 0) -> None:
        await self._input(self._mouse_click(x, y, button, mouse_up, click_count, modifiers))

    def _mouse_click(self, x: int, y: int, button: int, mouse_up: bool, click_count: int,
                     modifiers: int) -> Callable[[int], p.Message]:
        if button not in (0, 1, 2):
            raise InvalidArgument(f"button must be 0 (left), 1 (middle) or 2 (right), "
                                  f"got {button!r}")
        return lambda req: p.MouseClick(
            req=req, page_id=self._id, x=int(x), y=int(y), button=button,
            mouse_up=bool(mouse_up), click_count=int(click_count), modifiers=modifiers)

    async def send_mouse_wheel(self, x: int, y: int, delta_x: int = 0, delta_y: int = 0, *,
                               modifiers: int = 0) -> None:
        """CEF's sign, as livekit.browser: a positive `delta_y` scrolls up, a positive
        `delta_x` left (the DOM's and CDP's are the other way round)."""
        await self._input(lambda req: p.MouseWheel(
            req=req, page_id=self._id, x=int(x), y=int(y), delta_x=-int(delta_x),
            delta_y=-int(delta_y), modifiers=modifiers))

    async def send_key_event(self, type: int, modifiers: int, windows_key_code: int,
                             native_key_code: int = 0, character: int = 0, *, key: str = "",
                             code: str = "", text: str = "") -> None:
        """livekit.browser's signature: CEF event type and CEF modifier flags."""
        if type not in tuple(keys.KeyType):
            raise InvalidArgument(f"key event type must be 0..3, got {type!r}")
        if not text and character and type in (keys.KeyType.CHAR, keys.KeyType.KEYDOWN):
            text = chr(character)
        await self._input(lambda req: p.KeyEvent(
            req=req, page_id=self._id, type=int(type), modifiers=keys.cef_to_cdp(modifiers),
            windows_key_code=windows_key_code, native_key_code=native_key_code,
            character=character, key=key, code=code, text=text))

    async def _strokes(self, strokes: list[keys.KeyStroke]) -> None:
        """Posts each stroke and waits until the page handled the last."""
        for i, s in enumerate(strokes):
            await self._input(functools.partial(self._stroke_event, s),
                              handled=i == len(strokes) - 1)

    def _stroke_event(self, s: keys.KeyStroke, req: int) -> p.KeyEvent:
        return p.KeyEvent(
            req=req, page_id=self._id, type=int(s.type), modifiers=s.modifiers,
            windows_key_code=s.key.vk, native_key_code=0,
            character=ord(s.text) if len(s.text) == 1 else 0, key=s.key.key,
            code=s.key.code, text=s.text)

    async def handle_dialog(self, accept: bool = True, prompt_text: str = "") -> None:
        """Answers the open JavaScript dialog (OK or Cancel; `prompt_text` for a prompt).
        `PageError` when none is open. Until it is answered the page's scripts are paused,
        and a click or key that opened it returns as soon as it opened."""
        if not isinstance(prompt_text, str):
            raise InvalidArgument("prompt_text must be a string")
        await self._call(lambda req: p.HandleDialog(req=req, page_id=self._id,
                                                    accept=bool(accept),
                                                    prompt_text=prompt_text))
        self.dialog = None  # answered; `dialog_closed` follows from Chromium

    async def send_focus_event(self, set_focus: bool = True) -> None:
        await self._call(lambda req: p.Focus(req=req, page_id=self._id,
                                             set_focus=bool(set_focus)))

    # the extras a user expects ----------------------------------------------------------

    async def press(self, combo: str) -> None:
        """Presses a key combination as Playwright names it: "Enter", "Control+a"."""
        await self._strokes(keys.press(combo))

    async def type(self, text: str) -> None:
        """Types text key by key (US layout); characters it lacks arrive as char events."""
        if not isinstance(text, str):
            raise InvalidArgument("text must be a string")
        await self._strokes(keys.type_text(text))

    async def click(self, x: int, y: int, *, button: str = "left", click_count: int = 1) -> None:
        if button not in _BUTTONS:
            raise InvalidArgument(f"button must be one of {', '.join(_BUTTONS)}, got {button!r}")
        b = _BUTTONS[button]
        await self.send_mouse_move(x, y)
        await self.send_mouse_click(x, y, b, False, click_count)
        await self._input(self._mouse_click(x, y, b, True, click_count, 0), handled=True)
