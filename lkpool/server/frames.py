"""Frames of a page to any number of WebSocket viewers: one broadcaster per page.

Why this shape: a page paints at its framerate whatever the viewers do, and a viewer on a
slow link must never make the server buffer frames for it. So the broadcaster keeps only
the newest frame; each viewer sends the newest one when its socket has taken the previous
one, and counts the frames it never saw (`skipped`). A message (header + payload) is built
once per frame and (format, quality, size) and the same bytes go to every viewer: four JPEG
viewers at the same settings cost one encode, done in a worker thread so the event loop keeps
serving sockets, and four raw viewers cost no copy beyond the one out of the page.

Bounded: a viewer chooses its quality and size, so a few viewers could ask one frame for as
many different encodings. Qualities are rounded to steps of 10 and widths to steps of 32
(at most 10 x 120 variants, and no more than the session's sockets, MAX_SESSION_SOCKETS,
at once), and the encodes run on one pool of ENCODER_THREADS threads owned by the
broadcasters, not on the loop's default executor that the pool's own work uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import simplejpeg

from ..errors import InvalidArgument
from .header import FORMATS, HEADER_SIZE, FrameFormat, FrameHeader

logger = logging.getLogger(__name__)

EncodeKey = tuple[FrameFormat, int, int, int]  # format, quality, width, height
QUALITY_STEP = 10
WIDTH_STEP = 32
ENCODER_THREADS = 2


@dataclass(slots=True, eq=False)
class Frame:
    """One painted frame, copied out of the page's reused buffer (BGRA, tightly packed)."""

    sequence: int
    width: int
    height: int
    captured_ns: int  # Unix time
    data: bytes | memoryview
    message: bytearray | None = None  # header + data: the raw message, shared by viewers
    encoded: dict[EncodeKey, asyncio.Future[bytes]] = field(default_factory=dict)

    @classmethod
    def copy_of(cls, sequence: int, width: int, height: int, captured_ns: int,
                pixels: memoryview, recycler: Recycler | None = None) -> Frame:
        """Copies the page's pixels once, straight behind room for the header, so the raw
        message is ready without another copy."""
        n = width * height * 4
        buf = recycler.take(HEADER_SIZE + n) if recycler else bytearray(HEADER_SIZE + n)
        buf[HEADER_SIZE:] = pixels.cast("B")[:n]
        FrameHeader(FrameFormat.RAW, width, height, sequence, captured_ns,
                    time.time_ns()).pack_into(buf)
        return cls(sequence, width, height, captured_ns, memoryview(buf)[HEADER_SIZE:], buf)

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, np.uint8).reshape(self.height, self.width, 4)


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize: cheap, and good enough for a live view."""
    h, w = arr.shape[:2]
    ys = (np.arange(height) * h // height).astype(np.intp)
    xs = (np.arange(width) * w // width).astype(np.intp)
    return np.ascontiguousarray(arr[ys][:, xs])


def _encode_raw(frame: Frame, quality: int, width: int, height: int) -> bytes:
    return _resize(frame.array(), width, height).tobytes()


def _encode_jpeg(frame: Frame, quality: int, width: int, height: int) -> bytes:
    arr = frame.array()
    if (width, height) != (frame.width, frame.height):
        arr = _resize(arr, width, height)
    return simplejpeg.encode_jpeg(arr, quality=quality, colorspace="BGRA",
                                  colorsubsampling="420")


ENCODERS: dict[FrameFormat, Callable[[Frame, int, int, int], bytes]] = {
    FrameFormat.RAW: _encode_raw,
    FrameFormat.JPEG: _encode_jpeg,
}


def _wall_ns(captured_ns: int | None) -> int:
    """The capture time as Unix ns; a monotonic stamp (small number) is converted."""
    if not captured_ns:
        return time.time_ns()
    if captured_ns < 10**18:  # monotonic clock: seconds since boot, not since 1970
        return captured_ns + (time.time_ns() - time.monotonic_ns())
    return captured_ns


class Recycler:
    """Frame-sized buffers, each handed out again once nothing else refers to it.

    A fresh 3.7 MB bytearray per 720p frame is a fresh mapping whose 900 pages fault in
    as they are written: 27 000 faults a second at 30 fps, measured as most of the
    broadcaster's kernel time. A buffer is free when only this list holds it: no Frame,
    memoryview, transport write or encoder does (CPython's reference count says so
    exactly, memoryviews included)."""

    KEEP = 4  # buffers per broadcaster: the newest frame, one being sent, and spares

    def __init__(self) -> None:
        self._bufs: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        for i in range(len(self._bufs)):
            if _refs(self._bufs, i) == _FREE_REFS and len(self._bufs[i]) == size:
                return self._bufs[i]
        buf = bytearray(size)
        self._bufs.append(buf)
        if len(self._bufs) > self.KEEP:
            del self._bufs[0]  # the oldest; whoever still holds it keeps it alive
        return buf


def _refs(items: list, i: int) -> int:
    return sys.getrefcount(items[i])


# what `_refs` counts for an object only a list holds (the list's reference plus the call's
# own), measured the same way rather than assumed: interpreters differ in the second part
_FREE_REFS = _refs([bytearray(1)], 0)


class Broadcaster:
    """Newest-frame holder for one page; viewers pull from it, it never queues."""

    def __init__(self, page: Any, *, name: str = "",
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.page = page
        self._executor = executor
        self.latest: Frame | None = None
        self.sequence = 0
        self.closed = False
        self._recycler = Recycler()
        self._viewers = 0
        self._waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._paint_id: Any = None
        self._closed_id: Any = None
        self._log = logging.LoggerAdapter(logger, {"page": name})

    @property
    def viewers(self) -> int:
        return self._viewers

    def _attach(self) -> None:
        self._paint_id = self.page.on("paint", self._on_paint)
        self._closed_id = self.page.on("closed", self._on_closed)
        self._seed()

    def _seed(self) -> None:
        """Starts from the page's current image: a still page may not paint again for long."""
        frame = getattr(self.page, "last_frame", None)  # engines without it start empty
        if frame is None or not frame.width or not frame.height:
            return
        self.sequence = self._next_sequence()
        self.latest = Frame.copy_of(self.sequence, frame.width, frame.height, time.time_ns(),
                                    frame.data)

    def _detach(self) -> None:
        for cb_id in (self._paint_id, self._closed_id):
            if cb_id is not None:
                self.page.off(cb_id)
        self._paint_id = self._closed_id = None

    def _next_sequence(self) -> int:
        """The page's own paint count when it has one, so sequences agree across viewers."""
        count = getattr(self.page, "frames", None)
        return count if isinstance(count, int) and count > self.sequence else self.sequence + 1

    def _on_paint(self, paint: Any) -> None:
        self.sequence = self._next_sequence()
        self.latest = Frame.copy_of(self.sequence, paint.width, paint.height,
                                    _wall_ns(getattr(paint, "captured_ns", None)),
                                    paint.frame.data, self._recycler)
        self._wake()

    def _on_closed(self, *_: Any) -> None:
        self.close()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Ends every viewer's stream (the page or the lease is gone)."""
        if not self.closed:
            self.closed = True
            self._detach()
            self._wake()

    async def next_frame(self, after: int) -> Frame | None:
        """The newest frame with a sequence above `after`; None once closed."""
        while not self.closed:
            if self.latest is not None and self.latest.sequence > after:
                return self.latest
            await asyncio.shield(self._waiter)
        return None

    async def message(self, frame: Frame, key: EncodeKey) -> bytes | bytearray:
        """The whole message (header + payload) of `frame` for `key`: built once per frame
        and key, in a worker thread, and the same object sent to every viewer."""
        fmt, quality, width, height = key
        if (fmt is FrameFormat.RAW and (width, height) == (frame.width, frame.height)
                and frame.message is not None):
            return frame.message
        fut = frame.encoded.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._executor, build_message, frame, key)
            frame.encoded[key] = fut
        return await asyncio.shield(fut)


def build_message(frame: Frame, key: EncodeKey) -> bytes:
    fmt, quality, width, height = key
    payload = ENCODERS[fmt](frame, quality, width, height)
    header = FrameHeader(fmt, width, height, frame.sequence, frame.captured_ns, time.time_ns())
    return header.pack() + payload


class Broadcasters:
    """One broadcaster per watched page, attached while it has viewers."""

    def __init__(self, *, threads: int = ENCODER_THREADS) -> None:
        self._by_key: dict[str, Broadcaster] = {}
        # every encode of every page, on a fixed number of threads of its own
        self._executor = concurrent.futures.ThreadPoolExecutor(threads,
                                                               thread_name_prefix="encode")

    def get(self, key: str) -> Broadcaster | None:
        return self._by_key.get(key)

    @contextlib.asynccontextmanager
    async def watch(self, key: str, page: Any) -> AsyncIterator[Broadcaster]:
        bc = self._by_key.get(key)
        if bc is None or bc.page is not page or bc.closed:
            bc = Broadcaster(page, name=key[:6], executor=self._executor)
            bc._attach()
            self._by_key[key] = bc
        bc._viewers += 1
        try:
            yield bc
        finally:
            bc._viewers -= 1
            if bc._viewers == 0:
                bc.close()
                if self._by_key.get(key) is bc:
                    del self._by_key[key]

    def close_all(self) -> None:
        for bc in self._by_key.values():
            bc.close()
        self._by_key.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---- what one viewer asked for ---------------------------------------------------------------

_QUERY_KEYS = frozenset({"format", "quality", "fps", "scale", "max_width", "token"})


@dataclass(frozen=True, slots=True)
class FrameOptions:
    """The query of a frames WebSocket, validated. `fps` 0 means the page's own rate."""

    format: FrameFormat = FrameFormat.JPEG
    quality: int = 80
    fps: float = 0.0
    scale: float = 1.0
    max_width: int = 0

    @classmethod
    def parse(cls, query: Any) -> FrameOptions:
        """From a query mapping; raises InvalidArgument naming the bad parameter."""
        def bad(name: str, why: str) -> InvalidArgument:
            return InvalidArgument(f"query parameter {name!r} {why}")

        unknown = sorted(set(query) - _QUERY_KEYS)
        if unknown:
            raise bad(unknown[0], "is not one of " + ", ".join(sorted(_QUERY_KEYS - {"token"})))

        def number(name: str, kind: type, lo: float, hi: float, default: Any) -> Any:
            raw = query.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise bad(name, f"must be a{'n integer' if kind is int else ' number'}, "
                                f"got {raw!r}") from None
            if not lo <= value <= hi or value != value:
                raise bad(name, f"must be in {lo}..{hi}, got {raw!r}")
            return value

        fmt_name = query.get("format", "jpeg")
        if fmt_name not in FORMATS:
            raise bad("format", f"must be one of {', '.join(FORMATS)}, got {fmt_name!r}")
        if "scale" in query and "max_width" in query:
            raise bad("scale", "and 'max_width' cannot be used together")
        quality = number("quality", int, 1, 100, 80)
        return cls(
            format=FORMATS[fmt_name],
            quality=min(100, max(QUALITY_STEP, round(quality / QUALITY_STEP) * QUALITY_STEP)),
            fps=number("fps", float, 0.1, 240, 0.0),
            scale=number("scale", float, 0.01, 1.0, 1.0),
            max_width=number("max_width", int, 16, 16384, 0),
        )

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The size of the image this viewer receives for a frame of width x height."""
        factor = self.scale
        if self.max_width and width > self.max_width:
            factor = self.max_width / width
        if factor >= 1.0:
            return width, height
        w = max(min(WIDTH_STEP, width), round(width * factor) // WIDTH_STEP * WIDTH_STEP)
        return w, max(1, round(height * w / width))

    def key(self, frame: Frame) -> EncodeKey:
        w, h = self.size(frame.width, frame.height)
        return self.format, self.quality if self.format is FrameFormat.JPEG else 0, w, h


@dataclass(slots=True)
class ViewerStats:
    sent: int = 0
    skipped: int = 0


async def send_frames(send: Callable[[bytes], Any], bc: Broadcaster, opts: FrameOptions, *,
                      framerate: float, stats: ViewerStats,
                      on_sent: Callable[[], None] | None = None) -> None:
    """Sends `bc`'s newest frames through `send` until the broadcaster closes.

    `send` awaits until the socket took the message, so a slow client simply finds a newer
    frame waiting the next time round; the frames it never got are counted in `skipped`.
    With `fps` below the page's framerate, frames arriving before the viewer's next slot are
    skipped too (the newest one at the slot is sent).
    """
    loop = asyncio.get_running_loop()
    interval = 1.0 / opts.fps if 0 < opts.fps < framerate else 0.0
    slack = interval * 0.25  # a paint a little early still counts for this slot
    next_due = 0.0
    last = bc.latest.sequence - 1 if bc.latest is not None else 0  # latest goes out at once
    while True:
        frame = await bc.next_frame(last)
        if frame is None:
            return
        if interval:
            now = loop.time()
            if now < next_due - slack:
                await asyncio.sleep(next_due - now)
                frame = bc.latest if not bc.closed else None
                if frame is None:
                    return
            next_due = max(next_due + interval, loop.time() - interval)
        if last and frame.sequence > last + 1:
            stats.skipped += frame.sequence - last - 1
        # aiohttp sends a bytearray as it is: no copy to make it bytes
        await send(cast(bytes, await bc.message(frame, opts.key(frame))))
        stats.sent += 1
        last = frame.sequence
        if on_sent is not None:
            on_sent()
