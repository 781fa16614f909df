"""The child process of one instance: one browser, served over the duplex.

`run` is the process target. The child puts itself in its own process group first, so that
Chromium, its helpers, Xvfb and parec are all in it and one sweep ends them whatever way
the child leaves: parent gone (duplex EOF, or the parent's pidfd), browser crashed, SIGTERM,
Shutdown. Commands are dispatched through `Child.handlers` (message type -> coroutine);
each runs as its own task so a slow navigation does not hold up input, and CDP keeps the
order in which they were sent. The pages themselves are `pages.Pages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from .. import profiles
from ..config import Settings
from ..errors import BrowserStartError
from ..tasks import spawn
from . import forward, xlib
from . import protocol as p
from .audio import AudioSink
from .cdp import CDPClosed, CDPConnection, CDPError, CDPTimeout
from .channel import Channel, ChannelClosed
from .chromium import Launched, launch
from .downloads import DownloadCap
from .pages import Pages
from .screen import Screen
from .tab import NavigationFailed, Page, PageGone, ScriptError

logger = logging.getLogger("lkpool.proc")

PROCESS_NAME = b"lkpool-child"
VERSION = "lkpool-chromium/1"

# exception raised by a handler -> Result.code (first match wins; order = most specific first)
ERROR_CODES: list[tuple[type[BaseException], str]] = [
    (PageGone, "no_such_page"),
    (KeyError, "no_such_page"),
    (NavigationFailed, "navigation_failed"),
    (ScriptError, "page_error"),
    (ValueError, "invalid_argument"),
    (CDPTimeout, "timeout"),
    (TimeoutError, "timeout"),
    (CDPClosed, "crashed"),
    (CDPError, "page_error"),
]


def resolve_capture(setting: str) -> str:
    """settings.capture -> the mode this machine can do; a fallback is logged once."""
    if setting == "screencast":
        return "screencast"
    if shutil.which("Xvfb"):
        return "x11"
    if setting == "x11":
        logger.warning("CAPTURE=x11 but Xvfb is not installed: using screencast "
                       "(apt-get install xvfb for x11 capture)")
    else:
        logger.info("Xvfb not found: capturing with the CDP screencast")
    return "screencast"


class Child:
    def __init__(self, channel: Channel, settings: Settings, profile_dir: str,
                 port: int, parent_pid: int) -> None:
        self.channel = channel
        self.parent_pid = parent_pid
        self.settings = settings
        self.profile_dir = profile_dir
        self.port = port
        self.mode = resolve_capture(settings.capture)
        self.launched: Launched | None = None
        self.cdp: CDPConnection | None = None
        self.audio: AudioSink | None = None
        self.audio_wanted: set[int] = set()  # pages whose audio the parent listens to
        self._audio_switch: asyncio.Task | None = None
        self.exit_code = 0
        self.stopping = asyncio.Event()
        self.parent_gone = False
        self._tasks: set[asyncio.Task] = set()
        self._pidfds: list[int] = []
        self._cache_ready = False  # Network.clearBrowserCache answers at once (reuse only)
        self.netns: forward.Namespace | None = None  # the sandbox's network, where DevTools is
        self.pages = Pages(self.mode, self._send, self._spawn)
        page = self.pages.get
        self.handlers: dict[type, Callable[[Any], Awaitable[Any]]] = {
            p.CreatePage: self._create_page, p.ClosePage: self._close_page,
            p.Navigate: lambda m: page(m.page_id).navigate(m.url),
            p.GoBack: lambda m: page(m.page_id).history_step(-1),
            p.GoForward: lambda m: page(m.page_id).history_step(+1),
            p.Reload: lambda m: page(m.page_id).reload(),
            p.Resize: self.pages.resize, p.SetFramerate: self.pages.set_framerate,
            p.MouseMove: lambda m: page(m.page_id).mouse_move(m.x, m.y, m.mouse_leave,
                                                              m.modifiers),
            p.MouseClick: lambda m: page(m.page_id).mouse_click(
                m.x, m.y, m.button, m.mouse_up, m.click_count, m.modifiers),
            p.MouseWheel: lambda m: page(m.page_id).mouse_wheel(
                m.x, m.y, m.delta_x, m.delta_y, m.modifiers),
            p.KeyEvent: lambda m: page(m.page_id).key(
                m.type, m.modifiers, m.windows_key_code, m.native_key_code, m.character,
                m.key, m.code, m.text),
            p.Focus: lambda m: page(m.page_id).focus(m.set_focus),
            p.HandleDialog: lambda m: page(m.page_id).handle_dialog(m.accept, m.prompt_text),
            p.Evaluate: self.evaluate, p.Ping: self.ping, p.Shutdown: self.shutdown,
        }

    # ---- start-up ------------------------------------------------------------------------
    async def start(self) -> None:
        size = (self.settings.width, self.settings.height)
        if self.settings.audio:
            self.audio = await asyncio.to_thread(
                AudioSink.open, os.path.join(self.profile_dir, "pulse"))
        else:
            logger.info("audio off (AUDIO=false)")
        env = self.audio.env if self.audio else {}
        xlib.ON_X_SERVER_LOST.append(self._emergency_cleanup)
        self.launched = await launch(self.settings, self.profile_dir, self.port, self.mode,
                                     size, env)
        box = self.launched.box  # in its sandbox: our DevTools socket is made inside it,
        netns_pid = box.inner if box is not None and box.forward is not None else 0
        if netns_pid:  # past the relay, which then carries other clients' sockets only
            self.netns = forward.Namespace.of(netns_pid)
        self.cdp = await CDPConnection.connect(
            self.launched.ws_url, sock=self.netns.socket() if self.netns else None)
        self.cdp.on("disconnected", lambda reason: self.crashed(f"devtools closed: {reason}"))
        self.cdp.on("Target.targetDestroyed", lambda prm, _s: self.pages.target_gone(
            prm.get("targetId"), "closed"))
        self.cdp.on("Target.targetCreated", lambda prm, _s: self.pages.target_created(
            prm.get("targetInfo", {})))
        self.cdp.on("Target.targetCrashed", lambda prm, _s: self.pages.target_gone(
            prm.get("targetId"), "crashed"))
        await self.cdp.send("Target.setDiscoverTargets", {"discover": True})
        downloads = profiles.downloads_dir(self.profile_dir)  # made by launch
        self.downloads = DownloadCap(self.cdp, self.settings.download_max_bytes)
        await self.cdp.send("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": downloads, "eventsEnabled": True})
        targets = (await self.cdp.send("Target.getTargets"))["targetInfos"]
        launched = self.launched
        screen = Screen(launched.display, launched.largest, launched.window) \
            if launched.display else None
        self.pages.open(self.cdp, screen, launched.display,
                        next((t["targetId"] for t in targets if t["type"] == "page"), None))
        version = (await self.cdp.send("Browser.getVersion")).get("product", VERSION)
        self._watch_processes()
        # the sink is there for Chromium to play into; its monitor is read only once the
        # parent listens (ListenAudio)
        self.channel.send(p.ContextReady(
            launched.debugging_port, launched.browser.pid, self.mode, launched.display,
            self.audio.name if self.audio else "", version,
            urllib.parse.urlsplit(launched.ws_url).path, netns_pid,
            self.netns.inode if self.netns else 0))

    # ---- commands ------------------------------------------------------------------------
    async def evaluate(self, m: p.Evaluate) -> str:
        return json.dumps(await self.pages.get(m.page_id).evaluate(m.expression))

    async def _create_page(self, m: p.CreatePage) -> str:
        answer = await self.pages.create(m)
        if self.settings.max_reusable > 0 and not self._cache_ready:
            self._cache_ready = True
            await self._wait_for_cache_clearing(m.page_id)
        return answer

    async def _wait_for_cache_clearing(self, page_id: int) -> None:
        """Chromium answers `Network.clearBrowserCache` only once some 3 s have passed
        since it started, however empty the cache (measured: calls sent 0.25, 1.25 and
        2.25 s after DevTools opened were all answered at 3.26 s; one at 4.25 s at once).
        A reused instance's reset makes that call, so the first reset after a short first
        lease waited up to 3 s while its slot was needed (bench/pool.py's reuse jobs). With
        reuse on, the instance's first page is ready only once the call is answered: the
        wait moves to the start, which the warm floor hides."""
        started = time.monotonic()
        try:
            await self.pages.get(page_id).call("Network.clearBrowserCache",
                                               timeout=self.settings.start_timeout)
        except Exception as exc:  # the reset will try again, and fail the instance then
            logger.warning("clearing the cache at start failed: %s", exc)
        logger.debug("cache clearing ready after %.2fs", time.monotonic() - started)

    async def _close_page(self, m: p.ClosePage) -> Any:
        self._listen_audio(m.page_id, False)
        return await self.pages.close(m)

    async def ping(self, m: p.Ping) -> str:
        """The browser answers, and so does each page's renderer: a page stuck in
        `while(true){}` leaves the browser process answering, so only a call into the page
        shows it. Only a timeout counts; other errors (a page mid-navigation) do not."""
        assert self.cdp is not None
        limit = self.settings.health_check_timeout
        product = (await self.cdp.send("Browser.getVersion", timeout=limit)).get("product", "")
        await asyncio.gather(*(self._probe(state.page, limit)
                               for state in list(self.pages.states.values())))
        return product

    @staticmethod
    async def _probe(page: Page, limit: float) -> None:
        if page.dialog_open:
            return  # its scripts wait for someone to answer a dialog: waiting, not stuck
        try:
            await page.call("Runtime.evaluate", {"expression": "0"}, timeout=limit)
        except CDPTimeout:
            if page.dialog_open:
                return  # the dialog opened while the probe was on its way: it waits too
            raise TimeoutError(f"page {page.id} does not answer: its renderer is stuck") \
                from None
        except (CDPError, PageGone):
            pass

    async def shutdown(self, m: p.Shutdown) -> None:
        asyncio.get_running_loop().call_soon(self.stopping.set)

    async def _answer(self, msg: Any) -> None:
        error = code = value = ""
        try:
            result = await self.handlers[type(msg)](msg)
            value = result if isinstance(result, str) else ""
        except Exception as exc:
            code = next((c for kind, c in ERROR_CODES if isinstance(exc, kind)), "page_error")
            error = str(exc) or type(exc).__name__
            if code == "page_error" and not isinstance(exc, (CDPError, ScriptError)):
                logger.exception("%s failed", type(msg).__name__)
        self._send(p.Result(msg.req, error, code, value))

    # ---- events --------------------------------------------------------------------------
    def _send(self, msg: p.Message) -> None:
        if not self.channel.closed:
            try:
                self.channel.send(msg)
            except ChannelClosed:
                pass

    def _on_audio(self, pts: int, pcm: bytes) -> None:
        if self.pages.first is not None:
            self._send(p.Audio(self.pages.first, pts, 48000, 2, 480, pcm))

    def _listen_audio(self, page_id: int, on: bool) -> None:
        if on:
            self.audio_wanted.add(page_id)
        else:
            self.audio_wanted.discard(page_id)
        if self.audio is not None and (self._audio_switch is None or self._audio_switch.done()):
            self._audio_switch = spawn(self._switch_audio(), name="audio-switch",
                                       into=self._tasks, log=logger)

    async def _switch_audio(self) -> None:
        """Starts or stops the sink's reader until it matches what the parent wants (one
        switch at a time: a start and a stop never interleave)."""
        audio = self.audio
        assert audio is not None
        while bool(self.audio_wanted) != audio.reading:
            if self.audio_wanted:
                await audio.start(self._on_audio, self._children_exited)
            else:
                await audio.stop_reading()

    def _emergency_cleanup(self) -> None:
        """For paths where the process ends right away (X server lost): what only we can
        undo."""
        if self.audio is not None:
            self.audio.unload()
        kill_group()

    def crashed(self, detail: str) -> None:
        if self.stopping.is_set():
            return
        logger.error("browser gone: %s", detail)
        self._send(p.Fatal("crashed", detail))
        self.exit_code = 3
        self.stopping.set()

    def _spawn(self, coro) -> None:
        spawn(coro, into=self._tasks, log=logger)

    # ---- loops ---------------------------------------------------------------------------
    async def read_commands(self) -> None:
        try:
            while True:
                msg = await self.channel.recv()
                if isinstance(msg, p.ReleasePaint):
                    self.pages.release_paint(msg)
                elif isinstance(msg, p.ListenAudio):
                    self._listen_audio(msg.page_id, msg.on)
                elif type(msg) in self.handlers:
                    self._spawn(self._answer(msg))
                else:
                    logger.error("unexpected message %s", type(msg).__name__)
        except ChannelClosed:
            logger.info("parent closed the duplex")
            self.parent_gone = True
            self.stopping.set()

    async def watchdog(self) -> None:
        """Parent gone -> stop; browser, Xvfb or the audio daemon exited -> crashed (their
        pidfds are added by `_watch_processes` once started, parec's end by the audio
        sink). Each is a pidfd in the event loop: an idle instance does not wake for its
        watchdog at all (bench/idle.py). The parent is watched through a pidfd (no pid
        reuse), not our ppid: a forkserver's child has the forkserver for a parent, and
        losing that one must not end the instance."""
        try:
            self._watch(self.parent_pid, self._parent_exited)
            await asyncio.Event().wait()  # until close() cancels it
        finally:
            loop = asyncio.get_running_loop()
            for fd in self._pidfds:
                loop.remove_reader(fd)
                os.close(fd)
            self._pidfds.clear()

    def _watch(self, pid: int, exited: Callable[[], object]) -> None:
        """Calls `exited` once process `pid` has exited (at once if it is gone already)."""
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            loop.call_soon(exited)
            return
        self._pidfds.append(fd)

        def readable() -> None:
            loop.remove_reader(fd)
            exited()

        loop.add_reader(fd, readable)

    def _parent_exited(self) -> None:
        logger.warning("parent %d is gone", self.parent_pid)
        self.parent_gone = True
        self.stopping.set()

    def _watch_processes(self) -> None:
        """After start: Chromium (its sandbox), Xvfb and the audio daemon end the instance
        as soon as one of them exits."""
        launched = self.launched
        assert launched is not None
        procs = [launched.browser, launched.xvfb, self.audio.daemon if self.audio else None]
        for proc in procs:
            if proc is not None:
                self._watch(proc.pid, self._children_exited)

    def _children_exited(self) -> bool:
        """Reports (as a crash) the first of Chromium, Xvfb and parec found gone."""
        launched = self.launched
        if launched is None:
            return False
        if launched.browser.poll() is not None:
            self.crashed(f"chromium exited with code {launched.browser.returncode}")
        elif launched.xvfb is not None and launched.xvfb.poll() is not None:
            self.crashed(f"Xvfb exited with code {launched.xvfb.returncode}")
        elif self.audio is not None and (code := self.audio.reader_exit_code) is not None:
            self.crashed(f"the audio reader (parec) exited with code {code}")
        elif self.audio is not None and (code := self.audio.daemon_exit_code) is not None:
            self.crashed(f"the instance's pulseaudio exited with code {code}")
        else:
            return False
        return True

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        reader = loop.create_task(self.read_commands(), name="commands")
        watchdog = loop.create_task(self.watchdog(), name="watchdog")
        try:
            start = loop.create_task(self.start(), name="start")
            stop = loop.create_task(self.stopping.wait())
            await asyncio.wait({start, stop}, timeout=self.settings.start_timeout + 10,
                               return_when=asyncio.FIRST_COMPLETED)
            if not start.done():
                start.cancel()
                if not self.stopping.is_set():
                    raise BrowserStartError("the browser did not start in time")
            elif (failed := start.exception()) is not None:
                raise failed
            await self.stopping.wait()
        except Exception as exc:
            detail = str(exc) if isinstance(exc, BrowserStartError) else f"{exc!r}"
            logger.error("start failed: %s", detail,
                         exc_info=not isinstance(exc, BrowserStartError))
            self._send(p.Fatal("browser_start_failed", detail))
            self.exit_code = 2
        finally:
            await self.close(reader, watchdog)
        return self.exit_code

    async def close(self, *loops: asyncio.Task) -> None:
        """The shutdown script, in order."""
        # 1. stop taking commands and watching; answers already queued still go out below
        for task in loops:
            task.cancel()
        # 2. stop every capture first: nothing may write into shared memory after this
        await self.pages.drop_all()
        # 3. the rest of the command tasks (their Results may still be sent)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *loops, return_exceptions=True)
        # 4. DevTools, then audio (only we can unload our sink), then the processes
        if self.cdp is not None:
            await self.cdp.close()
        if self.netns is not None:
            self.netns.close()
        if self.audio is not None:
            await self.audio.aclose()
        if self.launched is not None:
            await asyncio.to_thread(self.launched.stop)
        kill_group()
        # 5. flush what we still have to say, then close the duplex
        if not self.parent_gone:
            try:
                await asyncio.wait_for(self.channel.drain(), 2)
            except (ChannelClosed, TimeoutError):
                pass
        self.channel.close()


def kill_group() -> None:
    """SIGKILLs every other process of our group (Chromium helpers, Xvfb, parec); repeated
    because a dying Chromium may still fork."""
    me, group = os.getpid(), os.getpgid(0)
    for _ in range(20):
        others = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                others.append(int(entry))
        if not others:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), stream=sys.stderr, force=True,
        format=f"%(asctime)s child[{os.getpid()}] %(name)s %(levelname)s %(message)s")


def _name_process() -> None:
    """What ps and top show for us: a forkserver's children all carry its command line."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, PROCESS_NAME, 0, 0, 0)  # PR_SET_NAME


def run(sock: socket.socket, settings: Settings, profile_dir: str,
        remote_debugging_port: int, parent_pid: int | None = None) -> None:
    """Process target: serves one instance until Shutdown, parent loss, crash or SIGTERM.
    `parent_pid` is the process that holds the duplex's other end; by default our parent,
    which a forkserver's child must be told is someone else."""
    os.setpgid(0, 0)
    _name_process()
    _setup_logging(settings)
    owner = parent_pid if parent_pid is not None else os.getppid()

    async def main() -> int:
        channel = await Channel.open(sock)
        return await Child(channel, settings, profile_dir, remote_debugging_port,
                           owner).serve()

    try:
        code = asyncio.run(main())
    finally:
        kill_group()
    sys.exit(code)
