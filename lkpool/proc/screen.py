"""The x11 screen of an instance and Chromium's kiosk window on it, both sized to the page.

Xvfb allocates its framebuffer once, for the size it starts with: the largest window the
instance shows on screen (SCREEN_WIDTH x SCREEN_HEIGHT, or the page when larger). RandR
then sets the screen to any size up to that, and the kiosk window follows the page:
Chromium's buffers (its MIT-SHM image, its compositor's surfaces) are the page's size, not
the largest screen's, and the page is laid out natively, without emulation. A 1280x720
page on a screen that can grow to 1920x1080 costs 9 MB less per idle instance this way
than in a 1920x1080 window (bench/density.py).

Two things Chromium does on a bare X server (no window manager) shape this:
- its full-screen window is one pixel short of the screen in each direction, so the
  screen is kept one pixel larger than the window;
- it will not make a window under about 500 px wide, so pages smaller than `MIN_WINDOW`
  are laid out by emulation inside a window of that size.

A page larger than the largest screen is captured by screencast instead (see `main`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from functools import cache

from . import xlib

logger = logging.getLogger(__name__)

Size = tuple[int, int]
MIN_WINDOW: Size = (800, 600)
MARGIN = 1  # screen - window, in each direction
MODE_PREFIX = b"lkpool-"
WINDOW_SETTLE = 2.0  # seconds Chromium has to apply new window bounds


def window_for(page: Size) -> Size:
    """The kiosk window that shows a page of this size."""
    return max(page[0], MIN_WINDOW[0]), max(page[1], MIN_WINDOW[1])


def screen_for(window: Size) -> Size:
    return window[0] + MARGIN, window[1] + MARGIN


# ---- RandR --------------------------------------------------------------------------------

class XRRModeInfo(ctypes.Structure):
    _fields_ = [("id", ctypes.c_ulong), ("width", ctypes.c_uint), ("height", ctypes.c_uint),
                ("dotClock", ctypes.c_ulong), ("hSyncStart", ctypes.c_uint),
                ("hSyncEnd", ctypes.c_uint), ("hTotal", ctypes.c_uint),
                ("hSkew", ctypes.c_uint), ("vSyncStart", ctypes.c_uint),
                ("vSyncEnd", ctypes.c_uint), ("vTotal", ctypes.c_uint),
                ("name", ctypes.c_char_p), ("nameLength", ctypes.c_uint),
                ("modeFlags", ctypes.c_ulong)]


class XRRScreenResources(ctypes.Structure):
    _fields_ = [("timestamp", ctypes.c_ulong), ("configTimestamp", ctypes.c_ulong),
                ("ncrtc", ctypes.c_int), ("crtcs", ctypes.POINTER(ctypes.c_ulong)),
                ("noutput", ctypes.c_int), ("outputs", ctypes.POINTER(ctypes.c_ulong)),
                ("nmode", ctypes.c_int), ("modes", ctypes.POINTER(XRRModeInfo))]


@cache
def _xrandr() -> ctypes.CDLL:
    lib = xlib.load("Xrandr", "libXrandr.so.2")
    res = ctypes.POINTER(XRRScreenResources)
    lib.XRRGetScreenResourcesCurrent.restype = res
    lib.XRRGetScreenResourcesCurrent.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XRRFreeScreenResources.argtypes = [res]
    lib.XRRCreateMode.restype = ctypes.c_ulong
    lib.XRRCreateMode.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(XRRModeInfo)]
    lib.XRRAddOutputMode.argtypes = lib.XRRDeleteOutputMode.argtypes = [
        ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    lib.XRRDestroyMode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XRRSetScreenSize.argtypes = [ctypes.c_void_p, ctypes.c_ulong, *[ctypes.c_int] * 4]
    lib.XRRGetScreenSizeRange.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                          *[ctypes.POINTER(ctypes.c_int)] * 4]
    lib.XRRSetCrtcConfig.argtypes = [
        ctypes.c_void_p, res, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
        ctypes.c_ulong, ctypes.c_ushort, ctypes.POINTER(ctypes.c_ulong), ctypes.c_int]
    return lib


def set_screen_size(display: str, width: int, height: int) -> None:
    """Sets the X screen (and its one output's mode) to width x height, which must be at most
    the size Xvfb started with; RuntimeError when the server refuses."""
    x11, rr = xlib.x11(), _xrandr()
    dpy = xlib.open_display(display)
    try:
        x11.XSync(dpy, 0)
        xlib.take_errors()  # errors of other connections are not ours
        root = x11.XDefaultRootWindow(dpy)
        limits = [ctypes.c_int() for _ in range(4)]
        rr.XRRGetScreenSizeRange(dpy, root, *map(ctypes.byref, limits))
        max_w, max_h = limits[2].value, limits[3].value
        if not (0 < width <= max_w and 0 < height <= max_h):
            raise RuntimeError(f"the screen cannot be {width}x{height}: Xvfb on {display} "
                               f"started at {max_w}x{max_h}, which is as large as it gets")
        res = rr.XRRGetScreenResourcesCurrent(dpy, root)
        if not res or res.contents.ncrtc < 1 or res.contents.noutput < 1:
            raise RuntimeError(f"the X server on {display} has no RandR output to resize")
        try:
            r = res.contents
            crtc, output = r.crtcs[0], r.outputs[0]
            ours = {m.id: (m.width, m.height) for m in (r.modes[i] for i in range(r.nmode))
                    if m.name and m.name.startswith(MODE_PREFIX)}
            mode = next((i for i, size in ours.items() if size == (width, height)), None)
            if mode is None:
                name = MODE_PREFIX + f"{width}x{height}".encode()
                info = XRRModeInfo(width=width, height=height, hSyncStart=width,
                                   hSyncEnd=width, hTotal=width, vSyncStart=height,
                                   vSyncEnd=height, vTotal=height, name=name,
                                   nameLength=len(name))
                mode = rr.XRRCreateMode(dpy, root, ctypes.byref(info))
                rr.XRRAddOutputMode(dpy, output, mode)
            now = (x11.XDisplayWidth(dpy, 0), x11.XDisplayHeight(dpy, 0))
            # the output's mode must fit the screen at every step: grow the screen first,
            # then switch the mode, then shrink the screen to it
            grown = (max(width, now[0]), max(height, now[1]))
            if grown != now:
                rr.XRRSetScreenSize(dpy, root, *grown, *_mm(*grown))
            outputs = (ctypes.c_ulong * 1)(output)
            rr.XRRSetCrtcConfig(dpy, res, crtc, 0, 0, 0, mode, 1, outputs, 1)  # RR_Rotate_0
            if grown != (width, height):
                rr.XRRSetScreenSize(dpy, root, width, height, *_mm(width, height))
            _check(dpy, f"RandR could not make the screen {width}x{height}")
            for old in ours.keys() - {mode}:  # sizes left behind: the server keeps them
                rr.XRRDeleteOutputMode(dpy, output, old)
                rr.XRRDestroyMode(dpy, old)
            _check(dpy, "RandR kept an unused mode")
        finally:
            rr.XRRFreeScreenResources(res)
    finally:
        x11.XCloseDisplay(dpy)


def _check(dpy: int, what: str) -> None:
    xlib.x11().XSync(dpy, 0)
    errors = xlib.take_errors()
    if errors:
        raise RuntimeError(f"{what}: " + "; ".join(errors))


def _mm(width: int, height: int) -> tuple[int, int]:
    return round(width * 25.4 / 96), round(height * 25.4 / 96)  # Xvfb runs at -dpi 96


# ---- page windows -------------------------------------------------------------------------

class _WindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int),
                ("height", ctypes.c_int), ("border_width", ctypes.c_int),
                ("depth", ctypes.c_int), ("visual", ctypes.c_void_p), ("root", ctypes.c_ulong),
                ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int),
                ("backing_planes", ctypes.c_ulong), ("backing_pixel", ctypes.c_ulong),
                ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong),
                ("map_installed", ctypes.c_int), ("map_state", ctypes.c_int),
                ("all_event_masks", ctypes.c_long), ("your_event_mask", ctypes.c_long),
                ("do_not_propagate_mask", ctypes.c_long), ("override_redirect", ctypes.c_int),
                ("screen", ctypes.c_void_p)]


IS_VIEWABLE = 2


def browser_windows(display: str) -> dict[int, Size]:
    """Chromium's browser windows on the screen (mapped top-level windows that are not
    override-redirect: its other windows are hidden helpers) -> their size."""
    x11 = xlib.x11()
    x11.XQueryTree.argtypes = [
        ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
        ctypes.POINTER(ctypes.c_uint)]
    x11.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                         ctypes.POINTER(_WindowAttributes)]
    dpy = xlib.open_display(display)
    try:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not x11.XQueryTree(dpy, x11.XDefaultRootWindow(dpy), ctypes.byref(root),
                              ctypes.byref(parent), ctypes.byref(children),
                              ctypes.byref(count)):
            return {}
        found: dict[int, Size] = {}
        try:
            for i in range(count.value):
                attrs = _WindowAttributes()
                if (x11.XGetWindowAttributes(dpy, children[i], ctypes.byref(attrs))
                        and attrs.map_state == IS_VIEWABLE and not attrs.override_redirect):
                    found[children[i]] = (attrs.width, attrs.height)
        finally:
            if children:
                x11.XFree(children)
        xlib.take_errors()  # a window gone between the two calls is not an error of ours
        return found
    finally:
        x11.XCloseDisplay(dpy)


async def new_window(display: str, before: set[int], timeout: float = WINDOW_SETTLE
                     ) -> tuple[int, Size]:
    """The browser window that appeared since `before` was listed; RuntimeError after
    `timeout` (a new window maps a moment after its target exists)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        fresh = {w: size for w, size in browser_windows(display).items() if w not in before}
        if len(fresh) == 1:
            return next(iter(fresh.items()))
        if loop.time() > deadline:
            raise RuntimeError(f"no single new browser window on {display} "
                               f"({len(fresh)} appeared)")
        await asyncio.sleep(0.02)


# ---- the screen and the window ------------------------------------------------------------

class Screen:
    """The screen of one x11 instance; `largest` is the window size Xvfb was started for."""

    def __init__(self, display: str, largest: Size, window: Size) -> None:
        self.display = display
        self.largest = largest
        self.window = window

    def fits(self, page: Size) -> bool:
        window = window_for(page)
        return window[0] <= self.largest[0] and window[1] <= self.largest[1]

    async def fit(self, cdp, target_id: str, page: Size) -> bool:
        """Makes the screen and the kiosk window the page's; False when they were already.
        Callers stop grabbing the screen meanwhile: between the steps Chromium shows its
        window out of full screen, toolbar and all."""
        window = window_for(page)
        if window == self.window:
            return False
        set_screen_size(self.display, *screen_for(window))
        self.window = window
        # Chromium moves a full-screen window only through the normal state
        win = (await cdp.send("Browser.getWindowForTarget", {"targetId": target_id}))["windowId"]
        for bounds in ({"windowState": "normal"},
                       {"left": 0, "top": 0, "width": window[0], "height": window[1]},
                       {"windowState": "fullscreen"}):
            await cdp.send("Browser.setWindowBounds", {"windowId": win, "bounds": bounds})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WINDOW_SETTLE
        while loop.time() < deadline:
            got = (await cdp.send("Browser.getWindowBounds", {"windowId": win}))["bounds"]
            if (got.get("width"), got.get("height"), got.get("windowState")) == (
                    *window, "fullscreen"):
                return True
            await asyncio.sleep(0.02)
        logger.warning("kiosk window did not become %dx%d within %.0f s", *window,
                       WINDOW_SETTLE)
        return True
