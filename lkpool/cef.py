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
learn them, and keeping that knowledge in this module and its page (lkpool/cef_page.py, the
page adapter) is the point of them.
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
from typing import Any

from . import errors
from .cef_page import MOUSE_BUTTONS, CefPage
from .config import Settings
from .events import EventEmitter

__all__ = ["DOWNLOAD_HINT", "EXIT_GRACE", "MOUSE_BUTTONS", "CefContext", "CefPage",
           "cef_resources_dir"]

DOWNLOAD_HINT = "run `python scripts/download_cef.py` (or `pip install 'lkpool[cef]'` first)"
# seconds a CEF child has to exit after its socket closed before its group is killed
EXIT_GRACE = 5.0
_ids = itertools.count(1)


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
