"""RandR on a real Xvfb: the screen shrinks and grows back within the size it started with,
and a size beyond that is refused with an error instead of ending the process."""

from __future__ import annotations

import ctypes
import shutil

import pytest

from lkpool.proc import xlib
from lkpool.proc.display import start_xvfb, stop_xvfb, xauthority
from lkpool.proc.screen import MIN_WINDOW, MODE_PREFIX, Screen, set_screen_size, window_for

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")


@pytest.fixture
def display(tmp_path, monkeypatch):
    proc, name = start_xvfb(1921, 1081, str(tmp_path))
    monkeypatch.setenv("XAUTHORITY", xauthority(str(tmp_path)))  # the display's cookie
    try:
        yield name
    finally:
        stop_xvfb(proc, name)


def test_display_takes_only_clients_with_its_cookie(display, tmp_path, monkeypatch):
    """Xvfb runs with -auth: a client without the instance's cookie is refused."""
    dpy = xlib.open_display(display)
    xlib.x11().XCloseDisplay(dpy)
    monkeypatch.setenv("XAUTHORITY", str(tmp_path / "no-cookie"))
    with pytest.raises(RuntimeError, match="cannot open X display"):
        xlib.open_display(display)


def screen_size(display: str) -> tuple[int, int]:
    x11 = xlib.x11()
    dpy = xlib.open_display(display)
    try:
        return x11.XDisplayWidth(dpy, 0), x11.XDisplayHeight(dpy, 0)
    finally:
        x11.XCloseDisplay(dpy)


def our_modes(display: str) -> list[bytes]:
    from lkpool.proc.screen import _xrandr
    rr, x11 = _xrandr(), xlib.x11()
    dpy = xlib.open_display(display)
    try:
        res = rr.XRRGetScreenResourcesCurrent(dpy, x11.XDefaultRootWindow(dpy))
        try:
            r = res.contents
            names = [ctypes.string_at(r.modes[i].name, r.modes[i].nameLength)
                     for i in range(r.nmode)]
        finally:
            rr.XRRFreeScreenResources(res)
        return [n for n in names if n.startswith(MODE_PREFIX)]
    finally:
        x11.XCloseDisplay(dpy)


def test_screen_shrinks_and_grows_back(display):
    for size in [(1281, 721), (1921, 1081), (801, 1081), (1921, 601), (1281, 721)]:
        set_screen_size(display, *size)
        assert screen_size(display) == size
    assert our_modes(display) == [b"lkpool-1281x721"]  # sizes left behind are removed


def test_beyond_the_start_size_is_an_error(display):
    set_screen_size(display, 1281, 721)
    with pytest.raises(RuntimeError, match="3000x2000"):
        set_screen_size(display, 3000, 2000)
    set_screen_size(display, 1001, 701)  # the connection and the process live on
    assert screen_size(display) == (1001, 701)


def test_windows_and_what_fits(display):
    assert window_for((320, 240)) == MIN_WINDOW
    assert window_for((1280, 720)) == (1280, 720)
    screen = Screen(display, largest=(1920, 1080), window=(1280, 720))
    assert screen.fits((1920, 1080)) and screen.fits((100, 1080))
    assert not screen.fits((1921, 1080)) and not screen.fits((1280, 1081))
