"""The CDP screencast frame source: `Page.startScreencast` JPEGs, decoded by simplejpeg into
the page's buffer and acked; Chromium only sends frames when something changed. Costly
(decode, JPEG round trip): the fallback where Xvfb is missing, and for a page larger than
the X screen can show (see capture.py for the x11 source and what both share).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

from ..tasks import spawn
from .capture import FrameOut, _Pacer

logger = logging.getLogger(__name__)

START_RETRY = 5.0  # seconds a screencast start is retried while the tab has no page yet


class ScreencastCapture:
    def __init__(self, out: FrameOut, framerate: int, *, page, **_: object) -> None:
        self.out = out
        self.page = page
        self._latest: tuple[bytes, int] | None = None
        self._listener = page.cdp.on("Page.screencastFrame", self._on_frame)
        self._pacer = _Pacer(framerate, self._tick, f"screencast-{out.page_id}")
        self._tasks: set[asyncio.Task] = set()
        self._spawn(self._start())

    def _spawn(self, coro) -> None:
        spawn(coro, into=self._tasks, log=logger)

    async def _start(self) -> None:
        """A tab still committing its start-up about:blank (a warm page, made before any
        lease) refuses with "Not attached to an active page": that is retried until the
        tab has a page, for up to START_RETRY seconds."""
        w, h = self.out.size
        params = {"format": "jpeg", "quality": 80, "maxWidth": w, "maxHeight": h,
                  "everyNthFrame": 1}
        delay, waited = 0.02, 0.0
        while True:
            try:
                await self.page.call("Page.startScreencast", params)
                return
            except Exception as exc:
                if self.page.closed or waited >= START_RETRY:
                    logger.warning("page %d: screencast did not start: %s",
                                   self.out.page_id, exc)
                    return
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    def _on_frame(self, params: dict, session_id: str | None) -> None:
        if session_id != self.page.session:
            return
        self._spawn(self._ack(params["sessionId"]))
        ts = params.get("metadata", {}).get("timestamp")
        now = time.monotonic_ns()
        captured = now - int(max(0.0, time.time() - ts) * 1e9) if ts else now
        self._latest = (base64.b64decode(params["data"]), captured)
        self._pacer.wake()

    async def _ack(self, frame_session: int) -> None:
        try:
            await self.page.call("Page.screencastFrameAck", {"sessionId": frame_session})
        except Exception:
            pass

    def _tick(self) -> bool:
        if self._latest is None:
            return True
        idx = self.out.buffers.acquire()
        if idx is None:
            return False
        data, captured = self._latest
        self._latest = None
        # numpy and simplejpeg load here, not with the module: an x11 child never needs them
        # and they weigh 6 MB on each instance (bench/density.py)
        import numpy as np
        import simplejpeg

        dst = self.out.buffers.array(idx)
        h, w = dst.shape[:2]
        jw, jh = simplejpeg.decode_jpeg_header(data)[:2][::-1]
        if (jw, jh) == (w, h):
            simplejpeg.decode_jpeg(data, colorspace="BGRA", buffer=dst)
        else:  # the frame lags a resize, or Chromium scaled it: nearest-neighbour fit
            img = simplejpeg.decode_jpeg(data, colorspace="BGRA")
            ys = np.arange(h) * img.shape[0] // h
            xs = np.arange(w) * img.shape[1] // w
            dst[:] = img[ys[:, None], xs[None, :]]
        self.out.publish(idx, [], captured)
        return True

    def switch(self, out: FrameOut) -> None:
        self.out = out
        self._latest = None
        self._spawn(self._restart())

    async def _restart(self) -> None:
        try:
            await self.page.call("Page.stopScreencast")
        except Exception:
            pass
        await self._start()

    def set_framerate(self, fps: int) -> None:
        self._pacer.period = 1.0 / fps

    async def aclose(self) -> None:
        self.page.cdp.off(self._listener)
        await self._pacer.stop()
        if not self.page.closed:
            try:
                await self.page.call("Page.stopScreencast", timeout=2.0)
            except Exception:
                pass
        for task in list(self._tasks):
            task.cancel()
