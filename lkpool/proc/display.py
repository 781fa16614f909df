"""The X display of an instance (x11 capture): a private Xvfb that takes only clients
showing its cookie, and leaves nothing behind.

Xvfb picks its own display number (`-displayfd`): instances and test runs share the
machine, so no fixed numbers. Its screen starts at the largest size the instance shows on
screen and is then set to the page's (see `screen.py`). It runs with `-auth`: the child
(screen fitting, capture) and the instance's own browser hold the cookie, no one else, so
no other lease's browser (or any local process) can read or drive the screen. On its end
its socket in /tmp/.X11-unix and its lock go too, also when it was killed: asked to end it
removes them itself, killed it leaves them to us (and to the parent, for a killed child).
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import struct
import subprocess
import time

from ..errors import BrowserStartError
from .sandbox import allowed_env

XVFB_TIMEOUT = 15.0
XVFB_HINT = "install it with 'apt-get install xvfb' or use CAPTURE=screencast"
XAUTH_NAME = b"MIT-MAGIC-COOKIE-1"
FAMILY_WILD = 0xFFFF
X11_SOCKETS = "/tmp/.X11-unix"


def log_file(profile_dir: str, name: str):
    """An instance's process log, in its profile: a pipe nobody reads would fill up."""
    return open(os.path.join(profile_dir, f"{name}.log"), "ab", buffering=0)


def reap(proc: subprocess.Popen, timeout: float = 5) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def start_xvfb(width: int, height: int, profile_dir: str, *, own_ipc: bool = False
               ) -> tuple[subprocess.Popen, str]:
    """A private X server with a `width`x`height` screen; returns it and its display name."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise BrowserStartError(f"Xvfb is not installed: {XVFB_HINT}")
    # the server takes every cookie in its -auth file whatever the display number; clients
    # look theirs up by number, so their file is written once the number is known
    cookie = secrets.token_bytes(16)
    server_auth = os.path.join(profile_dir, "xvfb.auth")
    _write_private(server_auth, xauth_entry("0", cookie))
    rfd, wfd = os.pipe()
    try:
        with log_file(profile_dir, "xvfb") as log:
            proc = subprocess.Popen(
                # own_ipc: an IPC namespace of its own, which the instance's sandbox then
                # joins (see sandbox.py): Chromium hands its frames to Xvfb in SysV shared
                # memory (MIT-SHM), which must be in one namespace with Xvfb and no other's
                [*(["unshare", "--ipc", "--"] if own_ipc else []), xvfb, "-displayfd",
                 str(wfd), "-screen", "0", f"{width}x{height}x24",
                 "-nolisten", "tcp", "-noreset", "-dpi", "96", "-auth", server_auth,
                 # Chromium renders in software and never asks for GLX; without it Xvfb
                 # does not load Mesa and LLVM: 20 MB less per instance
                 "-extension", "GLX"],
                pass_fds=(wfd,), env=allowed_env({}), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
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
    number = raw.decode().strip()
    _write_private(xauthority(profile_dir), xauth_entry(number, cookie))
    return proc, ":" + number


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def stop_xvfb(proc: subprocess.Popen, display: str) -> None:
    """Ends Xvfb so that nothing of it stays: asked first (it removes its socket and lock
    file), killed if it does not go, and then whatever it left is removed by us."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
    reap(proc)
    remove_display_files(display, proc.pid)


def remove_display_files(display: str, pid: int | None = None) -> None:
    """Removes the socket and lock of `display` when the lock names `pid`, or with no `pid`
    a process that is gone (a display number is reused by the next Xvfb: only our own or
    stale files go)."""
    number = display.lstrip(":")
    if not number.isdigit():
        return
    lock = f"/tmp/.X{number}-lock"
    try:
        with open(lock) as f:
            owner = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return
    if owner != pid and (pid is not None or _alive(owner)):
        return
    for path in (os.path.join(X11_SOCKETS, f"X{number}"), lock):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def xauth_entry(number: str, cookie: bytes) -> bytes:
    """One Xauthority record (the format of libXau): any host, display `number`."""
    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data
    return (struct.pack(">H", FAMILY_WILD) + counted(b"") + counted(number.encode())
            + counted(XAUTH_NAME) + counted(cookie))


def xauthority(profile_dir: str) -> str:
    """The cookie file clients of the instance's display read (XAUTHORITY)."""
    return os.path.join(profile_dir, "Xauthority")
