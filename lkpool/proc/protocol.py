"""The instance protocol: messages between the parent and one child, and their framing.

Pure: no sockets here. Both sides import it; `FrameReader` turns bytes into messages and
`encode` turns a message into bytes, so the framing is tested without any I/O.

Wire format of one message::

    u32 little-endian length of what follows | u8 message type | fields in declared order

Field encodings: int -> i64, float -> f64, bool -> u8, str -> u32 length + UTF-8,
bytes -> u32 length + raw, list[str] -> u32 count + str each, list[Rect] -> u32 count +
4 x i32 each. Frames never travel here: an `AcquirePaint` names a shared-memory buffer.

Every parent->child command but `ReleasePaint` and `ListenAudio` carries `req`, answered by one
`Result` with the same `req` (an empty `error` means success). Child->parent events carry no
`req`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, cast, dataclass_transform

Rect = tuple[int, int, int, int]  # x, y, width, height

MAX_MESSAGE_BYTES = 16 << 20
_HEADER = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_SCALARS = {"int": struct.Struct("<q"), "float": struct.Struct("<d"), "bool": struct.Struct("<?")}
_RECT = struct.Struct("<4i")


class ProtocolError(Exception):
    """Bytes that are not a valid message: a bug or a corrupted stream, never recoverable."""


class Message:
    TYPE: ClassVar[int]
    _codec: ClassVar[tuple[tuple[str, str], ...]]


MESSAGES: dict[int, type[Message]] = {}


@dataclass_transform()
def message[M: Message](type_id: int) -> Callable[[type[M]], type[M]]:
    """Registers a dataclass as a message with a wire type."""

    def deco(cls: type[M]) -> type[M]:
        cls = dataclass(slots=True)(cls)
        if type_id in MESSAGES:
            raise ValueError(f"message type {type_id} used twice")
        cls.TYPE = type_id
        cls._codec = tuple((f.name, str(f.type)) for f in fields(cast(Any, cls)))
        for _, kind in cls._codec:
            if kind not in _SCALARS and kind not in ("str", "bytes", "list[str]", "list[Rect]"):
                raise TypeError(f"{cls.__name__}: no wire encoding for {kind}")
        MESSAGES[type_id] = cls
        return cls

    return deco


# ---- parent -> child ---------------------------------------------------------------------

@message(1)
class CreatePage(Message):
    req: int
    page_id: int
    url: str
    width: int
    height: int
    framerate: int
    shm_names: list[str]


@message(2)
class ClosePage(Message):
    req: int
    page_id: int


@message(3)
class Navigate(Message):
    req: int
    page_id: int
    url: str


@message(4)
class GoBack(Message):
    req: int
    page_id: int


@message(5)
class GoForward(Message):
    req: int
    page_id: int


@message(6)
class Reload(Message):
    req: int
    page_id: int


@message(7)
class Resize(Message):
    """New size and a new pair of buffers; paints name the generation they were written to."""
    req: int
    page_id: int
    width: int
    height: int
    generation: int
    shm_names: list[str]


@message(8)
class SetFramerate(Message):
    req: int
    page_id: int
    framerate: int


@message(9)
class MouseMove(Message):
    req: int
    page_id: int
    x: int
    y: int
    mouse_leave: bool
    modifiers: int


@message(10)
class MouseClick(Message):
    """button: 0 left, 1 middle, 2 right (livekit.browser's numbering)."""
    req: int
    page_id: int
    x: int
    y: int
    button: int
    mouse_up: bool
    click_count: int
    modifiers: int


@message(11)
class MouseWheel(Message):
    req: int
    page_id: int
    x: int
    y: int
    delta_x: int
    delta_y: int
    modifiers: int


@message(12)
class KeyEvent(Message):
    """type: 0 raw key down, 1 key down, 2 key up, 3 char (CEF's cef_key_event_type_t)."""
    req: int
    page_id: int
    type: int
    modifiers: int
    windows_key_code: int
    native_key_code: int
    character: int
    key: str
    code: str
    text: str


@message(13)
class Focus(Message):
    req: int
    page_id: int
    set_focus: bool


@message(14)
class ReleasePaint(Message):
    page_id: int
    generation: int
    buffer_id: int


@message(15)
class Ping(Message):
    """Answered only after the child has checked that its browser still answers CDP."""
    req: int


@message(16)
class Evaluate(Message):
    """Runs JavaScript in the page; the Result's value is the JSON of what it returned."""
    req: int
    page_id: int
    expression: str


@message(17)
class Shutdown(Message):
    req: int


@message(18)
class HandleDialog(Message):
    """Answers the page's open alert/confirm/prompt/beforeunload dialog."""
    req: int
    page_id: int
    accept: bool
    prompt_text: str


@message(19)
class ListenAudio(Message):
    """Whether the parent has listeners for this page's audio. The child reads its sink's
    monitor only while some page has: a silent, unwatched instance then does no audio work
    (parec, PulseAudio's sink clock and 100 Audio messages a second cost an idle instance
    more than its browser). A switch, not a request: nothing to answer."""
    page_id: int
    on: bool


# ---- child -> parent ---------------------------------------------------------------------

@message(64)
class ContextReady(Message):
    debugging_port: int
    browser_pid: int
    capture: str
    display: str
    audio_sink: str
    version: str
    browser_path: str  # the browser target's WebSocket path, /devtools/browser/<id>
    # the sandbox whose network namespace DevTools listens in (forward.Namespace), or 0
    netns_pid: int
    netns_inode: int


@message(65)
class Result(Message):
    """code is a short machine-readable reason ("no_such_page", "navigation_failed", ...)."""
    req: int
    error: str
    code: str
    value: str


@message(66)
class AcquirePaint(Message):
    """The child wrote a frame into buffer `buffer_id` of `generation`; the parent must
    answer with ReleasePaint. `captured_ns` is CLOCK_MONOTONIC at the grab, `dropped` the
    page's running count of frames dropped because both buffers were held."""
    page_id: int
    generation: int
    buffer_id: int
    width: int
    height: int
    dirty_rects: list[Rect]
    captured_ns: int
    dropped: int


@message(67)
class Audio(Message):
    """Interleaved s16 PCM; pts in microseconds since the stream started."""
    page_id: int
    pts: int
    sample_rate: int
    channels: int
    samples_per_channel: int
    data: bytes


@message(68)
class UrlChanged(Message):
    page_id: int
    url: str


@message(69)
class TitleChanged(Message):
    page_id: int
    title: str


@message(70)
class CursorChanged(Message):
    page_id: int
    cursor: str


@message(71)
class PageClosed(Message):
    page_id: int
    reason: str


@message(73)
class DialogOpened(Message):
    """The page opened a JavaScript dialog and waits, its scripts paused, for an answer."""
    page_id: int
    kind: str  # alert, confirm, prompt, beforeunload
    message: str
    default_prompt: str


@message(74)
class DialogClosed(Message):
    page_id: int
    accepted: bool


@message(72)
class Fatal(Message):
    """The child is about to exit because its instance cannot go on (browser died, ...)."""
    reason: str
    detail: str


# ---- codec -------------------------------------------------------------------------------

def encode(msg: Message) -> bytes:
    parts: list[bytes] = []
    for name, kind in msg._codec:
        value = getattr(msg, name)
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            parts.append(scalar.pack(value))
        elif kind == "str":
            raw = value.encode("utf-8", "surrogatepass")
            parts += (_U32.pack(len(raw)), raw)
        elif kind == "bytes":
            parts += (_U32.pack(len(value)), bytes(value) if not isinstance(value, bytes)
                      else value)
        elif kind == "list[str]":
            parts.append(_U32.pack(len(value)))
            for item in value:
                raw = item.encode("utf-8", "surrogatepass")
                parts += (_U32.pack(len(raw)), raw)
        else:  # list[Rect]
            parts.append(_U32.pack(len(value)))
            parts += [_RECT.pack(*rect) for rect in value]
    body = b"".join(parts)
    if len(body) + 1 > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{type(msg).__name__} of {len(body)} bytes is over the limit")
    return _HEADER.pack(len(body) + 1, msg.TYPE) + body


def decode(type_id: int, body: memoryview) -> Message:
    cls = MESSAGES.get(type_id)
    if cls is None:
        raise ProtocolError(f"unknown message type {type_id}")
    values: list[Any] = []
    pos = 0
    try:
        for _, kind in cls._codec:
            scalar = _SCALARS.get(kind)
            if scalar is not None:
                values.append(scalar.unpack_from(body, pos)[0])
                pos += scalar.size
            elif kind in ("str", "bytes"):
                (n,) = _U32.unpack_from(body, pos)
                pos += 4
                raw = body[pos:pos + n]
                if len(raw) != n:
                    raise ProtocolError("truncated field")
                values.append(bytes(raw).decode("utf-8", "surrogatepass") if kind == "str"
                              else bytes(raw))
                pos += n
            elif kind == "list[str]":
                (count,) = _U32.unpack_from(body, pos)
                pos += 4
                items = []
                for _ in range(count):
                    (n,) = _U32.unpack_from(body, pos)
                    pos += 4
                    items.append(bytes(body[pos:pos + n]).decode("utf-8", "surrogatepass"))
                    pos += n
                values.append(items)
            else:
                (count,) = _U32.unpack_from(body, pos)
                pos += 4
                rects = []
                for _ in range(count):
                    rects.append(_RECT.unpack_from(body, pos))
                    pos += _RECT.size
                values.append(rects)
    except struct.error as exc:
        raise ProtocolError(f"truncated {cls.__name__}") from exc
    if pos != len(body):
        raise ProtocolError(f"{len(body) - pos} stray bytes after {cls.__name__}")
    return cls(*values)


class FrameReader:
    """Accumulates received bytes and yields whole messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        pos = 0
        view = memoryview(self._buf)
        try:
            while len(self._buf) - pos >= _HEADER.size:
                length, type_id = _HEADER.unpack_from(self._buf, pos)
                if length < 1 or length > MAX_MESSAGE_BYTES:
                    raise ProtocolError(f"message length {length} out of range")
                end = pos + 4 + length
                if len(self._buf) < end:
                    break
                out.append(decode(type_id, view[pos + _HEADER.size:end]))
                pos = end
        finally:
            view.release()
        if pos:
            del self._buf[:pos]
        return out
