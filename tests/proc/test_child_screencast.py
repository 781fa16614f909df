"""The child in screencast capture mode (headless Chromium, CDP JPEG frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lkpool.proc import protocol as p
from tests.proc.harness import close_to, color_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
PAGE = 1


async def test_ready_reports_screencast_without_display(screencast):
    """ContextReady names the screencast capture, no display and (audio off) no sink."""
    assert screencast.ready.capture == "screencast"
    assert screencast.ready.display == ""
    assert screencast.ready.audio_sink == ""


async def test_solid_page_gives_frames_of_its_colour_and_size(screencast):
    """A blue page arrives as 320x240 BGRA frames that are blue (JPEG: within a tolerance)."""
    frame = await screencast.frame_where(PAGE, lambda f: close_to(color_of(f), (0, 0, 255)))
    assert frame.shape == (240, 320, 4)


async def test_animated_page_keeps_frames_coming(screencast, site):
    """An animated page keeps producing distinct frames."""
    assert not (await screencast.request(p.Navigate, PAGE, site + "/anim")).error
    first = (await screencast.frame_where(
        PAGE, lambda f: not close_to(color_of(f), (0, 0, 255)))).copy()
    start = screencast.frames[PAGE].count
    await screencast.frame_where(PAGE, lambda f: not np.array_equal(f, first))
    assert screencast.frames[PAGE].count > start


async def test_click_reaches_the_page(screencast, site):
    """Input goes through CDP in this mode too: a click lands at its coordinates."""
    assert not (await screencast.request(p.Navigate, PAGE, site + "/clicks")).error
    for up in (False, True):
        assert not (await screencast.request(p.MouseClick, PAGE, 30, 40, 0, up, 1, 0)).error
    res = await screencast.request(p.Evaluate, PAGE, "window.clicks")
    assert json.loads(res.value) == [[30, 40]]


async def test_resize_gives_frames_of_the_new_size(screencast, site):
    """After Resize the page lays out at the new size and frames come at it (last test:
    closes the page so its new buffers go with it)."""
    assert not (await screencast.request(p.Navigate, PAGE, site + "/red")).error
    assert not (await screencast.resize(PAGE, 400, 200)).error
    frame = await screencast.frame_where(PAGE, lambda f: close_to(color_of(f), (255, 0, 0)))
    assert frame.shape == (200, 400, 4)
    res = await screencast.request(p.Evaluate, PAGE, "[innerWidth, innerHeight]")
    assert json.loads(res.value) == [400, 200]
    assert not (await screencast.request(p.ClosePage, PAGE)).error
    screencast.frames.pop(PAGE).buffers.close()
