"""Two shared-memory frame buffers per page: BGRA, written by the child, read by the parent.

Ownership: the parent creates the segments (`FrameBuffers`) and is the only one that unlinks
them: when the page closes, is resized, when the context closes, and when the child dies.
Python's resource tracker also holds the parent's names, so even a parent killed with
SIGKILL leaves nothing behind. The child maps them by name (`ChildFrameBuffers`) without
registering them anywhere.

Flow control lives in `ChildFrameBuffers`: a buffer may be written only after the parent
released it; when both are held the frame is dropped and counted, never queued.
"""

from __future__ import annotations

import _posixshmem  # the primitive under multiprocessing.shared_memory, without its tracker
import mmap
import os
import secrets
from collections.abc import Sequence
from multiprocessing import shared_memory
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NUM_BUFFERS = 2
BYTES_PER_PIXEL = 4
SHM_PREFIX = "lkpool_"

Rect = tuple[int, int, int, int]


def segment_name(owner_pid: int | None = None) -> str:
    """Names carry the owner's pid so a leak check can tell whose segment it is."""
    return f"{SHM_PREFIX}{owner_pid or os.getpid()}_{secrets.token_hex(6)}"


def frame_bytes(width: int, height: int) -> int:
    return width * height * BYTES_PER_PIXEL


class FrameBuffers:
    """The parent's side: creates, reads and unlinks one page's buffer pair."""

    def __init__(self, width: int, height: int, generation: int = 0) -> None:
        self.width = width
        self.height = height
        self.generation = generation
        self._owner = os.getpid()
        size = frame_bytes(width, height)
        self._segments: list[shared_memory.SharedMemory] = []
        try:
            for _ in range(NUM_BUFFERS):
                self._segments.append(
                    shared_memory.SharedMemory(name=segment_name(), create=True, size=size)
                )
        except BaseException:
            self.close()
            raise
        self.names = [s.name for s in self._segments]
        # a segment has a buffer until it is closed, which only close() does
        self._arrays = [_view(s.buf, width, height) for s in self._segments]  # type: ignore[arg-type]

    def array(self, buffer_id: int) -> np.ndarray:
        """A (height, width, 4) view onto one buffer; valid until `close`."""
        return self._arrays[buffer_id]

    def close(self) -> None:
        """Unmaps and unlinks; safe to call twice, a no-op in a process that does not own it."""
        if os.getpid() != self._owner:
            return
        self._arrays = []
        segments, self._segments = self._segments, []
        for seg in segments:
            try:
                seg.close()
            except BufferError:
                pass  # a view is still exported; the mapping goes with the process
            try:
                seg.unlink()
            except FileNotFoundError:
                pass


class ChildFrameBuffers:
    """The child's side: maps the parent's buffers and decides which one a frame may use."""

    def __init__(self, names: Sequence[str], width: int, height: int, generation: int = 0):
        if len(names) != NUM_BUFFERS:
            raise ValueError(f"expected {NUM_BUFFERS} buffers, got {len(names)}")
        self.width = width
        self.height = height
        self.generation = generation
        self.dropped = 0
        size = frame_bytes(width, height)
        self._maps: list[mmap.mmap] = []
        for name in names:
            fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
            try:
                if os.fstat(fd).st_size < size:
                    raise ValueError(f"segment {name} is smaller than {width}x{height}")
                self._maps.append(mmap.mmap(fd, size))
            finally:
                os.close(fd)
        self._arrays: list[np.ndarray] = []  # made on first use: see `array`
        self._held = [False] * NUM_BUFFERS
        self._next = 0

    def acquire(self) -> int | None:
        """A free buffer to write the next frame into, or None (the frame is dropped)."""
        for i in range(NUM_BUFFERS):
            idx = (self._next + i) % NUM_BUFFERS
            if not self._held[idx]:
                self._held[idx] = True
                self._next = (idx + 1) % NUM_BUFFERS
                return idx
        self.dropped += 1
        return None

    def array(self, buffer_id: int) -> np.ndarray:
        """Only the screencast capture writes through numpy; the x11 grab writes from the X
        server, and a child that never imports numpy is 6 MB smaller."""
        if not self._arrays:
            self._arrays = [_view(m, self.width, self.height) for m in self._maps]
        return self._arrays[buffer_id]

    def release(self, buffer_id: int) -> None:
        if 0 <= buffer_id < NUM_BUFFERS:
            self._held[buffer_id] = False

    @property
    def busy(self) -> bool:
        return all(self._held)

    def close(self) -> None:
        self._arrays = []
        maps, self._maps = self._maps, []
        for m in maps:
            try:
                m.close()
            except BufferError:
                pass


def _view(buffer: memoryview | mmap.mmap, width: int, height: int) -> np.ndarray:
    import numpy as np  # here, not at the top: see ChildFrameBuffers.array

    return np.ndarray((height, width, BYTES_PER_PIXEL), np.uint8, buffer=buffer)


def copy_rects(src: np.ndarray, dst: np.ndarray, rects: Sequence[Rect]) -> None:
    """Copies the dirty rects of `src` into `dst` (same shape); no rects means the whole frame."""
    if not rects:
        dst[...] = src
        return
    h, w = src.shape[:2]
    for x, y, rw, rh in rects:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(w, x + rw), min(h, y + rh)
        if x1 > x0 and y1 > y0:
            dst[y0:y1, x0:x1] = src[y0:y1, x0:x1]
