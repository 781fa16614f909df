"""Drives one child process directly over the duplex, without lkpool.context: a socketpair,
a Channel, FrameBuffers made here (this process owns and unlinks them), and a reader task
that answers AcquirePaint with ReleasePaint after copying the frame.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import socket
import tempfile
from dataclasses import dataclass, field

import numpy as np

from lkpool import profiles
from lkpool.config import Settings
from lkpool.proc import protocol as p
from lkpool.proc.channel import Channel, ChannelClosed
from lkpool.proc.main import run
from lkpool.shm.framebuffer import FrameBuffers


@dataclass
class PageFrames:
    buffers: FrameBuffers
    last: np.ndarray | None = None
    count: int = 0
    dropped: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    new_frame: asyncio.Event = field(default_factory=asyncio.Event)


class ChildHarness:
    """`async with ChildHarness(settings) as h:`; h.events holds every non-Result message."""

    def __init__(self, settings: Settings, *, keep_frames: bool = True) -> None:
        self.settings = settings
        self.keep_frames = keep_frames
        self.profile_dir = tempfile.mkdtemp(prefix="inst-", dir=settings.chromium_profile_base_dir)
        self.events: list[p.Message] = []
        self.event_added = asyncio.Event()
        self.audio: list[p.Audio] = []
        self.frames: dict[int, PageFrames] = {}
        self.ready: p.ContextReady | None = None
        self.fatal: p.Fatal | None = None
        self._reqs = itertools.count(1)
        self._page_ids = itertools.count(1)
        self._results: dict[int, asyncio.Future] = {}
        parent_sock, child_sock = socket.socketpair()
        self.proc = multiprocessing.get_context("spawn").Process(
            target=run, args=(child_sock, settings, self.profile_dir, 0), daemon=False)
        self.proc.start()
        self.pid = self.proc.pid  # also its process group
        self.exitcode: int | None = None
        child_sock.close()
        self._sock = parent_sock
        self.channel: Channel | None = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> ChildHarness:
        try:
            self.channel = await Channel.open(self._sock)
            self._reader = asyncio.get_running_loop().create_task(self._read())
            await self.wait_for(lambda m: isinstance(m, (p.ContextReady, p.Fatal)), 60)
            if self.ready is None:
                raise RuntimeError(f"child did not start: {self.fatal}")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _read(self) -> None:
        assert self.channel is not None
        try:
            while True:
                msg = await self.channel.recv()
                if isinstance(msg, p.Result):
                    fut = self._results.pop(msg.req, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                if isinstance(msg, p.AcquirePaint):
                    self._on_paint(msg)
                    continue
                if isinstance(msg, p.Audio):
                    self.audio.append(msg)
                    del self.audio[:-500]  # the last 5 s are enough for any test
                    continue
                if isinstance(msg, p.ContextReady):
                    self.ready = msg
                if isinstance(msg, p.Fatal):
                    self.fatal = msg
                self.events.append(msg)
                self.event_added.set()
        except ChannelClosed:
            pass
        finally:
            for fut in self._results.values():
                if not fut.done():
                    fut.set_exception(ChannelClosed("child closed the duplex"))
            self.events.append(p.PageClosed(-1, "duplex closed"))
            self.event_added.set()

    def _on_paint(self, msg: p.AcquirePaint) -> None:
        import time
        pf = self.frames.get(msg.page_id)
        if pf is not None and pf.buffers.generation == msg.generation:
            pf.latencies_ns.append(time.monotonic_ns() - msg.captured_ns)
            if self.keep_frames:
                pf.last = pf.buffers.array(msg.buffer_id).copy()
            pf.count += 1
            pf.dropped = msg.dropped
            pf.new_frame.set()
        self.send(p.ReleasePaint(msg.page_id, msg.generation, msg.buffer_id))

    def send(self, msg: p.Message) -> None:
        assert self.channel is not None
        self.channel.send(msg)

    async def request(self, cls: type, *args, timeout: float = 30.0) -> p.Result:
        req = next(self._reqs)
        fut = asyncio.get_running_loop().create_future()
        self._results[req] = fut
        self.send(cls(req, *args))
        return await asyncio.wait_for(fut, timeout)

    async def wait_for(self, pred, timeout: float = 20.0) -> p.Message:
        """The first event (past or future) matching `pred`."""
        async def scan() -> p.Message:
            seen = 0
            while True:
                for msg in self.events[seen:]:
                    if pred(msg):
                        return msg
                seen = len(self.events)
                self.event_added.clear()
                await self.event_added.wait()
        return await asyncio.wait_for(scan(), timeout)

    async def new_page(self, url: str, width: int = 320, height: int = 240,
                       framerate: int = 30) -> int:
        page_id = next(self._page_ids)
        buffers = FrameBuffers(width, height)
        self.frames[page_id] = PageFrames(buffers)
        res = await self.request(p.CreatePage, page_id, url, width, height, framerate,
                                 buffers.names)
        if res.error:
            self.frames.pop(page_id).buffers.close()
            raise RuntimeError(f"{res.code}: {res.error}")
        return page_id

    async def resize(self, page_id: int, width: int, height: int) -> p.Result:
        pf = self.frames[page_id]
        new = FrameBuffers(width, height, generation=pf.buffers.generation + 1)
        res = await self.request(p.Resize, page_id, width, height, new.generation, new.names)
        if res.error:
            new.close()
        else:
            old, pf.buffers = pf.buffers, new
            pf.last = None
            old.close()
        return res

    async def frame_where(self, page_id: int, pred, timeout: float = 20.0) -> np.ndarray:
        """The latest frame if its pixels satisfy `pred`, else the first one that will."""
        pf = self.frames[page_id]

        async def wait() -> np.ndarray:
            while True:
                if pf.last is not None and pred(pf.last):
                    return pf.last
                pf.new_frame.clear()
                await pf.new_frame.wait()
        return await asyncio.wait_for(wait(), timeout)

    async def wait_exit(self, timeout: float = 15.0) -> int | None:
        if self.exitcode is None:
            await asyncio.get_running_loop().run_in_executor(None, self.proc.join, timeout)
            self.exitcode = self.proc.exitcode
        return self.exitcode

    async def aclose(self) -> None:
        if self.exitcode is None:
            if self.channel is not None and not self.channel.closed:
                try:
                    await self.request(p.Shutdown, timeout=10)
                except (ChannelClosed, TimeoutError):
                    pass
            await self.wait_exit(15)
        if self.exitcode is None:
            self.proc.kill()
            await self.wait_exit(5)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except BaseException:
                pass
        self._release()

    def _release(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self._sock.close()
        if self.exitcode is not None:
            self.proc.close()  # its sentinel pipe
        for pf in self.frames.values():
            pf.buffers.close()
        self.frames.clear()
        profiles.remove(self.profile_dir)  # and Chromium's singleton folder in /tmp


def color_of(frame: np.ndarray) -> tuple[int, int, int]:
    """Median BGR of a frame, as (r, g, b)."""
    med = np.median(frame[..., :3].reshape(-1, 3), axis=0)
    return int(med[2]), int(med[1]), int(med[0])


def close_to(rgb: tuple[int, int, int], want: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=False))


assert os.name == "posix"
