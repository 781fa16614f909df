"""Shared-memory frame buffers: sizing, flow control, dirty rects and ownership."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from lkpool.shm.framebuffer import ChildFrameBuffers, FrameBuffers, copy_rects, frame_bytes


def test_segments_sized_to_page_and_unlinked() -> None:
    """Buffers are sized to the page, not to 4K, and close unlinks them (twice is fine)."""
    fb = FrameBuffers(320, 240)
    for name in fb.names:
        assert Path("/dev/shm", name).stat().st_size == frame_bytes(320, 240)
    fb.close()
    fb.close()
    assert not any(Path("/dev/shm", n).exists() for n in fb.names)


def test_child_drops_when_both_buffers_held() -> None:
    """The third frame with both buffers held is dropped and counted, not queued."""
    fb = FrameBuffers(8, 8)
    child = ChildFrameBuffers(fb.names, 8, 8)
    try:
        a, b = child.acquire(), child.acquire()
        assert {a, b} == {0, 1}
        assert child.acquire() is None and child.dropped == 1
        child.release(a)
        assert child.acquire() == a
        assert child.dropped == 1
    finally:
        child.close()
        fb.close()


def _writer(names: list[str], w: int, h: int) -> None:
    child = ChildFrameBuffers(names, w, h)
    idx = child.acquire()
    child.array(idx)[:] = (10, 20, 30, 255)
    child.close()


def test_child_process_writes_parent_reads() -> None:
    """A spawned child writes BGRA pixels the parent sees through its own mapping."""
    fb = FrameBuffers(16, 4)
    try:
        proc = mp.get_context("spawn").Process(target=_writer, args=(fb.names, 16, 4))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        assert fb.array(0)[2, 3].tolist() == [10, 20, 30, 255]
    finally:
        fb.close()
    # the child's exit did not unlink the parent's segments early (no tracker in the child)
    assert not any(Path("/dev/shm", n).exists() for n in fb.names)


def test_copy_rects_copies_only_dirty_regions() -> None:
    """Only the dirty rects change in the destination; no rects copies everything."""
    src = np.full((10, 10, 4), 7, np.uint8)
    dst = np.zeros_like(src)
    copy_rects(src, dst, [(2, 3, 4, 2), (8, 8, 5, 5)])
    assert dst[3:5, 2:6].min() == 7 and dst[8:, 8:].min() == 7
    assert dst.sum() == 7 * 4 * (4 * 2 + 2 * 2)
    copy_rects(src, dst, [])
    assert (dst == 7).all()


def test_attach_to_smaller_segment_fails() -> None:
    """Mapping a segment as a bigger frame than it holds is refused."""
    fb = FrameBuffers(4, 4)
    try:
        with pytest.raises(ValueError, match="smaller"):
            ChildFrameBuffers(fb.names, 8, 8)
    finally:
        fb.close()
