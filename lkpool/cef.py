"""The cef engine: livekit.browser's BrowserContext (CEF off-screen rendering) behind a thin
wrapper that gives it the API of `lkpool.context.BrowserContext` and `lkpool.page.BrowserPage`,
so the pool, the server and the publisher use both engines the same way. The differences, all
absorbed here:

- its debugging port is only known after `initialize()` (we read it from there);
- it has no ping, no "closed" event and no closed_reason: we watch its child process;
- its pages have no resize, framerate change, reload, title, evaluate or Playwright-style
  click/press/type: click/press/type become its raw input events (keys from lkpool.keys),
  reload navigates to the current URL, evaluate goes over CDP, and resize / set_framerate
  make a new livekit page at the new size on the current URL (it reloads) behind the same
  CefPage, so the pool can hand a warm page out at any size;
- its cursor is CEF's cursor enum: `page.cursor` holds it as a CSS keyword;
- its `aclose()` joins the child synchronously (up to 15 s): we close the socket and wait for
  the child asynchronously first, killing its process group after a grace period, so the
  event loop never stalls on a stuck child.

The wrapper reads a few private attributes of livekit.browser (`_proc`, `_duplex`,
`_closed_event`, `_remote_debugging_port`, `_root_cache_path`): there is no public way to
learn them, and keeping that knowledge in this one module is the point of it.
"""


from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cursors, errors, keys
from .config import Settings
from .events import EventEmitter

if TYPE_CHECKING:
    from livekit import rtc

DOWNLOAD_HINT = "run `python scripts/download_cef.py` (or `pip install 'lkpool[cef]'` first)"
# seconds a CEF child has to exit after its socket closed before its group is killed
EXIT_GRACE = 5.0
_ids = itertools.count(1)

MOUSE_BUTTONS = {"left": 0, "middle": 1, "right": 2}


def cef_resources_dir() -> Path:
    """Where livekit.browser's CEF binaries are; EngineError naming the script when absent."""
    try:
        from livekit.browser import get_resources_dir
    except ImportError as exc:
        raise errors.EngineError(
            f"ENGINE=cef needs the livekit-browser package: pip install 'lkpool[cef]' ({exc})"
        ) from exc
    try:
        return get_resources_dir()
    except FileNotFoundError as exc:
        raise errors.EngineError(
            f"ENGINE=cef: the CEF binaries are missing; {DOWNLOAD_HINT}. ({exc})"
        ) from exc
    except RuntimeError as exc:  # unsupported platform
        raise errors.EngineError(f"ENGINE=cef cannot run here: {exc}") from exc


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


class CefContext(EventEmitter[str]):
    """livekit.browser.BrowserContext with lkpool's BrowserContext API."""

    capture = "cef"  # CEF off-screen rendering; not one of the chromium engine's modes
    display = ""
    audio_sink = ""  # CEF hands audio over itself; no PulseAudio sink

    def __init__(self, dev_mode: bool = False, remote_debugging_port: int = 0, *,
                 settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings(engine="cef")
        self._dev_mode = dev_mode
        self._port = remote_debugging_port
        self._inner: Any = None
        self._pages: dict[int, CefPage] = {}
        self._watch: asyncio.Task | None = None
        self._init_task: asyncio.Task | None = None
        self._pid: int | None = None
        self._closing = False
        self.closed_reason: str | None = None
        self.started_at = 0.0
        self._ended = asyncio.Event()
        self.instance_id = next(_ids)
        self.log = logging.getLogger(f"lkpool.cef.ctx{self.instance_id}")

    # -- properties of the contract
    @property
    def remote_debugging_port(self) -> int:
        return self._inner._remote_debugging_port if self._inner else self._port

    @property
    def _proc(self) -> Any:
        return self._inner._proc if self._inner else None

    def _running(self) -> bool:
        proc = self._proc
        if proc is None:
            return False
        try:
            return proc.exitcode is None and proc.pid is not None
        except ValueError:  # livekit closed the process object: the child has exited
            return False

    @property
    def pid(self) -> int | None:
        if self._pid is None and self._running():
            self._pid = self._proc.pid  # kept: livekit closes the process object at the end
        return self._pid

    browser_pid = pid  # CEF runs inside the child itself

    @property
    def version(self) -> str:
        from livekit.browser import __version__
        return f"livekit-browser/{__version__}"

    @property
    def profile_dir(self) -> str | None:
        return self._inner._root_cache_path if self._inner else None

    browser_path = None  # CEF does not say; the proxy asks /json/version

    @property
    def alive(self) -> bool:
        return (self.closed_reason is None and self._running()
                and not self._inner._closed_event.is_set())

    @property
    def pages(self) -> list[CefPage]:
        return [p for p in self._pages.values() if not p.closed]

    # -- life cycle
    async def initialize(self) -> None:
        if self._inner is not None:
            raise errors.ClosedError("a CefContext is initialised once")
        cef_resources_dir()  # the clear error, before spawning anything
        from livekit.browser import BrowserContext
        self._inner = BrowserContext(dev_mode=self._dev_mode, remote_debugging_port=self._port)
        task = self._init_task = asyncio.ensure_future(self._inner.initialize())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.settings.start_timeout)
        except asyncio.CancelledError:
            await self._abort_start()
            raise
        if not done:
            await self._abort_start()
            raise errors.BrowserStartError(
                f"cef did not start within {self.settings.start_timeout:g}s")
        try:
            task.result()
        except Exception as exc:
            self.closed_reason = "crashed"
            raise errors.BrowserStartError(f"cef failed to start: {exc}") from exc
        self.pid  # noqa: B018 (remembers the pid while the process object is open)
        self.started_at = time.time()
        self._watch = asyncio.create_task(self._watch_child())
        self.log.debug("cef ready pid=%s port=%s", self.pid, self.remote_debugging_port)

    async def _watch_child(self) -> None:
        """livekit sets _closed_event when the child's socket ends: that is our 'closed'."""
        await self._inner._closed_event.wait()
        self._end("closed" if self._closing else "crashed")

    def _end(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if reason != "closed":
            self.log.warning("cef instance ended: %s", reason)
        for page in self._pages.values():
            page._mark_closed(reason)
        self._ended.set()
        self.emit("closed", reason)

    async def new_page(self, *, url: str = "about:blank", width: int | None = None,
                       height: int | None = None, framerate: int | None = None) -> CefPage:
        if not self.alive:
            raise errors.ClosedError("the cef context is not running")
        s = self.settings
        width, height = width or s.width, height or s.height
        framerate = framerate or s.framerate
        page = CefPage(self, await self._new_inner(url, width, height, framerate), url=url,
                       width=width, height=height, framerate=framerate)
        self._pages[page.id] = page
        return page

    async def _new_inner(self, url: str, width: int, height: int, framerate: int) -> Any:
        """A livekit.browser page: its shm, its CreateBrowserRequest, its creation awaited."""
        from .page import check_framerate, check_size
        check_size(width, height)
        check_framerate(framerate)
        try:
            inner = await asyncio.wait_for(self._inner.new_page(
                url=url, width=width, height=height, framerate=framerate),
                self.settings.request_timeout)
        except TimeoutError as exc:
            raise errors.RequestTimeout("cef did not create the page in time") from exc
        if not self.alive:  # livekit resolves the creation future when the child dies
            raise errors.InstanceCrashed("the cef process ended while creating a page")
        return inner

    async def ping(self, timeout: float | None = None) -> None:
        # livekit.browser has no ping message: a live child with an open socket is healthy
        if not self.alive:
            raise errors.InstanceCrashed(f"cef instance {self.closed_reason or 'died'}")

    async def wait_closed(self, timeout: float | None = None) -> str:
        await asyncio.wait_for(self._ended.wait(), timeout)
        return self.closed_reason or "closed"

    def playwright(self, timeout: float | None = None) -> Any:
        return self._inner.playwright(timeout)

    def _kill_group(self) -> None:
        if self._running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # the child leads its own group

    async def _abort_start(self) -> None:
        """A start given up (timeout, cancel, aclose): kill first, so livekit's own failure
        clean-up joins a dead child instead of blocking the loop for up to 15 s."""
        self._kill_group()
        task = self._init_task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        self.closed_reason = self.closed_reason or ("closed" if self._closing else "crashed")
        self._ended.set()

    async def aclose(self) -> None:
        """Closes pages, then the socket; waits for the child without blocking the loop."""
        if self._closing or self._inner is None:
            return
        self._closing = True
        if self._init_task is not None and not self._init_task.done():
            await self._abort_start()  # closed while starting: nothing to close cleanly
            return
        # 1. pages: each unlinks its shm even when the child no longer answers
        for page in list(self._pages.values()):
            await page.aclose()
        # 2. the socket: the child's manager thread sees it end and quits CEF
        inner = self._inner
        if inner._duplex is not None:
            from livekit.agents.utils.aio.duplex_unix import DuplexClosed
            with contextlib.suppress(DuplexClosed, OSError):
                await inner._duplex.aclose()
        # 3. wait for the child asynchronously, then kill its process group
        deadline = time.monotonic() + EXIT_GRACE
        while self._running() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._kill_group()
        # 4. livekit's own clean-up: joins the (now dead) child, removes its cache folder
        with contextlib.suppress(Exception):
            await inner.aclose()
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._end("closed")

    async def __aenter__(self) -> CefContext:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
