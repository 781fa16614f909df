"""PagePublisher without a LiveKit server: local rtc.VideoStream / rtc.AudioStream on the
tracks it creates (livekit rtc delivers a local track's frames to a stream on it), so the
pixels and samples checked are the ones that would be encoded and sent to a room.

A VideoStream hands frames back after livekit's I420 conversion, so colours are compared
with a tolerance.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from livekit import rtc

from lkpool import engines
from lkpool.context import BrowserContext
from lkpool.errors import InvalidArgument
from lkpool.publish import AudioRing, PagePublisher
from tests.support.cef import cef_settings
from tests.support.pages import serve_pages

TONE_ON = """<html><body style='margin:0;background:{color}'><script>
const ctx = new AudioContext(); const o = ctx.createOscillator(); o.frequency.value = 440;
const g = ctx.createGain(); g.gain.value = 0.5; o.connect(g); g.connect(ctx.destination);
o.start();</script></body></html>"""
SOLID = "<html><body style='margin:0;background:{color}'></body></html>"


def close_to(px, bgra, tol: int = 24) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(px[:3], bgra[:3], strict=False))


async def frame_where(stream: rtc.VideoStream, predicate, timeout: float = 15.0):
    """The first frame out of `stream` for which predicate(centre BGRA pixel, frame) holds."""
    async def scan():
        async for ev in stream:
            f = ev.frame
            px = np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 4)[
                f.height // 2, f.width // 2]
            if predicate(tuple(px), f):
                return tuple(px), f.width, f.height
    return await asyncio.wait_for(scan(), timeout)


async def loud_audio(stream: rtc.AudioStream, timeout: float = 15.0) -> int:
    """The peak of the first audio frame out of `stream` that is clearly not silence."""
    async def scan():
        async for ev in stream:
            peak = int(np.abs(np.frombuffer(ev.frame.data, np.int16)).max())
            if peak > 1000:
                return peak
    return await asyncio.wait_for(scan(), timeout)


def test_audio_ring_wraps_and_drops_the_oldest_when_full():
    """The ring returns samples in order across the wrap and keeps only the newest on overrun."""
    ring = AudioRing(4, channels=2)  # 8 samples
    out = np.zeros(4, np.int16)
    ring.write(np.arange(6, dtype=np.int16))
    assert ring.read_into(out) and out.tolist() == [0, 1, 2, 3]
    ring.write(np.arange(6, 12, dtype=np.int16))  # wraps
    assert ring.available == 4
    assert ring.read_into(out) and out.tolist() == [4, 5, 6, 7]
    ring.write(np.arange(100, 112, dtype=np.int16))  # more than fits: oldest dropped
    assert ring.overruns == 1 and ring.available == 4
    assert ring.read_into(out) and out.tolist() == [104, 105, 106, 107]
    assert not ring.read_into(np.zeros(6, np.int16))  # only 4 samples left


async def test_chromium_page_published_pixels_audio_resize_and_repeat(settings):
    """A chromium page's paint reaches a VideoStream on video_track with its colour, follows
    a resize, repeats while static, and its WebAudio tone reaches an AudioStream non-silent."""
    pages = {"/blue": TONE_ON.format(color="#0000ff"), "/green": SOLID.format(color="#00ff00")}
    async with serve_pages(pages) as base, BrowserContext(settings=settings) as ctx:
        page = await ctx.new_page(url=base + "/blue", width=320, height=240, framerate=30)
        async with PagePublisher(page, framerate=15) as pub:
            assert pub.video_track is not None and pub.audio_track is not None
            video = rtc.VideoStream(pub.video_track, format=rtc.VideoBufferType.BGRA)
            audio = rtc.AudioStream(pub.audio_track, sample_rate=48000, num_channels=2)
            try:
                px, w, h = await frame_where(video, lambda px, f: close_to(px, (255, 0, 0)))
                assert (w, h) == (320, 240)
                if ctx.capture == "x11":  # PulseAudio per instance; screencast has no audio
                    assert ctx.audio_sink and await loud_audio(audio) > 1000
                # a static page keeps sending its last frame at the track's framerate
                while pub.frames_repeated < 5:
                    await asyncio.sleep(0.1)
                await page.resize(400, 300)
                px, w, h = await frame_where(video, lambda px, f: f.width == 400)
                assert (w, h) == (400, 300) and close_to(px, (255, 0, 0))
                # input from the caller goes through the server's input validation
                await pub.handle_input({"type": "navigate", "url": base + "/green"})
                await frame_where(video, lambda px, f: close_to(px, (0, 255, 0)))
                await pub.handle_input({"type": "navigate", "url": "file:///etc/passwd"})
                assert pub.inputs_applied == 1 and pub.inputs_rejected == 1
            finally:
                await video.aclose()
                await audio.aclose()
        await pub.aclose()  # idempotent after the async with


def packet(identity: str | None, data: bytes, topic: str = "lkpool.input") -> rtc.DataPacket:
    participant = SimpleNamespace(identity=identity) if identity else None
    return rtc.DataPacket(data=data, kind=1, participant=participant, topic=topic)


async def test_cef_page_published_and_input_only_from_allowed_identities(cef_standin, settings):
    """On the cef engine (stand-in) the publisher sends the page's colour and tone; input from
    the data topic is applied in order only when its sender is allowed."""
    ctx = engines.create_context(cef_settings(settings))
    await ctx.initialize()
    try:
        page = await ctx.new_page(url="about:blank?tone#ff0000", width=160, height=120,
                                  framerate=30)
        async with PagePublisher(page, allowed_identities={"alice"}) as pub:
            video = rtc.VideoStream(pub.video_track, format=rtc.VideoBufferType.BGRA)
            audio = rtc.AudioStream(pub.audio_track, sample_rate=48000, num_channels=2)
            try:
                await frame_where(video, lambda px, f: close_to(px, (0, 0, 255)))
                assert await loud_audio(audio) > 1000
                assert pub.audio_frames_sent > 0
                nav = b'{"type":"navigate","url":"about:blank#00ff00"}'
                pub._on_data(packet("mallory", nav))  # not allowed
                pub._on_data(packet(None, nav))  # a server message has no participant
                pub._on_data(packet("alice", nav, topic="other"))  # not the input topic
                assert pub.inputs_rejected == 2
                pub._on_data(packet("alice", nav))
                await frame_where(video, lambda px, f: close_to(px, (0, 255, 0)))
                assert pub.inputs_applied == 1 and page.url == "about:blank#00ff00"
            finally:
                await video.aclose()
                await audio.aclose()
    finally:
        await ctx.aclose()


async def test_publisher_stops_when_its_page_closes(cef_standin, settings):
    """The page's end stops the publisher: it emits closed and releases its sources."""
    ctx = engines.create_context(cef_settings(settings))
    await ctx.initialize()
    try:
        page = await ctx.new_page(url="about:blank", width=64, height=64, framerate=10)
        pub = PagePublisher(page)
        await pub.start()
        stopped = asyncio.Event()
        pub.on("closed", stopped.set)
        await page.aclose()
        await asyncio.wait_for(stopped.wait(), 10)
        assert pub.state.value == "closed"
        with pytest.raises(Exception, match="closed"):
            await pub.start()
    finally:
        await ctx.aclose()


def test_page_publisher_refuses_a_bad_framerate():
    """A framerate outside 1..120 is refused with InvalidArgument before anything starts."""
    with pytest.raises(InvalidArgument):
        PagePublisher(SimpleNamespace(framerate=30), framerate=500)
