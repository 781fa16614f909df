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
