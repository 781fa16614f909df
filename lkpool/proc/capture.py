"""Frame sources, one per page: the X11 grab here, the CDP screencast in screencast.py
(lkpool/proc/pages.py's `CAPTURES` picks one).

Both write BGRA straight into the page's shared-memory buffer that `FrameOut.acquire`
hands out and then announce it with `AcquirePaint`; when the parent holds both buffers the
frame is dropped and counted, never queued.

- x11: Chromium is on a private Xvfb display. X DAMAGE tells us that something changed and
  where (the dirty rects); at most `framerate` times a second we grab the page's area with
  MIT-SHM `XShmGetImage` (mss's xcb binding) into a segment that *is* the page's buffer:
  the X server writes the pixels where the parent reads them, with no copy in this process.
  Nothing changed -> no grab, no frame.
- screencast: `Page.startScreencast` JPEGs, decoded by simplejpeg into the buffer and acked;
  Chromium only sends frames when something changed. Costly (decode, JPEG round trip):
  the fallback where Xvfb is missing.
"""

from __future__ import annotations

import _posixshmem
import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Literal

from mss.linux import xcb
from mss.linux.base import ALL_PLANES

from ..shm.framebuffer import ChildFrameBuffers
from ..tasks import spawn
from . import xlib
from .protocol import AcquirePaint, Message

logger = logging.getLogger(__name__)

Mode = Literal["x11", "screencast"]
Rect = tuple[int, int, int, int]
MAX_RECTS = 16  # beyond this many dirty rects, send their bounding box


class FrameOut:
    """Where a page's frames go: its buffers, its generation and the duplex."""

    def __init__(self, page_id: int, buffers: ChildFrameBuffers, names: Sequence[str],
                 send: Callable[[Message], None]) -> None:
        self.page_id = page_id
        self.buffers = buffers
        self.names = list(names)
        self.send = send
        self.frames = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.buffers.width, self.buffers.height

    def publish(self, idx: int, rects: list[Rect], captured_ns: int) -> None:
        b = self.buffers
        self.frames += 1
        self.send(AcquirePaint(self.page_id, b.generation, idx, b.width, b.height, rects,
                               captured_ns, b.dropped))


def _simplify(rects: list[Rect], width: int, height: int) -> list[Rect]:
    """Clips to the page and caps the count; a full-page rect becomes [] ("everything")."""
    out = []
    for x, y, w, h in rects:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1 - x0, y1 - y0))
    if len(out) > MAX_RECTS:
        x0 = min(r[0] for r in out)
        y0 = min(r[1] for r in out)
        x1 = max(r[0] + r[2] for r in out)
        y1 = max(r[1] + r[3] for r in out)
        out = [(x0, y0, x1 - x0, y1 - y0)]
    return out


class _Pacer:
    """Runs `tick` when `wake` was called, at most `fps` times a second."""

    def __init__(self, fps: int, tick: Callable[[], bool], name: str) -> None:
        self.period = 1.0 / fps
        self._tick = tick
        self._wake = asyncio.Event()
        self._last = 0.0
        self._task = spawn(self._run(), name=name, log=logger)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            delay = self._last + self.period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._wake.clear()
            # the slot of this tick: a late tick may let the next one come up to half a
            # period early, so jitter does not make us miss every other frame of a
            # producer running at our own rate; on average we stay at or under `fps`
            self._last = max(self._last + self.period, loop.time() - self.period / 2)
            if not self._tick():  # could not deliver (buffers held): try again next period
                self._wake.set()

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except BaseException:
            pass


# ---- x11 ----------------------------------------------------------------------------------

class _XDamage:
    """An Xlib connection watching a window (the root by default) with DAMAGE
    (ReportNonEmpty): one event when it goes from clean to dirty; `take` fetches the dirty
    region and clears it. For a page in a window of its own, the connection also keeps the
    window redirected off screen (Composite, manual: drawn into its own pixmap only, so it
    renders whole whatever covers it); the X server undoes that when the connection
    closes."""

    NON_EMPTY = 3
    REDIRECT_MANUAL = 1

    def __init__(self, display: str, window: int | None = None) -> None:
        self.x11 = x11 = xlib.x11()
        self.dmg = xlib.load("Xdamage", "libXdamage.so.1")
        self.fix = xlib.load("Xfixes", "libXfixes.so.3")
        self.dmg.XDamageQueryExtension.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                                   ctypes.POINTER(ctypes.c_int)]
        self.dmg.XDamageCreate.restype = ctypes.c_ulong
        self.dmg.XDamageCreate.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int]
        self.dmg.XDamageSubtract.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                                             ctypes.c_ulong]
        self.dmg.XDamageDestroy.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.fix.XFixesQueryExtension.argtypes = self.dmg.XDamageQueryExtension.argtypes
        self.fix.XFixesQueryVersion.argtypes = self.dmg.XDamageQueryExtension.argtypes
        self.fix.XFixesCreateRegion.restype = ctypes.c_ulong
        self.fix.XFixesCreateRegion.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self.fix.XFixesFetchRegion.restype = ctypes.c_void_p
        self.fix.XFixesFetchRegion.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                               ctypes.POINTER(ctypes.c_int)]
        self.fix.XFixesDestroyRegion.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.dpy = xlib.open_display(display)
        ev, err = ctypes.c_int(), ctypes.c_int()
        if not self.dmg.XDamageQueryExtension(self.dpy, ctypes.byref(ev), ctypes.byref(err)):
            x11.XCloseDisplay(self.dpy)
            raise RuntimeError("the X server has no DAMAGE extension")
        self.event_type = ev.value  # XDamageNotify is event 0 of the extension
        fev, ferr = ctypes.c_int(), ctypes.c_int()
        self.fix.XFixesQueryExtension(self.dpy, ctypes.byref(fev), ctypes.byref(ferr))
        major, minor = ctypes.c_int(5), ctypes.c_int(0)
        self.fix.XFixesQueryVersion(self.dpy, ctypes.byref(major), ctypes.byref(minor))
        if window is not None:
            comp = xlib.load("Xcomposite", "libXcomposite.so.1")
            comp.XCompositeRedirectWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                                      ctypes.c_int]
            comp.XCompositeRedirectWindow(self.dpy, window, self.REDIRECT_MANUAL)
        target = x11.XDefaultRootWindow(self.dpy) if window is None else window
        self.damage = self.dmg.XDamageCreate(self.dpy, target, self.NON_EMPTY)
        self.region = self.fix.XFixesCreateRegion(self.dpy, None, 0)
        x11.XFlush(self.dpy)
        self.fd = x11.XConnectionNumber(self.dpy)
        self._event = ctypes.create_string_buffer(192)  # sizeof(XEvent)

    def drain(self) -> bool:
        """Reads queued events; True when one of them says the screen got dirty."""
        dirty = False
        while self.x11.XPending(self.dpy):
            self.x11.XNextEvent(self.dpy, self._event)
            if ctypes.c_int.from_buffer(self._event).value == self.event_type:
                dirty = True
        return dirty

    def take(self) -> list[Rect]:
        """The region damaged since the last call, as rects; clears it."""
        self.dmg.XDamageSubtract(self.dpy, self.damage, 0, self.region)
        n = ctypes.c_int()
        ptr = self.fix.XFixesFetchRegion(self.dpy, self.region, ctypes.byref(n))
        if not ptr:
            return []
        # XRectangle: short x, y; unsigned short width, height
        raw = list((ctypes.c_int16 * (n.value * 4)).from_address(ptr))
        self.x11.XFree(ptr)
        return [(raw[i], raw[i + 1], raw[i + 2] & 0xFFFF, raw[i + 3] & 0xFFFF)
                for i in range(0, len(raw), 4)]

    def close(self) -> None:
        if self.dpy:
            self.fix.XFixesDestroyRegion(self.dpy, self.region)
            self.dmg.XDamageDestroy(self.dpy, self.damage)
            self.x11.XCloseDisplay(self.dpy)
            self.dpy = 0  # falsy: closed


class _ShmGrabber:
    """XShmGetImage of a drawable's top-left corner (the screen's, or a page window's) into
    the page's own shm buffers."""

    def __init__(self, display: str, window: int | None = None) -> None:
        self.conn, screen_num = xcb.connect(display)
        root = xcb.setup_roots(xcb.get_setup(self.conn))[screen_num].root
        self.drawable = root if window is None else xcb.Drawable(window)
        self.segs: list[xcb.ShmSeg] = []

    def attach(self, names: Sequence[str]) -> None:
        self.detach()
        for name in names:
            fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
            seg = xcb.ShmSeg(xcb.generate_id(self.conn).value)
            xcb.shm_attach_fd(self.conn, seg, fd, False)  # xcb closes fd
            self.segs.append(seg)

    def detach(self) -> None:
        segs, self.segs = self.segs, []
        for seg in segs:
            try:
                xcb.shm_detach(self.conn, seg)
            except Exception:  # the server may be gone already
                pass

    def grab(self, idx: int, width: int, height: int) -> None:
        xcb.shm_get_image(self.conn, self.drawable, 0, 0, width, height, ALL_PLANES,
                          xcb.ImageFormat.ZPixmap, self.segs[idx], 0)

    def close(self) -> None:
        self.detach()
        if self.conn is not None:
            try:
                xcb.disconnect(self.conn)
            except Exception:
                pass
            self.conn = None  # type: ignore[assignment]  # closed; nothing uses it after


class X11Capture:
    """A page's frames from the X screen (the kiosk window's page), or from a window of its
    own (`window`: every other page of the instance, see pages.py)."""

    def __init__(self, out: FrameOut, framerate: int, *, display: str,
                 window: int | None = None, **_: object) -> None:
        self.out = out
        self._damage = _XDamage(display, window)  # first: it redirects the window
        self._grabber = _ShmGrabber(display, window)
        self._grabber.attach(out.names)
        self._rects: list[Rect] = []
        self._full = True  # the first frame (and the first after a resize) is whole
        self._pacer = _Pacer(framerate, self._tick, f"x11-capture-{out.page_id}")
        loop = asyncio.get_running_loop()
        loop.add_reader(self._damage.fd, self._on_x_event)
        self._pacer.wake()

    def _on_x_event(self) -> None:
        if self._damage.drain():
            self._pacer.wake()

    def _tick(self) -> bool:
        w, h = self.out.size
        self._rects += self._damage.take()
        if self._damage.drain():  # damage that came in while we fetched the region
            self._pacer.wake()
        rects = _simplify(self._rects, w, h)
        if not rects and not self._full:
            self._rects = []
            return True
        idx = self.out.buffers.acquire()
        if idx is None:
            return False
        captured = time.monotonic_ns()
        self._grabber.grab(idx, w, h)
        self.out.publish(idx, [] if self._full else rects, captured)
        self._rects = []
        self._full = False
        return True

    def switch(self, out: FrameOut) -> None:
        self.out = out
        self._grabber.attach(out.names)
        self._full = True
        self._pacer.wake()

    def set_framerate(self, fps: int) -> None:
        self._pacer.period = 1.0 / fps

    async def aclose(self) -> None:
        await self._pacer.stop()
        try:
            asyncio.get_running_loop().remove_reader(self._damage.fd)
        except Exception:
            pass
        self._damage.close()
        self._grabber.close()
