"""The child in x11 capture mode, driven over the duplex: frames, input, events, audio."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import psutil
import pytest

from lkpool.proc import protocol as p
from tests.proc.harness import close_to, color_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
PAGE = 1


async def test_ready_reports_x11(x11):
    """ContextReady names the x11 capture, an X display and a PulseAudio sink."""
    assert x11.ready.capture == "x11"
    assert x11.ready.display.startswith(":")
    assert x11.ready.audio_sink.startswith("lkpool_")
    assert x11.ready.debugging_port > 0


async def test_solid_page_gives_frames_of_its_colour_and_size(x11):
    """A red page arrives as 320x240 BGRA frames that are red."""
    frame = await x11.frame_where(PAGE, lambda f: close_to(color_of(f), (255, 0, 0)))
    assert frame.shape == (240, 320, 4)
    assert (frame[..., 2] > 240).all() and (frame[..., 0] < 15).all()


async def test_animated_page_keeps_frames_coming(x11, site):
    """An animated page keeps producing distinct frames."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/anim")).error
    first = await x11.frame_where(PAGE, lambda f: not close_to(color_of(f), (255, 0, 0)))
    first = first.copy()
    start = x11.frames[PAGE].count
    later = await x11.frame_where(PAGE, lambda f: not np.array_equal(f, first))
    assert x11.frames[PAGE].count > start
    assert later.shape == first.shape


async def test_static_page_sends_no_frames_when_nothing_changes(x11, site):
    """Nothing changes on screen -> no grab, no frame (DAMAGE-driven)."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/green")).error
    await x11.frame_where(PAGE, lambda f: close_to(color_of(f), (0, 255, 0)))
    await asyncio.sleep(1.0)  # let the load settle (caret, late paints)
    before = x11.frames[PAGE].count
    await asyncio.sleep(1.0)
    assert x11.frames[PAGE].count - before <= 2


async def test_url_changed_on_navigation_and_same_document(x11, site):
    """UrlChanged fires for a navigation and for a same-document (#hash) change."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/hash")).error
    await x11.wait_for(lambda m: isinstance(m, p.UrlChanged) and m.url == site + "/hash")
    await x11.request(p.Evaluate, PAGE, "location.hash = 'part2'")
    await x11.wait_for(lambda m: isinstance(m, p.UrlChanged) and m.url.endswith("#part2"))


async def test_navigate_to_unreachable_url_fails(x11):
    """Navigate to a closed port answers code navigation_failed with the reason."""
    res = await x11.request(p.Navigate, PAGE, "http://127.0.0.1:9/nothing")
    assert res.code == "navigation_failed"
    assert "ERR_" in res.error


async def test_click_reaches_the_page_at_its_coordinates(x11, site):
    """A click at (50, 60) is seen by the page's listener at (50, 60)."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/clicks")).error
    await x11.wait_for(lambda m: isinstance(m, p.UrlChanged) and m.url.endswith("/clicks"))
    for up in (False, True):
        res = await x11.request(p.MouseClick, PAGE, 50, 60, 0, up, 1, 0)
        assert not res.error
    res = await x11.request(p.Evaluate, PAGE, "window.clicks")
    assert json.loads(res.value) == [[50, 60]]


async def test_keys_type_into_a_focused_input(x11, site):
    """keyDown with text then keyUp types into the focused input."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/clicks")).error
    await x11.request(p.Evaluate, PAGE, "document.getElementById('t').focus()")
    for ch in "hi":
        code = ord(ch.upper())
        assert not (await x11.request(p.KeyEvent, PAGE, 1, 0, code, 0, 0, ch,
                                      f"Key{ch.upper()}", ch)).error
        assert not (await x11.request(p.KeyEvent, PAGE, 2, 0, code, 0, 0, ch,
                                      f"Key{ch.upper()}", "")).error
    res = await x11.request(p.Evaluate, PAGE, "document.getElementById('t').value")
    assert json.loads(res.value) == "hi"


async def test_cursor_changes_under_the_pointer(x11, site):
    """Moving over a cursor:pointer element sends CursorChanged('pointer'), then 'text'."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/cursor")).error
    await x11.wait_for(lambda m: isinstance(m, p.UrlChanged) and m.url.endswith("/cursor"))
    assert not (await x11.request(p.MouseMove, PAGE, 50, 50, False, 0)).error
    await x11.wait_for(lambda m: isinstance(m, p.CursorChanged) and m.cursor == "pointer")
    assert not (await x11.request(p.MouseMove, PAGE, 200, 50, False, 0)).error
    await x11.wait_for(lambda m: isinstance(m, p.CursorChanged) and m.cursor == "text")


async def test_evaluate_errors_and_unknown_page(x11):
    """A throwing expression is a page_error; an unknown page id is no_such_page."""
    res = await x11.request(p.Evaluate, PAGE, "(() => { throw new Error('boom') })()")
    assert res.code == "page_error" and "boom" in res.error
    res = await x11.request(p.Navigate, 999, "about:blank")
    assert res.code == "no_such_page"
    res = await x11.request(p.SetFramerate, PAGE, 0)
    assert res.code == "invalid_argument"


def _readers(x11) -> list[psutil.Process]:
    """The child's live parec processes (one that exits while we look is not a reader)."""
    out = []
    for c in psutil.Process(x11.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if c.name() == "parec":
                out.append(c)
    return out


async def test_audio_is_read_only_while_the_parent_listens(x11, site):
    """No reader runs and no Audio comes until ListenAudio; after it is switched off, the
    reader is gone again and the audio stops."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/tone")).error
    await asyncio.sleep(0.5)
    assert _readers(x11) == [] and x11.audio == []
    x11.send(p.ListenAudio(PAGE, True))
    for _ in range(100):
        if x11.audio:
            break
        await asyncio.sleep(0.05)
    assert len(_readers(x11)) == 1 and x11.audio
    x11.send(p.ListenAudio(PAGE, False))
    for _ in range(100):
        if not _readers(x11):
            break
        await asyncio.sleep(0.05)
    assert _readers(x11) == []
    await asyncio.sleep(0.2)
    count = len(x11.audio)
    await asyncio.sleep(0.5)
    assert len(x11.audio) == count
    assert not (await x11.request(p.Navigate, PAGE, "about:blank")).error


async def test_audio_of_a_tone_arrives(x11, site):
    """A page playing a 440 Hz tone yields non-silent 10 ms s16 stereo frames for page 1."""
    x11.audio.clear()
    x11.send(p.ListenAudio(PAGE, True))
    assert not (await x11.request(p.Navigate, PAGE, site + "/tone")).error

    async def loud() -> p.Audio:
        while True:
            for msg in list(x11.audio):
                pcm = np.frombuffer(msg.data, np.int16)
                if np.abs(pcm).max() > 1000:
                    return msg
            await asyncio.sleep(0.1)

    msg = await asyncio.wait_for(loud(), 20)
    assert (msg.page_id, msg.sample_rate, msg.channels, msg.samples_per_channel) == \
        (PAGE, 48000, 2, 480)
    assert len(msg.data) == 1920
    x11.send(p.ListenAudio(PAGE, False))
    assert not (await x11.request(p.Navigate, PAGE, "about:blank")).error


async def test_resize_gives_frames_of_the_new_size(x11, site):
    """After Resize, frames carry the new generation and size (and the page lays out to it);
    a size beyond the x11 screen still gets frames (by screencast). Last in the module: it
    closes the page, so its new buffers are not left behind."""
    assert not (await x11.request(p.Navigate, PAGE, site + "/red")).error
    res = await x11.resize(PAGE, 400, 300)
    assert not res.error, res.error
    frame = await x11.frame_where(PAGE, lambda f: close_to(color_of(f), (255, 0, 0)))
    assert frame.shape == (300, 400, 4)
    res = await x11.request(p.Evaluate, PAGE, "[innerWidth, innerHeight]")
    assert json.loads(res.value) == [400, 300]
    # beyond the start-up screen but within SCREEN_WIDTH x SCREEN_HEIGHT: the X screen and
    # the kiosk window grow to the page (a pixel of margin), which is laid out natively
    res = await x11.resize(PAGE, 1600, 900)
    assert not res.error, res.error
    # no toolbar at the top, no black past the old window: a frame taken while the window
    # grows may still show its new part unpainted (seen in CI), the frames after it do not
    corners = ((4, 4), (895, 1595))
    frame = await x11.frame_where(PAGE, lambda f: f.shape == (900, 1600, 4) and all(
        close_to(tuple(int(v) for v in f[y, x, 2::-1]), (255, 0, 0)) for y, x in corners))
    res = await x11.request(p.Evaluate, PAGE, "[outerWidth, outerHeight, screen.width]")
    assert json.loads(res.value) == [1600, 900, 1601]
    res = await x11.resize(PAGE, 3000, 2000)
    assert not res.error, res.error
    frame = await x11.frame_where(PAGE, lambda f: f.shape == (2000, 3000, 4)
                                  and close_to(color_of(f), (255, 0, 0)))
    assert frame.shape == (2000, 3000, 4)
    assert not (await x11.request(p.ClosePage, PAGE)).error
    x11.frames.pop(PAGE).buffers.close()
