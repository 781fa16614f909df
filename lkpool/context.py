"""The parent side of one instance: starts the child, owns the duplex, the process group and
the profile folder, and routes the child's messages to its pages (lkpool/page.py, which turn
their shared-memory buffers into `rtc.VideoFrame`s).

The API is `livekit.browser`'s (`BrowserContext(dev_mode=...)`, `initialize()`, `new_page()`,
page events `paint`/`audio`/`url_changed`/`cursor_changed`, `send_*` input, `navigate`,
`aclose()`, `playwright()`), so code written for one runs on the other; the extras
(`press`, `type`, `click`, `resize`, `evaluate`, counters, `ping`, `closed` events) come on top.

Children are forked by multiprocessing's forkserver, not spawned one by one: the forkserver
is a fresh single-threaded interpreter (started once, from this process, with its
environment) that has imported the child's code, so each child is as clean as a spawned
one (none of the server's threads, loop or sockets) yet starts 150 ms sooner and shares
the interpreter's pages with the others: 8 MB less per instance (bench/density.py).

A child never imports the parent's `__main__`, which multiprocessing does for every child
it starts: a script that uses lkpool needs no `if __name__ == "__main__"` guard (as with
livekit.browser, whose engine is a separate executable), and each child is spared the
script's imports and side effects (an agent importing torch would load it into every
instance).

Nothing here waits forever: every request to the child has a timeout, and when the child dies
every pending request fails with `InstanceCrashed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.spawn
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from . import profiles
from .config import Settings
from .errors import (
    BY_CODE,
    BrowserStartError,
    ClosedError,
    InstanceCrashed,
    InvalidArgument,
    LkpoolError,
    RequestTimeout,
)
from .events import EventEmitter
from .page import AudioData, BrowserPage, PaintData, check_framerate, check_size
from .proc import protocol as p
from .proc.channel import Channel, ChannelClosed
from .tasks import spawn

__all__ = ["AudioData", "BrowserContext", "BrowserPage", "PaintData", "check_framerate",
           "check_size"]

logger = logging.getLogger(__name__)

_instance_ids = itertools.count(1)

ContextEvent = Literal["closed"]

MAX_POSTED = 256  # input messages sent to the child and not answered yet (see _post)
CHILD_NAME = "lkpool-instance-"  # multiprocessing's name of a child process, then its id


def _without_main(get_preparation_data: Callable[[str], dict[str, Any]]
                  ) -> Callable[[str], dict[str, Any]]:
    """multiprocessing tells each child which `__main__` to import before it runs; for our
    children that is dropped (the module docstring says why). Other processes are left
    as multiprocessing makes them."""
    @functools.wraps(get_preparation_data)
    def preparation_data(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if name.startswith(CHILD_NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation_data.lkpool_without_main = True  # type: ignore[attr-defined]
    return preparation_data


def _processes() -> multiprocessing.context.ForkServerContext:
    """Where children come from (see the module docstring)."""
    spawn = multiprocessing.spawn
    if not getattr(spawn.get_preparation_data, "lkpool_without_main", False):
        spawn.get_preparation_data = _without_main(  # type: ignore[assignment]
            spawn.get_preparation_data)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lkpool.proc.main"])  # read when the forkserver starts
    return ctx


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
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._starting: asyncio.Future | None = None
        self._channel: Channel | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._posted: dict[asyncio.Future[str], None] = {}  # of _pending: input, oldest first
        self._req_ids = itertools.count(1)
        self._page_ids = itertools.count(1)
        self._pages: dict[int, BrowserPage] = {}
        self._ready: p.ContextReady | None = None
        self._state: Literal["new", "starting", "running", "closing", "closed"] = "new"
        self.closed_reason: str | None = None
        self.profile_dir: str | None = None
        self._child_pid: int | None = None
        self.started_at = 0.0
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
        return self._child_pid

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

    @property
    def browser_path(self) -> str | None:
        """The browser target's WebSocket path, so a proxy needs no /json/version per
        connection."""
        return self._ready.browser_path if self._ready else None

    @property
    def alive(self) -> bool:
        return (self._state == "running" and self._channel is not None
                and not self._channel.closed)

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
        from .proc import main as child_main

        if not (os.path.isfile(settings.chromium_path) and os.access(settings.chromium_path,
                                                                     os.X_OK)):
            raise BrowserStartError(
                f"Chromium not found at {settings.chromium_path}: install it "
                "(apt-get install -y chromium) or set CHROMIUM_PATH")
        self.profile_dir = profiles.create(settings.chromium_profile_base_dir)
        parent_sock, child_sock = socket.socketpair()
        try:
            self._proc = _processes().Process(
                target=child_main.run, name=f"{CHILD_NAME}{self.instance_id}",
                args=(child_sock, settings, self.profile_dir, self._requested_port,
                      os.getpid()))
            self.started_at = time.monotonic()
            # the fork/exec goes on in its thread even if we are cancelled (teardown waits for
            # it), and it needs the child's end of the socketpair open until it is done
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._proc.start))
            self._starting.add_done_callback(lambda _: child_sock.close())
            await asyncio.shield(self._starting)
            self._child_pid = self._proc.pid
        except BaseException:
            if self._starting is None:
                child_sock.close()
            parent_sock.close()
            raise
        self._channel = await Channel.open(parent_sock)
        try:
            first = await asyncio.wait_for(self._channel.recv(), settings.start_timeout)
        except TimeoutError:
            raise BrowserStartError(
                f"instance did not start within {settings.start_timeout:g}s") from None
        except ChannelClosed:
            raise BrowserStartError(
                f"instance exited during start-up (exit code {await self._exit_code()})"
            ) from None
        if isinstance(first, p.Fatal):
            raise BrowserStartError(first.detail or first.reason)
        if not isinstance(first, p.ContextReady):
            raise BrowserStartError(f"unexpected first message {type(first).__name__}")
        self._ready = first
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
        if self._channel is not None and not self._channel.closed:
            with contextlib.suppress(LkpoolError, asyncio.TimeoutError):
                await self._request(lambda req: p.Shutdown(req=req), timeout=3.0,
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
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        # 2. stop reading and close the duplex: the child's watchdog sees EOF
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._channel is not None:
            self._channel.close()
        # 3. end the child's process group (Chromium, Xvfb, audio reader), then the child
        await self._stop_process()
        # 4. pages: unlink shared memory (the parent owns it), tell listeners
        for page in list(self._pages.values()):
            page._mark_closed(reason)
        # 5. the PulseAudio sinks, when the child could not unload them itself: after a crash,
        #    after a close that had to kill a stuck child, after a start cut short before
        #    ContextReady named the sink. They are named after the child's pid; idempotent.
        if self._child_pid and self.settings.audio:
            await _unload_sinks_of(self._child_pid)
        # 6. the profile folder
        if self.profile_dir:
            await asyncio.to_thread(profiles.remove, self.profile_dir)
        self._closed_event.set()
        self.emit("closed", reason)

    async def _stop_process(self) -> None:
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting  # a start still under way: let it finish, then stop it
            self._child_pid = self._proc.pid if self._proc else None
        proc = self._proc
        if proc is None or proc.pid is None:
            return
        pgid = proc.pid  # the child leads its own process group
        await asyncio.to_thread(proc.join, 2.0)
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            if proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            await asyncio.to_thread(proc.join, grace)
            if proc.exitcode is not None and not _group_alive(pgid):
                break
        with contextlib.suppress(ValueError):
            proc.close()

    async def _exit_code(self) -> int | None:
        if self._proc is None:
            return None
        await asyncio.to_thread(self._proc.join, 2.0)
        return self._proc.exitcode

    # ---- the duplex ---------------------------------------------------------------------

    def _send(self, msg: p.Message) -> None:
        if self._channel is None or self._channel.closed:
            return
        try:
            self._channel.send(msg)
        except ChannelClosed:
            pass

    def _check_running(self, allow_closing: bool = False) -> None:
        if not (self.alive or (allow_closing and self._state == "closing")):
            if self.closed_reason == "crashed":
                raise InstanceCrashed(f"instance {self.instance_id} crashed")
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")

    def _open_channel(self) -> Channel:
        """The duplex to the child, there from its start until the context closes."""
        if self._channel is None:
            raise ClosedError(f"instance {self.instance_id} is not running ({self._state})")
        return self._channel

    async def _request(self, make: Callable[[int], p.Message], timeout: float | None = None,
                       *, allow_closing: bool = False) -> str:
        self._check_running(allow_closing)
        req = next(self._req_ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        msg = make(req)
        try:
            self._open_channel().send(msg)
            timeout = self.settings.request_timeout if timeout is None else timeout
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                raise  # the instance answered, with a timeout of its own (a stuck page)
            raise RequestTimeout(f"{type(msg).__name__} got no answer within {timeout:g}s "
                                 f"from instance {self.instance_id}") from None
        except ChannelClosed as exc:
            raise InstanceCrashed(f"instance {self.instance_id} is gone") from exc
        finally:
            self._pending.pop(req, None)

    async def _read_loop(self) -> None:
        reason = "crashed"
        fatal: p.Fatal | None = None
        try:
            async for msg in self._open_channel():
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
                             self._proc.exitcode if self._proc else None)
        self._state = "closing"
        await self._teardown(reason)

    async def _post(self, make: Callable[[int], p.Message]) -> None:
        """Sends a request and returns without waiting for its answer: for input, which the
        child hands to Chromium in the order it was sent.

        Waiting for each event's answer would hold every event behind a mouse move, which
        Blink handles only at its next frame (12-16 ms here; a press after it is handled
        within a millisecond because it flushes the move). livekit.browser does not wait
        either. Unanswered posts are bounded by MAX_POSTED: past it, posting waits for the
        oldest, so a flood of input meets back-pressure instead of a growing queue. An
        answer that is an error is logged."""
        while len(self._posted) >= MAX_POSTED:
            oldest = next(iter(self._posted))
            with contextlib.suppress(Exception):
                await asyncio.shield(oldest)  # its error, if any, is logged by its callback
            self._posted.pop(oldest, None)
        self._check_running()
        req = next(self._req_ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        msg = make(req)
        try:
            self._open_channel().send(msg)
        except ChannelClosed as exc:
            raise InstanceCrashed(f"instance {self.instance_id} is gone") from exc
        self._pending[req] = fut
        self._posted[fut] = None
        fut.add_done_callback(lambda f: self._post_answered(req, f, type(msg).__name__))

    async def _posted_handled(self, timeout: float | None = None) -> None:
        """Returns once every input posted so far was answered (handled or failed)."""
        if not self._posted:
            return
        timeout = self.settings.request_timeout if timeout is None else timeout
        _, late = await asyncio.wait([asyncio.shield(f) for f in self._posted],
                                     timeout=timeout)
        if late:
            raise RequestTimeout(f"{len(late)} input events not handled within {timeout:g}s "
                                 f"by instance {self.instance_id}")

    def _post_answered(self, req: int, fut: asyncio.Future[str], kind: str) -> None:
        self._pending.pop(req, None)
        self._posted.pop(fut, None)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and not isinstance(exc, ClosedError | InstanceCrashed):
            self.log.warning("%s failed: %s", kind, exc)

    def _on_result(self, msg: p.Result) -> None:
        fut = self._pending.get(msg.req)
        if fut is None or fut.done():
            return
        if msg.error:
            fut.set_exception(BY_CODE.get(msg.code, LkpoolError)(msg.error))
        else:
            fut.set_result(msg.value)

    def _page_event(self, msg: Any, method: Callable[[BrowserPage, Any], None]) -> None:
        page = self._pages.get(msg.page_id)
        if page is not None:
            method(page, msg)

    def _on_page_closed(self, msg: p.PageClosed) -> None:
        page = self._pages.get(msg.page_id)
        if page is not None:
            page._mark_closed(msg.reason or "closed")

    _HANDLERS: dict[type, Callable[[BrowserContext, Any], None]] = {
        p.Result: _on_result,
        p.AcquirePaint: lambda self, m: self._on_paint(m),
        p.Audio: lambda self, m: self._page_event(m, BrowserPage._on_audio),
        p.UrlChanged: lambda self, m: self._page_event(m, BrowserPage._on_url),
        p.TitleChanged: lambda self, m: self._page_event(m, BrowserPage._on_title),
        p.CursorChanged: lambda self, m: self._page_event(m, BrowserPage._on_cursor),
        p.DialogOpened: lambda self, m: self._page_event(m, BrowserPage._on_dialog_opened),
        p.DialogClosed: lambda self, m: self._page_event(m, BrowserPage._on_dialog_closed),
        p.PageClosed: _on_page_closed,
    }

    def _on_paint(self, msg: p.AcquirePaint) -> None:
        page = self._pages.get(msg.page_id)
        if page is None:
            return  # the page is gone; its buffers were unlinked with it
        page._on_paint(msg)

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
        page = BrowserPage(self, next(self._page_ids), url=url, width=width, height=height,
                           framerate=framerate)
        self._pages[page.id] = page
        try:
            await page._start()
        except BaseException:
            self._pages.pop(page.id, None)
            raise
        return page

    async def ping(self, timeout: float | None = None) -> None:
        """Healthy means: the child answers and its browser answers CDP."""
        await self._request(lambda req: p.Ping(req=req), timeout=timeout)

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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _unload_sinks_of(pid: int) -> None:
    """Unloads the null sinks of a child that could not do it itself (it was killed)."""
    with contextlib.suppress(Exception):
        from .proc.audio import unload_sinks_of

        await asyncio.to_thread(unload_sinks_of, pid)
