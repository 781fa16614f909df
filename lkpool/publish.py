"""A page's frames and audio into a LiveKit room.

    page ──paint──► PagePublisher ──capture_frame──► rtc.VideoSource ─► video_track (SCREENSHARE)
         ──audio──► AudioRing ──one task──────────► rtc.AudioSource ─► audio_track
         ──cursor_changed / url_changed──► RoomControl ──► "<prefix>.events", and the
                                           plugin's "browser-url" / "cursor_changed"
    room ──"<prefix>.input", "browser-input", browser/* RPCs──► RoomControl ──► page
         (only from the focus holder; see room_control.py for the one model of both)

Why it is shaped this way:
- The page keeps its full current image (`page.last_frame`, dirty rects already merged)
  and changes it only while it handles a paint on this loop, so the publisher keeps no copy:
  a paint is captured at once, and one timer task sends the current image again at the
  track's framerate while the page is still (WebRTC encoders and late joiners want a steady
  stream). The same VideoSource takes frames of any size, so a resize needs no new track.
- Audio arrives in packets on the event loop. A task per packet or a fresh frame per packet
  would cost more than the audio itself, so packets go into a fixed ring and one consumer
  task hands 10 ms at a time to `AudioSource.capture_frame` from one preallocated AudioFrame.
- Input from the room is untrusted: only identities the caller allows may send it (none by
  default), only the focus holder's is applied, and it is validated before it reaches the
  page, in order, through one task (room_control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from typing import Any

import numpy as np
from livekit import rtc

from .errors import ClosedError, InvalidArgument, LiveKitUnreachable
from .events import EventEmitter
from .focus import Focus
from .room_control import Allowed, RoomControl
from .tasks import spawn

SAMPLE_RATE = 48000
CHANNELS = 2
CHUNK = SAMPLE_RATE // 100  # samples per channel in one 10 ms frame
RING_MS = 400  # audio buffered before the oldest is dropped
AUDIO_QUEUE_MS = 200  # AudioSource's own queue: bounds the added latency
VIDEO_TRACK = "lkpool-page"
AUDIO_TRACK = "lkpool-page-audio"

_ids = itertools.count(1)


async def connect_room(url: str, token: str, *, timeout: float = 10.0) -> rtc.Room:
    """A connected room for a publisher (it subscribes to nothing); LiveKitUnreachable else."""
    for name, value in (("livekit_url", url), ("token", token)):
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"{name} must be a non-empty string")
    if not url.startswith(("ws://", "wss://", "http://", "https://")):
        raise InvalidArgument(f"livekit_url must be a ws(s):// or http(s):// URL, got {url!r}")
    room = rtc.Room()
    options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=timeout)
    try:
        await asyncio.wait_for(room.connect(url, token, options), timeout * 3)
    except (rtc.ConnectError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await room.disconnect()
        detail = getattr(exc, "message", None) or str(exc) or "timed out"
        raise LiveKitUnreachable(f"cannot join the room at {url}: {detail}") from exc
    return room


class State(enum.Enum):
    NEW = "new"
    STARTED = "started"
    PUBLISHED = "published"
    CLOSED = "closed"


class AudioRing:
    """A fixed ring of interleaved int16 samples; when full, the oldest are overwritten."""

    def __init__(self, frames: int, channels: int = CHANNELS) -> None:
        self.channels = channels
        self._buf = np.zeros(frames * channels, np.int16)
        self._read = 0  # absolute sample counters; positions are taken modulo the size
        self._write = 0
        self.overruns = 0

    @property
    def available(self) -> int:
        """Whole frames (samples per channel) ready to read."""
        return (self._write - self._read) // self.channels

    def write(self, samples: np.ndarray) -> None:
        size = len(self._buf)
        if len(samples) > size:
            samples = samples[-size:]
        start = self._write % size
        first = min(len(samples), size - start)
        self._buf[start:start + first] = samples[:first]
        self._buf[:len(samples) - first] = samples[first:]
        self._write += len(samples)
        if self._write - self._read > size:
            self.overruns += 1
            self._read = self._write - size

    def read_into(self, out: np.ndarray) -> bool:
        """Fills all of `out` (interleaved) when that much is buffered; False otherwise."""
        if self._write - self._read < len(out):
            return False
        size = len(self._buf)
        start = self._read % size
        first = min(len(out), size - start)
        out[:first] = self._buf[start:start + first]
        out[first:] = self._buf[:len(out) - first]
        self._read += len(out)
        return True


class PagePublisher(EventEmitter[str]):
    """Publishes one page into a LiveKit room; emits "closed" once when it stops.

        async with PagePublisher(page, allowed_identities={"alice"}) as pub:
            await pub.publish(room)
            ...
    """

    def __init__(self, page: Any, *, framerate: int | None = None,
                 data_topic_prefix: str = "lkpool", allowed_identities: Allowed = None) -> None:
        super().__init__()
        self.page = page
        self.framerate = int(framerate or page.framerate)
        if not 1 <= self.framerate <= 120:
            raise InvalidArgument(f"framerate must be in 1..120, got {framerate!r}")
        self.state = State.NEW
        self.room: rtc.Room | None = None
        self.video_source: rtc.VideoSource | None = None
        self.audio_source: rtc.AudioSource | None = None
        self.video_track: rtc.LocalVideoTrack | None = None
        self.audio_track: rtc.LocalAudioTrack | None = None
        self._publications: list[rtc.LocalTrackPublication] = []
        # counters, for /metrics and tests
        self.frames_sent = 0
        self.frames_repeated = 0
        self.audio_frames_sent = 0
        # video: when a frame was last sent (the page holds the image itself)
        self._last_sent = 0.0
        # audio: ring + one preallocated frame, filled in place
        self._ring = AudioRing(SAMPLE_RATE * RING_MS // 1000)
        self._audio_frame = rtc.AudioFrame.create(SAMPLE_RATE, CHANNELS, CHUNK)
        self._audio_out = np.frombuffer(self._audio_frame.data, np.int16)
        self._audio_ready = asyncio.Event()
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate = 0
        self._page_cbs: list[int] = []
        self._tasks: set[asyncio.Task] = set()
        self.log = logging.getLogger(f"lkpool.publish.{next(_ids)}")
        self.control = RoomControl(page, prefix=data_topic_prefix,
                                   allowed=allowed_identities, log=self.log)
        self.events_topic = self.control.events_topic
        self.input_topic = self.control.input_topic

    @property
    def inputs_applied(self) -> int:
        return self.control.inputs_applied

    @property
    def inputs_rejected(self) -> int:
        return self.control.inputs_rejected

    @property
    def focus(self) -> Focus:
        """The page's focus, shared with the live view and an agent (lkpool/focus.py)."""
        return self.control.focus

    # ---- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Creates the sources and tracks and starts feeding them from the page."""
        if self.state is not State.NEW:
            raise ClosedError(f"publisher already {self.state.value}")
        if getattr(self.page, "closed", False):
            raise ClosedError("the page is closed")
        w, h = self.page.width, self.page.height
        self.video_source = rtc.VideoSource(w, h, is_screencast=True)
        self.audio_source = rtc.AudioSource(SAMPLE_RATE, CHANNELS, queue_size_ms=AUDIO_QUEUE_MS)
        self.video_track = rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK, self.video_source)
        self.audio_track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK, self.audio_source)
        on = self.page.on
        self._page_cbs = [on("paint", self._on_paint), on("audio", self._on_audio),
                           on("closed", self._on_page_closed)]
        self.control.watch_page()
        self.state = State.STARTED
        self._seed()
        for name, coro in (("repeat", self._repeat_loop()), ("audio", self._audio_loop()),
                           ("input", self.control.input_loop())):
            self._spawn(name, coro)

    async def publish(self, room: rtc.Room) -> None:
        """Publishes both tracks to a connected room and joins its data topics."""
        if self.state is State.NEW:
            await self.start()
        if self.state is not State.STARTED:
            raise ClosedError(f"publisher already {self.state.value}")
        if not room.isconnected():
            raise InvalidArgument("the room is not connected")
        self.room = room
        self.state = State.PUBLISHED
        lp = room.local_participant
        assert self.video_track is not None and self.audio_track is not None  # made by start()
        video_opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE)
        video_opts.video_encoding.max_framerate = float(self.framerate)
        video_opts.video_encoding.max_bitrate = 3_000_000
        self._publications.append(await lp.publish_track(self.video_track, video_opts))
        self._publications.append(await lp.publish_track(self.audio_track, rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO)))
        self.control.join(room)
        self._spawn("events", self.control.events_loop())
        self.log.info("publishing page %s to room %s", self.page.id, room.name)

    async def aclose(self) -> None:
        """Stops feeding, unpublishes, releases the sources; idempotent."""
        if self.state is State.CLOSED:
            return
        was_published = self.state is State.PUBLISHED
        self.state = State.CLOSED
        for cb_id in self._page_cbs:
            self.page.off(cb_id)
        self._page_cbs.clear()
        self.control.leave()
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel(msg="publisher closing")
        await asyncio.gather(*tasks, return_exceptions=True)
        room = self.room
        if was_published and room is not None:
            if room.isconnected():
                for pub in self._publications:
                    with contextlib.suppress(Exception):  # the room may be going away too
                        await room.local_participant.unpublish_track(pub.sid)
        self._publications.clear()
        for source in (self.video_source, self.audio_source):
            if source is not None:
                await source.aclose()
        self.emit("closed")

    async def __aenter__(self) -> PagePublisher:
        if self.state is State.NEW:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _spawn(self, name: str, coro: Any) -> None:
        spawn(coro, name=f"{self.log.name}.{name}", into=self._tasks, log=self.log)

    def _on_page_closed(self, reason: str) -> None:
        self.log.info("page closed (%s): stopping", reason)
        # not in _tasks, which aclose cancels
        spawn(self.aclose(), name=f"{self.log.name}.close", log=self.log)

    # ---- video --------------------------------------------------------------------------

    def _seed(self) -> None:
        """Starts from the page's current image: a still page may not paint again for long."""
        if (frame := self._current()) is not None:
            self._send_frame(frame)

    def _current(self) -> rtc.VideoFrame | None:
        """The page keeps its full current image (dirty rects already merged), unchanged
        between paints on this loop: the publisher needs no copy of its own."""
        return getattr(self.page, "last_frame", None)

    def _send_frame(self, frame: rtc.VideoFrame) -> None:
        assert self.video_source is not None  # made by start(), before any frame comes
        self.video_source.capture_frame(frame)
        self._last_sent = time.monotonic()

    def _on_paint(self, data: Any) -> None:
        if time.monotonic() - self._last_sent >= 0.9 / self.framerate:
            self._send_frame(data.frame)  # faster paints wait for the timer, which sends
            self.frames_sent += 1         # the newest image then

    async def _repeat_loop(self) -> None:
        """Sends the current image again whenever a frame interval passed without one."""
        interval = 1.0 / self.framerate
        while True:
            await asyncio.sleep(interval)
            frame = self._current()
            if frame is not None and time.monotonic() - self._last_sent >= interval:
                self._send_frame(frame)
                self.frames_repeated += 1

    # ---- audio --------------------------------------------------------------------------

    def _on_audio(self, data: Any) -> None:
        frame = data.frame
        if frame.sample_rate != SAMPLE_RATE:
            # rare (CEF may run at 44.1 kHz): the only path that allocates per packet
            if self._resampler is None or self._resampler_rate != frame.sample_rate:
                self._resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE,
                                                     num_channels=frame.num_channels)
                self._resampler_rate = frame.sample_rate
            frames = self._resampler.push(frame)
        else:
            frames = [frame]
        for f in frames:
            samples = np.frombuffer(f.data, np.int16)
            if f.num_channels == 1:
                samples = np.repeat(samples, 2)
            elif f.num_channels > CHANNELS:
                samples = samples.reshape(-1, f.num_channels)[:, :CHANNELS].ravel()
            self._ring.write(samples)
        if self._ring.available >= CHUNK:
            self._audio_ready.set()

    async def _audio_loop(self) -> None:
        source = self.audio_source
        assert source is not None  # made by start(), which starts this loop
        while True:
            await self._audio_ready.wait()
            self._audio_ready.clear()
            while self._ring.read_into(self._audio_out):
                await source.capture_frame(self._audio_frame)
                self.audio_frames_sent += 1

    # ---- data: events out, input in (room_control.py) ----------------------------------

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.control.on_data(packet)

    async def handle_input(self, raw: bytes | str | dict, identity: str = "") -> None:
        """Validates and applies one input event (the server's input JSON)."""
        await self.control.handle_input(raw, identity)
