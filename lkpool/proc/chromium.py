"""Chromium engine: starts Xvfb (x11 capture) and Debian's Chromium, and finds its DevTools.

Every process started here is in the child's process group (the child called setpgid), so
the child's watchdog ends them all with one `killpg`. Their output goes to a log file in
the profile folder: a pipe nobody reads would fill up and stall the browser.

Xvfb picks its own display number (`-displayfd`): instances and test runs share the
machine, so no fixed numbers. Its screen starts at the largest size the instance shows on
screen and is then set to the page's (see `screen.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass

from ..config import Settings
from ..errors import BrowserStartError
from .screen import screen_for, set_screen_size, window_for

logger = logging.getLogger(__name__)

XVFB_TIMEOUT = 15.0
INSTALL_HINT = "install it with 'apt-get install chromium' or set CHROMIUM_PATH"
XVFB_HINT = "install it with 'apt-get install xvfb' or use CAPTURE=screencast"

# Flags every instance gets. The first line is what Chromium needs on these machines; the
# rest trade features a pooled, remote-driven browser does not use for fewer processes,
# less memory and no background traffic. --mute-audio is deliberately absent: we capture
# the audio.
BASE_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
    "--disable-breakpad", "--password-store=basic", "--disable-client-side-phishing-detection",
    "--autoplay-policy=no-user-gesture-required",
    # frames must keep coming whatever Chromium thinks about window visibility
    "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
    "--disable-background-timer-throttling",
    "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider,"
    "AutofillServerCommunication,InterestFeedContentSuggestions,"
    # memory (bench/density.py): headful Chromium preloads the omnibox popup's WebUI in a
    # renderer of its own (chrome://omnibox-popup.top-chrome, 15-40 MB) that kiosk mode never
    # shows, and keeps a spare renderer warm for the next navigation
    "WebUIOmniboxPopup,WebUIOmniboxFullPopup,WebUIOmniboxAimPopup,PreloadTopChromeWebUI,"
    "SpareRendererForSitePerProcess,"
    # audio plays in the browser process: one utility process less while a page plays sound
    "AudioServiceOutOfProcess",
    # the network service in the browser process instead of a utility process: 16 MB less
    # per instance; a crash of it takes the browser down, which the pool already handles
    "--enable-features=NetworkServiceInProcess2",
    "--renderer-process-limit=1",
    # software compositing needs no separate GPU process: one process less per instance
    "--in-process-gpu",
]

# capture mode -> flags that put Chromium on screen (x11) or off it (screencast)
MODE_FLAGS = {
    "x11": lambda w, h: ["--ozone-platform=x11", "--kiosk", "--window-position=0,0",
                         f"--window-size={w},{h}"],
    "screencast": lambda w, h: ["--headless=new", f"--window-size={w},{h}"],
}


@dataclass
class Launched:
    """What `launch` started; `stop` ends it (the group kill covers helpers)."""
    browser: subprocess.Popen
    xvfb: subprocess.Popen | None
    display: str
    debugging_port: int
    ws_url: str
    window: tuple[int, int]  # x11: the kiosk window; screencast: the headless window
    largest: tuple[int, int]  # x11: the largest window the screen can grow to

    def stop(self) -> None:
        for proc in (self.browser, self.xvfb):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for proc in (self.browser, self.xvfb):
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass


def _log_file(profile_dir: str, name: str):
    return open(os.path.join(profile_dir, f"{name}.log"), "ab", buffering=0)


def start_xvfb(width: int, height: int, profile_dir: str) -> tuple[subprocess.Popen, str]:
    """A private X server with a `width`x`height` screen; returns it and its display name."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise BrowserStartError(f"Xvfb is not installed: {XVFB_HINT}")
    rfd, wfd = os.pipe()
    try:
        with _log_file(profile_dir, "xvfb") as log:
            proc = subprocess.Popen(
                [xvfb, "-displayfd", str(wfd), "-screen", "0", f"{width}x{height}x24",
                 "-nolisten", "tcp", "-noreset", "-dpi", "96",
                 # Chromium renders in software and never asks for GLX; without it Xvfb
                 # does not load Mesa and LLVM: 20 MB less per instance
                 "-extension", "GLX"],
                pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(wfd)
        wfd = -1
        raw = b""
        deadline = time.monotonic() + XVFB_TIMEOUT
        while not raw.endswith(b"\n"):
            # Xvfb writes the number once it accepts connections
            ready, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(rfd, 32) if ready else b""
            if not chunk:
                proc.kill()
                proc.wait()
                raise BrowserStartError(
                    f"Xvfb gave no display within {XVFB_TIMEOUT:.0f} s "
                    f"(see {profile_dir}/xvfb.log)")
            raw += chunk
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    return proc, ":" + raw.decode().strip()


def chromium_command(settings: Settings, profile_dir: str, port: int, mode: str,
                     size: tuple[int, int]) -> list[str]:
    path = shutil.which(settings.chromium_path) or settings.chromium_path
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrowserStartError(f"Chromium not found at {settings.chromium_path!r}: "
                                f"{INSTALL_HINT}")
    return [path, *BASE_FLAGS, *MODE_FLAGS[mode](*size), f"--user-data-dir={profile_dir}",
            f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
            *shlex.split(settings.chromium_flags), "about:blank"]


def _active_port_file(profile_dir: str, _port: int) -> tuple[int, str] | None:
    """Port 0: Chromium writes DevToolsActivePort once its DevTools server listens, which is
    race-free (it picked the port itself)."""
    try:
        with open(os.path.join(profile_dir, "DevToolsActivePort")) as f:
            lines = f.read().split()
    except FileNotFoundError:
        return None
    if len(lines) >= 2 and lines[0].isdigit():
        return int(lines[0]), f"ws://127.0.0.1:{lines[0]}{lines[1]}"
    return None


async def _json_version(_profile_dir: str, port: int) -> tuple[int, str] | None:
    """A port given by the pool (DEBUGGING_PORT_START): Chromium writes no DevToolsActivePort
    then, so ask the DevTools server itself (one plain GET: the child has no HTTP client
    library, to stay small)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 1.0)
        try:
            # HTTP/1.1: Chromium's DevTools server drops HTTP/1.0 requests unanswered
            writer.write(f"GET /json/version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1.0)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            body = await asyncio.wait_for(
                reader.readexactly(length) if length is not None else reader.read(), 1.0)
        finally:
            writer.close()
        if head.split()[1:2] != [b"200"]:
            return None
        return port, json.loads(body)["webSocketDebuggerUrl"]
    except (OSError, TimeoutError, ValueError, KeyError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError):
        return None


async def _devtools(profile_dir: str, proc: subprocess.Popen, timeout: float,
                    port: int = 0) -> tuple[int, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise BrowserStartError(f"Chromium exited with code {proc.returncode} while "
                                    f"starting (see {profile_dir}/chromium.log)")
        found = await _json_version(profile_dir, port) if port else _active_port_file(
            profile_dir, port)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise BrowserStartError(f"Chromium did not open DevTools within {timeout:.0f} s")


async def launch(settings: Settings, profile_dir: str, port: int, mode: str,
                 size: tuple[int, int], env: dict[str, str]) -> Launched:
    """Starts Xvfb (x11 only) and Chromium; raises BrowserStartError with a clear cause."""
    xvfb, display, window, largest = None, "", size, size
    if mode == "x11":
        window = window_for(size)
        largest = (max(window[0], settings.screen_width), max(window[1], settings.screen_height))
        xvfb, display = await asyncio.to_thread(start_xvfb, *screen_for(largest), profile_dir)
        if window != largest:
            try:
                set_screen_size(display, *screen_for(window))  # a few ms, local
            except RuntimeError as exc:
                xvfb.kill()
                xvfb.wait()
                raise BrowserStartError(f"Xvfb's screen could not be resized: {exc}") from exc
    try:
        # in x11 the kiosk window fills the screen but for a one-pixel margin
        cmd = chromium_command(settings, profile_dir, port, mode, window)
        env = {**os.environ, **env}
        env.pop("DISPLAY", None)
        if display:
            env["DISPLAY"] = display
        with _log_file(profile_dir, "chromium") as log:
            browser = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log)
        try:
            debugging_port, ws_url = await _devtools(profile_dir, browser,
                                                     settings.start_timeout, port)
        except BaseException:
            browser.kill()
            browser.wait()
            raise
    except BaseException:
        if xvfb is not None:
            xvfb.kill()
            xvfb.wait()
        raise
    logger.info("chromium %d started (%s%s), devtools on %d", browser.pid, mode,
                f" on {display}" if display else "", debugging_port)
    return Launched(browser, xvfb, display, debugging_port, ws_url, window, largest)


# ---- pages --------------------------------------------------------------------------------

MOUSE_BUTTONS = {0: "left", 1: "middle", 2: "right"}
BUTTON_BITS = {"left": 1, "right": 2, "middle": 4}
# CEF's cef_key_event_type_t numbering -> CDP Input.dispatchKeyEvent type
KEY_TYPES = {0: "rawKeyDown", 1: "keyDown", 2: "keyUp", 3: "char"}
PAINTED_JS = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
CURSOR_JS = ("(() => {{ const e = document.elementFromPoint({x}, {y}); "
             "return e ? getComputedStyle(e).cursor : 'auto'; }})()")


class PageGone(Exception):
    """The page's target is closed; every command on it fails with no_such_page."""


class Page:
    """One CDP target attached as a flat session. Commands raise CDPError subclasses;
    `main` maps them to Result codes. Events go to `emit(kind, value)`."""

    def __init__(self, cdp, page_id: int, target_id: str, session_id: str, emit) -> None:
        self.cdp = cdp
        self.id = page_id
        self.target_id = target_id
        self.session = session_id
        self.emit = emit  # emit("url" | "title" | "cursor" | "closed", value)
        self.url = ""
        self.title = ""
        self.cursor = "auto"
        self.main_frame = ""
        self.closed = False
        self._buttons = 0
        self._cursor_task: asyncio.Task | None = None
        self._title_task: asyncio.Task | None = None
        self._listeners = [
            cdp.on("Page.frameNavigated", self._on_frame_navigated),
            cdp.on("Page.navigatedWithinDocument", self._on_same_document),
            cdp.on("Target.targetInfoChanged", self._on_target_info),
            # Chromium reports a <title> parsed after commit in no event: ask at these points
            cdp.on("Page.domContentEventFired", self._on_document_event),
            cdp.on("Page.loadEventFired", self._on_document_event),
            cdp.on("Page.javascriptDialogOpening", self._on_dialog(True)),
            cdp.on("Page.javascriptDialogClosed", self._on_dialog(False)),
        ]
        # an alert()/confirm()/prompt() blocks the page's scripts until someone answers it:
        # the page is waiting, not stuck, and the health probe must tell the two apart
        self.dialog_open = False

    @classmethod
    async def attach(cls, cdp, page_id: int, target_id: str, emit) -> Page:
        res = await cdp.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        page = cls(cdp, page_id, target_id, res["sessionId"], emit)
        await page.call("Page.enable")
        await page.call("Page.setLifecycleEventsEnabled", {"enabled": True})
        tree = await page.call("Page.getFrameTree")
        page.main_frame = tree["frameTree"]["frame"]["id"]
        return page

    async def call(self, method: str, params: dict | None = None, timeout: float = 15.0):
        if self.closed:
            raise PageGone(f"page {self.id} is closed")
        return await self.cdp.send(method, params, session_id=self.session, timeout=timeout)

    def detach_listeners(self) -> None:
        for cb_id in self._listeners:
            self.cdp.off(cb_id)
        self._listeners = []

    def mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.detach_listeners()
            self.emit("closed", reason)

    # -- events --
    def _set_url(self, url: str) -> None:
        if url and url != self.url:
            self.url = url
            self.emit("url", url)

    def _on_frame_navigated(self, params: dict, session_id: str | None) -> None:
        frame = params.get("frame", {})
        if session_id == self.session and not frame.get("parentId"):
            self.main_frame = frame.get("id", self.main_frame)
            self._set_url(frame.get("url", "") + frame.get("urlFragment", ""))

    def _on_same_document(self, params: dict, session_id: str | None) -> None:
        if session_id == self.session and params.get("frameId") == self.main_frame:
            self._set_url(params.get("url", ""))

    def _on_target_info(self, params: dict, _session: str | None) -> None:
        info = params.get("targetInfo", {})
        if info.get("targetId") == self.target_id:
            self._set_title(info.get("title", ""))

    def _set_title(self, title: str) -> None:
        if title != self.title:
            self.title = title
            self.emit("title", title)

    def _on_dialog(self, is_open: bool):
        def handler(_params: dict, session_id: str | None) -> None:
            if session_id == self.session:
                self.dialog_open = is_open
        return handler

    def _on_document_event(self, _params: dict, session_id: str | None) -> None:
        if session_id != self.session or self.closed:
            return
        if self._title_task is None or self._title_task.done():
            self._title_task = asyncio.get_running_loop().create_task(self._refresh_title())

    async def _refresh_title(self) -> None:
        try:
            res = await self.cdp.send("Target.getTargetInfo", {"targetId": self.target_id})
        except Exception:  # the page closed meanwhile: nothing to report
            return
        self._set_title(res.get("targetInfo", {}).get("title", ""))

    # -- navigation --
    async def navigate(self, url: str, load_timeout: float = 10.0) -> None:
        """Answers once the new document fired `load` (as Playwright's goto does), so the
        caller's next input meets the page's scripts. The load is matched by loaderId: a
        late load of the previous document (an error page, say) does not count. A page that
        never finishes loading is not an error; the wait just ends after `load_timeout`."""
        loaded: set[str] = set()
        seen = asyncio.Event()

        def on_lifecycle(params: dict, session_id: str | None) -> None:
            if session_id == self.session and params.get("name") == "load":
                loaded.add(params.get("loaderId", ""))
                seen.set()

        listener = self.cdp.on("Page.lifecycleEvent", on_lifecycle)
        try:
            res = await self.call("Page.navigate", {"url": url})
            if res.get("errorText"):
                raise NavigationFailed(f"{url}: {res['errorText']}")
            loader = res.get("loaderId")  # none for a same-document change
            if url == "about:blank":
                return  # committed at once; Chromium reports its load under another loader
            deadline = asyncio.get_running_loop().time() + load_timeout
            while loader and loader not in loaded:
                seen.clear()
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    await asyncio.wait_for(seen.wait(), max(0.0, remaining))
                except TimeoutError:
                    logger.info("page %d: %s still loading after %.0f s", self.id, url,
                                load_timeout)
                    break
            if loader:
                await self._painted()
        finally:
            self.cdp.off(listener)

    async def _painted(self) -> None:
        """Waits for two animation frames: Chromium ignores input to a new document until
        it has presented a frame, so without this a click right after navigate can vanish."""
        try:
            await self.call("Runtime.evaluate", {
                "expression": PAINTED_JS, "awaitPromise": True}, timeout=2.0)
        except Exception:  # a page without frames (hidden, hung) must not fail navigation
            pass

    async def history_step(self, step: int) -> None:
        """Back (-1) or forward (+1); a no-op at either end, as in a browser."""
        hist = await self.call("Page.getNavigationHistory")
        target = hist["currentIndex"] + step
        if 0 <= target < len(hist["entries"]):
            await self.call("Page.navigateToHistoryEntry",
                            {"entryId": hist["entries"][target]["id"]})

    async def reload(self) -> None:
        await self.call("Page.reload")

    async def evaluate(self, expression: str):
        res = await self.call("Runtime.evaluate", {"expression": expression,
                                                  "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            raise ScriptError(text)
        return res.get("result", {}).get("value")

    # -- input --
    async def mouse_move(self, x: int, y: int, leave: bool, modifiers: int) -> None:
        await self.call("Input.dispatchMouseEvent", {
            "type": "mouseMoved", "x": x, "y": y, "modifiers": modifiers,
            "buttons": self._buttons})
        if not leave:
            self._schedule_cursor(x, y)

    async def mouse_click(self, x: int, y: int, button: int, up: bool, count: int,
                          modifiers: int) -> None:
        name = MOUSE_BUTTONS.get(button)
        if name is None:
            raise ValueError(f"mouse button {button} is not 0 (left), 1 (middle) or 2 (right)")
        if up:
            self._buttons &= ~BUTTON_BITS[name]
        else:
            self._buttons |= BUTTON_BITS[name]
        await self.call("Input.dispatchMouseEvent", {
            "type": "mouseReleased" if up else "mousePressed", "x": x, "y": y,
            "button": name, "clickCount": max(1, count), "modifiers": modifiers,
            "buttons": self._buttons})

    async def mouse_wheel(self, x: int, y: int, dx: int, dy: int, modifiers: int) -> None:
        await self.call("Input.dispatchMouseEvent", {
            "type": "mouseWheel", "x": x, "y": y, "deltaX": dx, "deltaY": dy,
            "modifiers": modifiers})

    async def key(self, kind: int, modifiers: int, windows_code: int, native_code: int,
                  character: int, key: str, code: str, text: str) -> None:
        cdp_type = KEY_TYPES.get(kind)
        if cdp_type is None:
            raise ValueError(f"key event type {kind} is not one of 0..3")
        if not text and character and cdp_type in ("char", "keyDown"):
            text = chr(character)
        params = {"type": cdp_type, "modifiers": modifiers,
                  "windowsVirtualKeyCode": windows_code, "nativeVirtualKeyCode": native_code,
                  "key": key, "code": code}
        if text and cdp_type != "keyUp":
            params["text"] = params["unmodifiedText"] = text
        await self.call("Input.dispatchKeyEvent", params)

    async def focus(self, set_focus: bool) -> None:
        if set_focus:
            await self.call("Page.bringToFront")
            await self.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
        else:
            await self.call("Emulation.setFocusEmulationEnabled", {"enabled": False})
            await self.call("Runtime.evaluate",
                            {"expression": "document.activeElement?.blur()"})

    async def set_size(self, width: int, height: int, native: tuple[int, int] | None) -> None:
        """Lays the page out at width x height; `native` is the window's own size, where no
        emulation is needed (x11 kiosk window)."""
        if native == (width, height):
            await self.call("Emulation.clearDeviceMetricsOverride")
        else:
            await self.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # -- cursor --
    def _schedule_cursor(self, x: int, y: int) -> None:
        """Looks up the CSS cursor under the pointer after the move, off the command path;
        a newer move replaces a lookup still pending."""
        if self._cursor_task is not None and not self._cursor_task.done():
            self._cursor_task.cancel()
        self._cursor_task = asyncio.get_running_loop().create_task(self._update_cursor(x, y))

    async def _update_cursor(self, x: int, y: int) -> None:
        try:
            cursor = await self.evaluate(CURSOR_JS.format(x=int(x), y=int(y)))
        except Exception:  # the page navigated or closed meanwhile: nothing to report
            return
        if isinstance(cursor, str) and cursor != self.cursor:
            self.cursor = cursor
            self.emit("cursor", cursor)


class NavigationFailed(Exception):
    """Page.navigate answered with an errorText."""


class ScriptError(Exception):
    """The evaluated expression threw."""
