"""Xlib for the child: the library, loaded once, and its process-wide error handlers.

Xlib's default handlers end the process on any error. Here a protocol error (a request of
ours the server refused) is logged and kept for the caller to check after `XSync`
(`take_errors`), and losing the X server runs `ON_X_SERVER_LOST` first: Xlib exits the
process after that handler whatever it does, so it is the only chance to clean up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections import deque
from collections.abc import Callable
from functools import cache

logger = logging.getLogger(__name__)

# Run (synchronously) when Xlib finds the X server gone; main registers its cleanup here
ON_X_SERVER_LOST: list[Callable[[], None]] = []


class XErrorEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("display", ctypes.c_void_p),
                ("resourceid", ctypes.c_ulong), ("serial", ctypes.c_ulong),
                ("error_code", ctypes.c_ubyte), ("request_code", ctypes.c_ubyte),
                ("minor_code", ctypes.c_ubyte)]


_IO_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(XErrorEvent))
_errors: deque[str] = deque(maxlen=16)  # nobody may ask: keep only the latest


@_IO_ERROR_HANDLER
def _on_io_error(_display: int) -> int:
    logger.error("the X server went away")
    for cb in ON_X_SERVER_LOST:
        try:
            cb()
        except Exception:
            logger.exception("cleanup after the X server went away")
    os._exit(4)


@_ERROR_HANDLER
def _on_error(_display: int, event) -> int:
    e = event.contents
    text = (f"X error {e.error_code} on request {e.request_code}.{e.minor_code} "
            f"(resource {e.resourceid:#x})")
    logger.warning("%s", text)
    _errors.append(text)
    return 0


def take_errors() -> list[str]:
    """The protocol errors reported since the last call (call `XSync` first)."""
    errors = list(_errors)
    _errors.clear()
    return errors


def load(name: str, soname: str) -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library(name) or soname)


@cache
def x11() -> ctypes.CDLL:
    """libX11 with the signatures we use and our error handlers installed."""
    lib = load("X11", "libX11.so.6")
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    for fn in ("XConnectionNumber", "XPending", "XFlush", "XCloseDisplay"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XDisplayWidth.argtypes = lib.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.XFree.argtypes = [ctypes.c_void_p]
    lib.XSetIOErrorHandler.argtypes = [_IO_ERROR_HANDLER]
    lib.XSetIOErrorHandler.restype = ctypes.c_void_p
    lib.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
    lib.XSetErrorHandler.restype = ctypes.c_void_p
    lib.XSetIOErrorHandler(_on_io_error)
    lib.XSetErrorHandler(_on_error)
    return lib


def open_display(display: str) -> int:
    """An Xlib connection to `display`; RuntimeError when there is none."""
    dpy = x11().XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open X display {display}")
    return dpy
