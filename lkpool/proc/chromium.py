"""Chromium engine: starts Xvfb (x11 capture) and Debian's Chromium, and finds its DevTools.

Every process started here is in the child's process group (the child called setpgid), so
the child's watchdog ends them all with one `killpg`. Their output goes to a log file in
the profile folder: a pipe nobody reads would fill up and stall the browser.

Xvfb, the display of the x11 capture, is `display.py`'s.

Chromium runs in a sandbox of its own (`sandbox.py`) unless SANDBOX=false, and whichever way
it runs, with an allow-listed environment: nothing of the server's reaches a lease.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from .. import config, profiles
from ..config import Settings
from ..errors import BrowserStartError
from . import forward, sandbox
from .display import (
    X11_SOCKETS,
    log_file,
    reap,
    start_xvfb,
    stop_xvfb,
    xauthority,
)
from .screen import screen_for, set_screen_size, window_for

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with 'apt-get install chromium' or set CHROMIUM_PATH"

# Flags every instance gets. The first line is what Chromium needs on these machines; the
# rest trade features a pooled, remote-driven browser does not use for fewer processes,
# less memory and no background traffic. --mute-audio is deliberately absent: we capture
# the audio.
BASE_FLAGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
    "--disable-breakpad", "--password-store=basic", "--disable-client-side-phishing-detection",
    # Debian's build still starts two crashpad handlers per browser (3 MB, outside our process
    # group) to write reports nobody reads
    "--disable-crashpad-for-testing",
    "--autoplay-policy=no-user-gesture-required",
    # a permission prompt (notifications, location, camera...) is browser UI drawn over the
    # page, which CDP input cannot reach: the page would wait on it for ever. Denied, as
    # Playwright does; a client can still grant permissions (Browser.grantPermissions)
    "--deny-permission-prompts",
    # window.print() opens a modal print preview that pauses the page: print at once
    # instead (to no printer, the page goes on)
    "--kiosk-printing",
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

# where Chromium's own sandbox cannot run (a kernel without nested user namespaces, or
# SANDBOX=false as root): the browser still starts, with this flag, and start-up says so
NO_SANDBOX = "--no-sandbox"
NO_USABLE_SANDBOX = b"No usable sandbox"

# capture mode -> flags that put Chromium on screen (x11) or off it (screencast)
MODE_FLAGS = {
    "x11": lambda w, h: ["--ozone-platform=x11", "--kiosk", "--window-position=0,0",
                         f"--window-size={w},{h}"],
    "screencast": lambda w, h: ["--headless=new", f"--window-size={w},{h}"],
}


@dataclass
class Launched:
    """What `launch` started; `stop` ends it (the group kill covers helpers)."""
    browser: subprocess.Popen  # bwrap when sandboxed: it exits with the browser
    xvfb: subprocess.Popen | None
    display: str
    debugging_port: int
    ws_url: str
    window: tuple[int, int]  # x11: the kiosk window; screencast: the headless window
    largest: tuple[int, int]  # x11: the largest window the screen can grow to
    box: sandbox.Sandbox | None = None  # the browser's sandbox (SANDBOX=true)

    def stop(self) -> None:
        if self.box is not None:
            self.box.kill()
        if self.browser.poll() is None:
            self.browser.kill()
        reap(self.browser)
        if self.xvfb is not None:
            stop_xvfb(self.xvfb, self.display)


def chromium_path(settings: Settings) -> str:
    path = shutil.which(settings.chromium_path) or settings.chromium_path
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrowserStartError(f"Chromium not found at {settings.chromium_path!r}: "
                                f"{INSTALL_HINT}")
    return path


def chromium_command(settings: Settings, profile_dir: str, port: int, mode: str,
                     size: tuple[int, int], *, own_sandbox: bool = False) -> list[str]:
    """`own_sandbox`: Chromium's own sandbox may run (it needs a uid other than root's)."""
    return [chromium_path(settings), *BASE_FLAGS, *([] if own_sandbox else [NO_SANDBOX]),
            *MODE_FLAGS[mode](*size), f"--user-data-dir={profile_dir}",
            f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
            *shlex.split(settings.chromium_flags), "about:blank"]


def _active_port_file(profile_dir: str) -> tuple[int, str] | None:
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


async def browser_ws_url(port: int, timeout: float = 1.0) -> str | None:
    """The browser target's WebSocket URL from the DevTools server's /json/version, or None
    when it does not answer (yet). One plain GET: the child has no HTTP client library, to
    stay small. Used where Chromium writes no DevToolsActivePort (a port given by the pool,
    DEBUGGING_PORT_START) and by a reset that does not know the path."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        try:
            # HTTP/1.1: Chromium's DevTools server drops HTTP/1.0 requests unanswered
            writer.write(f"GET /json/version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            body = await asyncio.wait_for(
                reader.readexactly(length) if length is not None else reader.read(), timeout)
        finally:
            writer.close()
        if head.split()[1:2] != [b"200"]:
            return None
        return json.loads(body)["webSocketDebuggerUrl"]
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
        if port:
            url = await browser_ws_url(port)
            found = (port, url) if url else None
        else:
            found = _active_port_file(profile_dir)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise BrowserStartError(f"Chromium did not open DevTools within {timeout:.0f} s")


def browser_env(profile_dir: str, display: str, extra: dict[str, str]) -> dict[str, str]:
    """The browser's whole environment: its home and caches in its profile, its display."""
    env = {"HOME": profile_dir, "XDG_CONFIG_HOME": os.path.join(profile_dir, ".config"),
           "XDG_CACHE_HOME": os.path.join(profile_dir, ".cache"), **extra}
    if display:
        env["DISPLAY"] = display
        env["XAUTHORITY"] = xauthority(profile_dir)
    return sandbox.allowed_env(env)


_logged_no_own_sandbox = False


def _log_no_own_sandbox(why: str) -> None:
    global _logged_no_own_sandbox
    if not _logged_no_own_sandbox:
        _logged_no_own_sandbox = True
        logger.warning("chromium runs with --no-sandbox: %s. A page that exploits a renderer "
                       "bug then holds the whole browser (see README, Isolation)", why)


def _start_plain(settings: Settings, profile_dir: str, port: int, mode: str,
                 window: tuple[int, int], env: dict[str, str]) -> subprocess.Popen:
    """SANDBOX=false: Chromium straight on the host (its own sandbox only when not root)."""
    own = os.geteuid() != 0
    if not own:
        _log_no_own_sandbox("SANDBOX=false and the server runs as root")
    cmd = chromium_command(settings, profile_dir, port, mode, window, own_sandbox=own)
    with log_file(profile_dir, "chromium") as log:
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)


def _start_sandboxed(settings: Settings, profile_dir: str, port: int, mode: str,
                     window: tuple[int, int], env: dict[str, str], display: str,
                     own_sandbox: bool, xvfb_pid: int) -> sandbox.Sandbox:
    """`xvfb_pid`: an Xvfb in an IPC namespace of its own, which the sandbox joins (or 0)."""
    # the host's end of the DevTools port is bound first: the port is ours before Chromium
    # takes the same number in its namespace
    listener = forward.listen(port) if forward.can_enter_namespaces() else None
    port = listener.getsockname()[1] if listener is not None else port or sandbox.free_port()
    cmd = chromium_command(settings, profile_dir, port, mode, window, own_sandbox=own_sandbox)
    ro_files = {}
    real = os.path.dirname(os.path.realpath(cmd[0]))
    if not real.startswith("/usr/"):
        ro_files[real] = real  # a Chromium outside /usr (CHROMIUM_PATH) is let in read-only
    data_files = {"/etc/passwd": sandbox.PASSWD.encode(), "/etc/group": sandbox.GROUP.encode()}
    if display:
        number = display.lstrip(":")
        ro_files[os.path.join(X11_SOCKETS, f"X{number}")] = \
            os.path.join(X11_SOCKETS, f"X{number}")
        with open(xauthority(profile_dir), "rb") as f:
            data_files[env["XAUTHORITY"]] = f.read()
    spec = sandbox.Spec(cmd, profile_dir, env, port,
                        config.host_ports(settings.allow_host_ports), ro_files, data_files,
                        ipc_of=xvfb_pid)
    with log_file(profile_dir, "chromium") as log:
        return sandbox.start(spec, log, listener)


async def _start_browser(settings: Settings, profile_dir: str, port: int, mode: str,
                         window: tuple[int, int], env: dict[str, str], display: str,
                         xvfb_pid: int = 0
                         ) -> tuple[subprocess.Popen, sandbox.Sandbox | None, int, str]:
    """Starts Chromium (sandboxed unless SANDBOX=false) and waits for its DevTools; returns
    the browser's process, its sandbox, DevTools port and browser URL."""
    if not settings.sandbox:
        browser = await asyncio.to_thread(_start_plain, settings, profile_dir, port, mode,
                                          window, env)
        try:
            return (browser, None, *await _devtools(profile_dir, browser,
                                                  settings.start_timeout, port))
        except BaseException:
            browser.kill()
            browser.wait()
            raise
    if (lack := sandbox.missing()) is not None:
        raise BrowserStartError(f"the sandbox cannot start: {lack}; {sandbox.INSTALL_HINT}")
    for own_sandbox in (True, False):
        box = await asyncio.to_thread(_start_sandboxed, settings, profile_dir, port, mode,
                                      window, env, display, own_sandbox, xvfb_pid)
        port = box.port
        try:
            return (box.bwrap, box,
                    *await _devtools(profile_dir, box.bwrap, settings.start_timeout, port))
        except BrowserStartError:
            box.kill()
            if not own_sandbox or not _said_no_sandbox(profile_dir):
                raise
            _log_no_own_sandbox("this kernel lets no user namespace be made inside the "
                                "instance's sandbox")
        except BaseException:
            box.kill()
            raise
    raise AssertionError("unreachable")


def _said_no_sandbox(profile_dir: str) -> bool:
    try:
        with open(os.path.join(profile_dir, "chromium.log"), "rb") as f:
            return NO_USABLE_SANDBOX in f.read()
    except OSError:
        return False


async def launch(settings: Settings, profile_dir: str, port: int, mode: str,
                 size: tuple[int, int], env: dict[str, str]) -> Launched:
    """Starts Xvfb (x11 only) and Chromium; raises BrowserStartError with a clear cause.
    `env`: what the browser needs besides its home and display (the audio server)."""
    os.makedirs(profiles.downloads_dir(profile_dir), exist_ok=True)
    xvfb, display, window, largest = None, "", size, size
    own_ipc = settings.sandbox and forward.can_enter_namespaces()
    if mode == "x11":
        window = window_for(size)
        largest = (max(window[0], settings.screen_width), max(window[1], settings.screen_height))
        xvfb, display = await asyncio.to_thread(
            functools.partial(start_xvfb, *screen_for(largest), profile_dir, own_ipc=own_ipc))
        # this process is the instance's child: its one display, for its own X clients
        # (screen fitting, capture) as for the browser
        os.environ["XAUTHORITY"] = xauthority(profile_dir)
        if window != largest:
            try:
                set_screen_size(display, *screen_for(window))  # a few ms, local
            except RuntimeError as exc:
                stop_xvfb(xvfb, display)
                raise BrowserStartError(f"Xvfb's screen could not be resized: {exc}") from exc
    try:
        # in x11 the kiosk window fills the screen but for a one-pixel margin
        browser_environ = browser_env(profile_dir, display, env)
        browser, box, debugging_port, ws_url = await _start_browser(
            settings, profile_dir, port, mode, window, browser_environ, display,
            xvfb.pid if xvfb is not None and own_ipc else 0)
    except BaseException:
        if xvfb is not None:
            stop_xvfb(xvfb, display)
        raise
    logger.info("chromium %d started (%s%s%s), devtools on %d", browser.pid, mode,
                f" on {display}" if display else "",
                ", sandboxed" if settings.sandbox else ", NOT sandboxed", debugging_port)
    return Launched(browser, xvfb, display, debugging_port, ws_url, window, largest, box)
