"""A page's value objects and checks, shared by both engines' pages (page.py, cef.py): the
paint and audio data livekit.browser's pages emit, its `_opts`, a JavaScript dialog, the
size and framerate limits, and the current frame handed to a new `paint` listener."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from livekit import rtc

from .config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH
from .errors import InvalidArgument


@dataclass
class PaintData:
    dirty_rects: list[tuple[int, int, int, int]]
    frame: rtc.VideoFrame
    width: int
    height: int
    captured_ns: int = 0  # CLOCK_MONOTONIC when the child grabbed the frame


@dataclass(frozen=True)
class PageOptions:
    """livekit.browser's `_PageOptions`: the fields its `BrowserPage._opts` has."""
    page_id: int
    url: str
    width: int
    height: int
    framerate: int


@dataclass(frozen=True)
class Dialog:
    """A JavaScript dialog the page opened: its scripts are paused until it is answered
    (`BrowserPage.handle_dialog`)."""
    kind: str  # alert, confirm, prompt, beforeunload
    message: str
    default_prompt: str = ""


@dataclass
class AudioData:
    frame: rtc.AudioFrame
    pts: int


def replay_paint(page: Any, cb_id: int) -> None:
    """Schedules the page's current frame, whole, for one new `paint` listener."""
    def replay() -> None:
        frame = page.last_frame
        if frame is not None and not page.closed:
            page._emit_to("paint", cb_id, PaintData(dirty_rects=[], frame=frame,
                                                    width=frame.width, height=frame.height))
    if page.last_frame is not None:
        asyncio.get_running_loop().call_soon(replay)


def check_size(width: int, height: int) -> None:
    for name, value, limit in (("width", width, MAX_WIDTH), ("height", height, MAX_HEIGHT)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise InvalidArgument(f"{name} must be an integer in 1..{limit}, got {value!r}")


def check_framerate(framerate: int) -> None:
    if (not isinstance(framerate, int) or isinstance(framerate, bool)
            or not 1 <= framerate <= MAX_FRAMERATE):
        raise InvalidArgument(f"framerate must be an integer in 1..{MAX_FRAMERATE}, "
                              f"got {framerate!r}")
