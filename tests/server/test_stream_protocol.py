"""Pure parts of the frames and input streams: header, query options, event validation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import simplejpeg

from lkpool.errors import InvalidArgument
from lkpool.server import inputs
from lkpool.server.frames import ENCODERS, Frame, FrameOptions, Recycler
from lkpool.server.header import HEADER_SIZE, FrameFormat, FrameHeader, HeaderError

PAGE = SimpleNamespace(width=320, height=240)  # only the size is read while validating


def test_header_round_trip() -> None:
    """A packed header unpacks to the same fields, and the payload view starts after it."""
    h = FrameHeader(FrameFormat.JPEG, 1280, 720, 2**40 + 3, 1_700_000_000_123_456_789,
                    1_700_000_000_223_456_789)
    data = h.pack() + b"payload"
    assert len(h.pack()) == HEADER_SIZE == 48
    back, payload = FrameHeader.unpack(data)
    assert back == h
    assert bytes(payload) == b"payload"


@pytest.mark.parametrize("data", [b"LKPF", b"XXXX" + bytes(60),
                                  FrameHeader(FrameFormat.RAW, 1, 1, 1, 1, 1).pack()[:5]
                                  + b"\x09" + bytes(60)])
def test_header_rejects_garbage(data: bytes) -> None:
    """Short messages, a wrong magic or an unknown format raise HeaderError."""
    with pytest.raises(HeaderError):
        FrameHeader.unpack(data)


def test_options_defaults_and_sizes() -> None:
    """Defaults are JPEG q80 at the page's rate; scale and max_width shrink the size."""
    opts = FrameOptions.parse({})
    assert (opts.format, opts.quality, opts.fps) == (FrameFormat.JPEG, 80, 0.0)
    assert opts.size(1280, 720) == (1280, 720)
    assert FrameOptions.parse({"scale": "0.5"}).size(1280, 720) == (640, 360)
    assert FrameOptions.parse({"max_width": "320"}).size(1280, 720) == (320, 180)
    assert FrameOptions.parse({"max_width": "4000"}).size(1280, 720) == (1280, 720)
    assert FrameOptions.parse({"format": "raw", "token": "x"}).format is FrameFormat.RAW


@pytest.mark.parametrize("query, name", [
    ({"format": "png"}, "format"), ({"quality": "0"}, "quality"), ({"quality": "x"}, "quality"),
    ({"fps": "-1"}, "fps"), ({"fps": "nan"}, "fps"), ({"scale": "2"}, "scale"),
    ({"scale": "0.5", "max_width": "100"}, "scale"), ({"max_width": "3"}, "max_width"),
    ({"bogus": "1"}, "bogus"),
])
def test_options_reject_bad_query(query: dict, name: str) -> None:
    """Each bad query parameter raises InvalidArgument (400) naming it."""
    with pytest.raises(InvalidArgument, match=repr(name)):
        FrameOptions.parse(query)


def test_encoders_scale_and_jpeg() -> None:
    """Raw scaling keeps BGRA pixels; the JPEG decodes back to the frame's colour and size."""
    arr = np.zeros((240, 320, 4), np.uint8)
    arr[..., 0], arr[..., 2], arr[..., 3] = 200, 30, 255  # blue-ish in BGRA
    frame = Frame(1, 320, 240, 0, arr.tobytes())
    raw = ENCODERS[FrameFormat.RAW](frame, 0, 160, 120)
    small = np.frombuffer(raw, np.uint8).reshape(120, 160, 4)
    assert (small[..., 0] == 200).all() and (small[..., 2] == 30).all()
    jpeg = ENCODERS[FrameFormat.JPEG](frame, 90, 160, 120)
    rgb = simplejpeg.decode_jpeg(jpeg)
    assert rgb.shape == (120, 160, 3)
    assert abs(int(rgb[100, 100, 2]) - 200) < 8 and abs(int(rgb[100, 100, 0]) - 30) < 8


@pytest.mark.parametrize("event", [
    {"type": "mouse", "action": "move", "x": 1, "y": 2},
    {"type": "mouse", "action": "click", "x": 319, "y": 239, "button": "right", "clicks": 2},
    {"type": "mouse", "action": "wheel", "x": 5, "y": 5, "dy": -120},
    {"type": "key", "action": "press", "key": "Control+a"},
    {"type": "key", "action": "down", "key": "Shift"},
    {"type": "text", "text": "héllo", "id": 3},
    {"type": "navigate", "url": "http://127.0.0.1/"},
    {"type": "back"}, {"type": "forward"}, {"type": "reload"},
    {"type": "resize", "width": 640, "height": 480},
])
def test_valid_events_parse(event: dict) -> None:
    """Well-formed events of every type are accepted."""
    assert callable(inputs.parse(event, PAGE))


@pytest.mark.parametrize("event, field", [
    ([], None), ({"type": "fly"}, "type"), ({"action": "move"}, "type"),
    ({"type": "mouse", "action": "jump", "x": 1, "y": 1}, "action"),
    ({"type": "mouse", "action": "move", "y": 1}, "x"),
    ({"type": "mouse", "action": "move", "x": 320, "y": 1}, "x"),
    ({"type": "mouse", "action": "move", "x": "1", "y": 1}, "x"),
    ({"type": "mouse", "action": "move", "x": True, "y": 1}, "x"),
    ({"type": "mouse", "action": "click", "x": 1, "y": 1, "button": "side"}, "button"),
    ({"type": "mouse", "action": "click", "x": 1, "y": 1, "clicks": 1.5}, "clicks"),
    ({"type": "mouse", "action": "move", "x": 1, "y": 1, "dx": 3}, "dx"),
    ({"type": "key", "key": "Hyper+q"}, "key"), ({"type": "key", "key": "NoSuchKey"}, "key"),
    ({"type": "key", "action": "tap", "key": "a"}, "action"),
    ({"type": "text"}, "text"), ({"type": "text", "text": "x" * 10_001}, "text"),
    ({"type": "navigate", "url": "file:///etc/passwd"}, "url"),
    ({"type": "navigate", "url": "javascript:alert(1)"}, "url"),
    ({"type": "back", "steps": 2}, "steps"),
    ({"type": "resize", "width": 0, "height": 10}, "width"),
    ({"type": "text", "text": "a", "id": [1]}, "id"),
])
def test_bad_events_name_the_field(event: object, field: str | None) -> None:
    """Every bad event raises InvalidEvent naming the offending field."""
    with pytest.raises(inputs.InvalidEvent) as info:
        inputs.parse(event, PAGE)
    assert info.value.field == field
    msg = inputs.error_message(info.value, event)
    assert msg["type"] == "error" and msg["error"] == "invalid_argument"
    assert msg["field"] == field and msg["detail"]


def test_recycler_reuses_only_buffers_nobody_holds() -> None:
    """A frame buffer comes back only when no memoryview, frame or other holder is left:
    reusing one still being sent would change a frame on the wire."""
    recycler = Recycler()
    first = recycler.take(64)
    view = memoryview(first)[8:]  # as a Frame's `data`, or a transport's pending write
    first_id = id(first)
    del first
    second = recycler.take(64)
    assert id(second) != first_id
    del second
    assert recycler.take(128) is not None  # another size is never a held buffer either
    view.release()
    del view
    assert id(recycler.take(64)) == first_id
