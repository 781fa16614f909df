"""The parent side of one instance: starts its child (lkpool/child.py), owns the duplex
(lkpool/connection.py), the profile folder and the instance's end, and routes the child's
messages to its pages (lkpool/page.py, which turn their shared-memory buffers into
`rtc.VideoFrame`s).

The API is `livekit.browser`'s (`BrowserContext(dev_mode=...)`, `initialize()`, `new_page()`,
page events `paint`/`audio`/`url_changed`/`cursor_changed`, `send_*` input, `navigate`,
`aclose()`, `playwright()`), so code written for one runs on the other; the extras
(`press`, `type`, `click`, `resize`, `evaluate`, counters, `ping`, `closed` events) come on top.

Each page talks to the child through its own `PageChannel`, never through the context's
privates; the context knows its pages only to route messages to them.

Nothing here waits forever: every request to the child has a timeout, and when the child dies
every pending request fails with `InstanceCrashed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from . import profiles
from .child import ChildProcess
from .config import Settings
from .connection import Connection, PageChannel
from .errors import BrowserStartError, ClosedError, InstanceCrashed, InvalidArgument, LkpoolError
from .events import EventEmitter
from .page import AudioData, BrowserPage, PaintData, check_framerate, check_size
from .proc import forward
from .proc import protocol as p
from .proc.channel import Channel, ChannelClosed
from .tasks import spawn

__all__ = ["AudioData", "BrowserContext", "BrowserPage", "PaintData", "check_framerate",
           "check_size"]

logger = logging.getLogger(__name__)

_instance_ids = itertools.count(1)

ContextEvent = Literal["closed"]


class BrowserContext(EventEmitter[ContextEvent]):
    """One instance: a child process running one browser, and its pages."""

    def __init__(self, *, dev_mode: bool = False, remote_debugging_port: int = 0,
                 settings: Settings | None = None) -> None:
        super().__init__()
        self._dev_mode = dev_mode
        self._requested_port = remote_debugging_port
        self._settings = settings
        self.instance_id = next(_instance_ids)
        self.log = logging.LoggerAdapter(logger, {"instance": self.instance_id})
        self._child = ChildProcess(self.instance_id)
        self._connection: Connection | None = None
        self._reader: asyncio.Task | None = None
        self._page_ids = itertools.count(1)
        self._pages: dict[int, BrowserPage] = {}
        self._ready: p.ContextReady | None = None
        self._netns: forward.Namespace | None = None
        self._state: Literal["new", "starting", "running", "closing", "closed"] = "new"
        self.closed_reason: str | None = None
        self.profile_dir: str | None = None
        self._closed_event = asyncio.Event()

    # ---- properties ---------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def remote_debugging_port(self) -> int:
        return self._ready.debugging_port if self._ready else self._requested_port

    @property
    def pid(self) -> int | None:
        """The child's pid; still readable after the instance ended (for logs and checks)."""
        return self._child.pid

    @property
    def started_at(self) -> float:
        return self._child.started_at

    @property
    def browser_pid(self) -> int | None:
        return self._ready.browser_pid if self._ready else None

    @property
    def capture(self) -> str:
        return self._ready.capture if self._ready else ""

    @property
    def display(self) -> str:
        return self._ready.display if self._ready else ""

    @property
    def audio_sink(self) -> str:
        return self._ready.audio_sink if self._ready else ""

    @property
    def version(self) -> str:
        return self._ready.version if self._ready else ""

    def devtools_socket(self) -> socket.socket | None:
        """A socket to connect to `remote_debugging_port` with from inside the instance's
        sandbox, past the child's relay (the proxy's fast path); None where DevTools is to
        be reached on the host's loopback."""
        return self._netns.socket() if self._netns is not None and self.alive else None

    @property
    def browser_path(self) -> str | None:
        """The browser target's WebSocket path, so a proxy needs no /json/version per
        connection."""
        return self._ready.browser_path if self._ready else None

    @property
    def alive(self) -> bool:
        return (self._state == "running" and self._connection is not None
                and not self._connection.closed)

    @property
    def pages(self) -> list[BrowserPage]:
        return list(self._pages.values())

    def __repr__(self) -> str:
        return f"<BrowserContext {self.instance_id} {self._state} pid={self.pid}>"

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> BrowserContext:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def initialize(self) -> None:
        if self._state != "new":
            raise ClosedError(f"context already {self._state}: create a new BrowserContext")
        self._state = "starting"
        settings = self.settings
        try:
            await self._spawn(settings)
        except BaseException:
            # shielded: a caller cancelling the start must not leave a half-started child
            await asyncio.shield(self._teardown("start_failed"))
            raise
        self._state = "running"
        self._reader = spawn(self._read_loop(), name=f"lkpool-ctx-{self.instance_id}",
                             log=self.log)

    async def _spawn(self, settings: Settings) -> None:
        if not (os.path.isfile(settings.chromium_path) and os.access(settings.chromium_path,
                                                                     os.X_OK)):
            raise BrowserStartError(
                f"Chromium not found at {settings.chromium_path}: install it "
                "(apt-get install -y chromium) or set CHROMIUM_PATH")
        self.profile_dir = profiles.create(settings.chromium_profile_base_dir)
        sock = await self._child.start(settings, self.profile_dir, self._requested_port)
        channel = await Channel.open(sock)
        self._connection = Connection(
            channel, name=f"instance {self.instance_id}",
            request_timeout=settings.request_timeout, is_open=self._check_running,
            log=self.log)
        try:
            first = await asyncio.wait_for(channel.recv(), settings.start_timeout)
        except TimeoutError:
            raise BrowserStartError(
                f"instance did not start within {settings.start_timeout:g}s") from None
        except ChannelClosed:
            raise BrowserStartError(
                f"instance exited during start-up (exit code {await self._child.exit_code()})"
            ) from None
        if isinstance(first, p.Fatal):
            raise BrowserStartError(first.detail or first.reason)
        if not isinstance(first, p.ContextReady):
            raise BrowserStartError(f"unexpected first message {type(first).__name__}")
        self._ready = first
        self._netns = forward.Namespace.open(first.netns_pid, first.netns_inode)
        self.log.debug("instance ready: port %s capture %s display %s in %.2fs",
                       first.debugging_port, first.capture, first.display,
                       time.monotonic() - self.started_at)

    async def aclose(self) -> None:
        """Stops the instance: idempotent, and safe after the child died."""
        if self._state in ("closing", "closed"):
            await self._closed_event.wait()
            return
        if self._state == "new":
            self._state = "closed"
            self.closed_reason = "closed"
            self._closed_event.set()
            return
        self._state = "closing"
        # 1. ask the child to shut down cleanly (it kills its own group and unloads its sink)
        if self._connection is not None and not self._connection.closed:
            with contextlib.suppress(LkpoolError, asyncio.TimeoutError):
                await self._connection.request(lambda req: p.Shutdown(req=req), timeout=3.0,
                                               allow_closing=True)
        await self._teardown("closed")

    async def _teardown(self, reason: str) -> None:
        """Ends everything this context owns, in order; runs once, whatever state it is in."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._state = "closed"
        # 1. fail every pending request so nobody waits on a dead instance
        error = (InstanceCrashed(f"instance {self.instance_id} crashed")
                 if reason == "crashed" else ClosedError(f"instance {self.instance_id} closed"))
        if self._connection is not None:
            self._connection.fail_all(error)
        # 2. stop reading and close the duplex: the child's watchdog sees EOF
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._connection is not None:
            self._connection.close()
        # 3. end the child's process group (Chromium, Xvfb, audio reader), then the child
        await self._child.stop()
        if self._netns is not None:
            self._netns.close()
        # 4. pages: unlink shared memory (the parent owns it), tell listeners
        for page in list(self._pages.values()):
            page._mark_closed(reason)
        # 5. what a killed child could not remove itself: its Xvfb's socket and lock in /tmp
        #    (the instance's PulseAudio daemon, a process of its group, went with it)
        await self._child.remove_leftovers(self._ready.display if self._ready else "")
        # 6. the profile folder
        if self.profile_dir:
            await asyncio.to_thread(profiles.remove, self.profile_dir)
        self._closed_event.set()
        self.emit("closed", reason)

    # ---- the child's messages -----------------------------------------------------------

    def _open_connection(self) -> Connection:
        """The duplex to the child, there from its start until the context closes."""
        if self._connection is None:
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")
        return self._connection

    def _forget(self, page_id: int) -> None:
        self._pages.pop(page_id, None)

    def _check_running(self, allow_closing: bool = False) -> None:
        if not (self.alive or (allow_closing and self._state == "closing")):
            if self.closed_reason == "crashed":
                raise InstanceCrashed(f"instance {self.instance_id} crashed")
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")

    async def _read_loop(self) -> None:
        reason = "crashed"
        fatal: p.Fatal | None = None
        try:
            async for msg in self._open_connection():
                if isinstance(msg, p.Fatal):
                    fatal = msg
                    continue
                handler = self._HANDLERS.get(type(msg))
                if handler is None:
                    self.log.warning("unexpected %s from child", type(msg).__name__)
                    continue
                try:
                    handler(self, msg)
                except Exception:
                    self.log.exception("handling %s failed", type(msg).__name__)
        except p.ProtocolError:
            self.log.exception("protocol error from child")
        if self._state == "closing":
            return  # aclose() is tearing down
        if fatal is not None:
            self.log.warning("instance ended: %s %s", fatal.reason, fatal.detail)
        else:
            self.log.warning("instance %s died (exit code %s)", self.instance_id,
                             self._child.exitcode)
        self._state = "closing"
        await self._teardown(reason)

    def _page_event(self, msg: Any, method: Callable[[BrowserPage, Any], None]) -> None:
        page = self._pages.get(msg.page_id)
        if page is not None:
            method(page, msg)

    def _on_page_closed(self, msg: p.PageClosed) -> None:
        page = self._pages.get(msg.page_id)
        if page is not None:
            page._mark_closed(msg.reason or "closed")

    _HANDLERS: dict[type, Callable[[BrowserContext, Any], None]] = {
        p.Result: lambda self, m: self._open_connection().resolve(m),
        # a paint for a page that is gone is dropped: its buffers were unlinked with it
        p.AcquirePaint: lambda self, m: self._page_event(m, BrowserPage._on_paint),
        p.Audio: lambda self, m: self._page_event(m, BrowserPage._on_audio),
        p.UrlChanged: lambda self, m: self._page_event(m, BrowserPage._on_url),
        p.TitleChanged: lambda self, m: self._page_event(m, BrowserPage._on_title),
        p.CursorChanged: lambda self, m: self._page_event(m, BrowserPage._on_cursor),
        p.DialogOpened: lambda self, m: self._page_event(m, BrowserPage._on_dialog_opened),
        p.DialogClosed: lambda self, m: self._page_event(m, BrowserPage._on_dialog_closed),
        p.PageClosed: _on_page_closed,
    }

    # ---- public operations --------------------------------------------------------------

    async def new_page(self, *, url: str, width: int | None = None, height: int | None = None,
                       framerate: int | None = None) -> BrowserPage:
        if not self.alive:
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")
        if not isinstance(url, str):
            raise InvalidArgument("url must be a string")
        width = self.settings.width if width is None else width
        height = self.settings.height if height is None else height
        framerate = self.settings.framerate if framerate is None else framerate
        check_size(width, height)
        check_framerate(framerate)
        page_id = next(self._page_ids)
        channel = PageChannel(self._open_connection(),
                              start_timeout=self.settings.start_timeout,
                              detach=lambda: self._forget(page_id))
        page = BrowserPage(channel, page_id, url=url, width=width, height=height,
                           framerate=framerate, context=self)
        self._pages[page.id] = page
        try:
            await page._start()
        except BaseException:
            self._pages.pop(page.id, None)
            raise
        return page

    async def ping(self, timeout: float | None = None) -> None:
        """Healthy means: the child answers and its browser answers CDP."""
        await self._open_connection().request(lambda req: p.Ping(req=req), timeout=timeout)

    async def wait_closed(self, timeout: float | None = None) -> str:
        await asyncio.wait_for(self._closed_event.wait(), timeout)
        return self.closed_reason or "closed"

    @contextlib.asynccontextmanager
    async def playwright(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """A Playwright Browser connected to this instance over CDP."""
        if not self.alive:
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(
                f"http://127.0.0.1:{self.remote_debugging_port}",
                timeout=(timeout or self.settings.start_timeout) * 1000)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await browser.close()
