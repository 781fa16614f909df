"""Running a checked batch on a page: with the page's focus (as the agent), in order, then
until the page showed what it did (`Settling`), and the screenshot an agent gets back,
encoded from the page's own current frame (the native BGRA frame the pool already has,
not a CDP capture).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from ..errors import FocusHeld, InvalidArgument
from ..focus import Focus
from ..images import ImageFormat, encode
from .actions import Cursor, Point, Step

SETTLE_MAX = 1.0  # seconds a page may keep painting before its screenshot is taken anyway
# resolves once the page has produced the frame after the one holding what came before it
DRAWN = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(0))))"


def take_focus(page: Any) -> None:
    """The agent acts only with the page's focus; FocusHeld (the agent was interrupted)
    when a person has it."""
    focus = Focus.of(page)
    if not focus.take_for_agent():
        raise FocusHeld(f"{focus.holder} has the focus of this page: the agent was "
                        "interrupted; it may act again once they release it")


async def run(page: Any, steps: list[Step]) -> Point:
    """Applies the steps in order, then waits until the page settled; returns the cursor."""
    cursor = Cursor.of(page)
    if not steps:
        return cursor.x, cursor.y
    async with Settling(page) as settling:
        for step in steps:
            await step.apply(page, cursor)
        await page.input_handled()
        await settling.wait()
    return cursor.x, cursor.y


class Settling:
    """Watches a page's frames while input is applied, then waits until the page showed
    what the input did (`wait`):

    - a frame grabbed after the input was handled, and then one frame period with no newer
      one: Chromium draws the change at its next frame and the grab follows that frame's
      damage, but a grab of earlier damage (the focus ring a mouse press drew before its
      click's handler ran) may arrive first, which alone showed the page before the click
      (CI, twice);
    - a page that paints nothing (the input changed nothing on screen) is left two frame
      periods after the page has drawn its next frames (two animation frames: counted from
      the input alone, a loaded machine's late grab was taken for "nothing changed" and
      the screenshot showed the page before the input), one that never stops painting
      after `max_wait`.
    Transitions that run longer are the agent's to wait for (the `wait` action)."""

    def __init__(self, page: Any, *, max_wait: float = SETTLE_MAX) -> None:
        self.page = page
        self.max_wait = max_wait
        self.period = 1.0 / max(page.framerate, 1)
        self._paints: list[int] = []  # captured_ns of the last few frames
        self._cb: int | None = None

    async def __aenter__(self) -> Settling:
        self._cb = self.page.on("paint", self._painted)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._cb is not None:
            self.page.off(self._cb)

    def _painted(self, data: Any) -> None:
        captured = getattr(data, "captured_ns", 0)
        if captured:  # 0: the current frame handed to a new listener, not a new one
            self._paints.append(captured)
            del self._paints[:-4]

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        handled = time.monotonic_ns()  # the clock of PaintData.captured_ns
        start = loop.time()
        with contextlib.suppress(Exception):  # a page held by a dialog draws nothing: bounded
            await asyncio.wait_for(self.page.evaluate(DRAWN), self.max_wait)
        drawn = loop.time()
        while loop.time() < start + self.max_wait:
            after = [t for t in self._paints if t >= handled]
            if not after:
                if loop.time() - drawn >= 2 * self.period:
                    return  # nothing changed on screen
            elif (time.monotonic_ns() - after[-1]) / 1e9 >= self.period:
                return
            await asyncio.sleep(0.004)


@dataclass(frozen=True)
class Screenshot:
    media_type: str
    data: bytes
    width: int
    height: int

    def as_json(self) -> dict[str, Any]:
        import base64

        return {"media_type": self.media_type, "data": base64.b64encode(self.data).decode(),
                "width": self.width, "height": self.height}


async def screenshot(page: Any, fmt: ImageFormat = "png", *, scale: float = 1.0,
                     quality: int = 80, settle: bool = True) -> Screenshot:
    """The page's current frame, encoded (off the event loop), optionally scaled down;
    `settle`: first until the page has drawn what it shows now (a page just navigated
    paints its first frame after its load event)."""
    if settle:
        async with Settling(page) as settling:
            await settling.wait()
    frame = page.last_frame
    if frame is None:
        raise InvalidArgument("the page has painted no frame yet")
    # the frame is reused in place by the next paint: copy it here, encode in a thread
    width, height, pixels = frame.width, frame.height, bytes(frame.data)
    data, w, h = await asyncio.to_thread(encode, pixels, width, height, fmt, scale=scale,
                                         quality=quality)
    return Screenshot(f"image/{fmt}", data, w, h)
