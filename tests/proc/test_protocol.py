"""The instance protocol round-trips every message and rejects broken streams."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from lkpool.proc import protocol as p

SAMPLES = {
    "int": -(2**40) + 7,
    "float": 1.5,
    "bool": True,
    "str": "héllo ✓ \U0001f600",
    "bytes": bytes(range(256)) * 3,
    "list[str]": ["lkpool_1_a", "lkpool_1_b", ""],
    "list[Rect]": [(0, 0, 1920, 1080), (-1, 2, 3, 4)],
}


def sample(cls: type[p.Message]) -> p.Message:
    return cls(**{name: SAMPLES[kind] for name, kind in cls._codec})


@pytest.mark.parametrize("cls", list(p.MESSAGES.values()), ids=lambda c: c.__name__)
def test_round_trip_every_message(cls: type[p.Message]) -> None:
    """Each message type decodes to an equal message, fed whole or byte by byte."""
    msg = sample(cls)
    wire = p.encode(msg)
    assert p.FrameReader().feed(wire) == [msg]
    reader = p.FrameReader()
    got = []
    for i in range(len(wire)):
        got += reader.feed(wire[i:i + 1])
    assert got == [msg]


def test_many_messages_in_one_read() -> None:
    """Several messages arriving in one chunk come out in order."""
    msgs = [p.Ping(req=i) for i in range(50)] + [sample(p.AcquirePaint)]
    assert p.FrameReader().feed(b"".join(p.encode(m) for m in msgs)) == msgs


def test_empty_collections_round_trip() -> None:
    """Empty strings, bytes and lists survive."""
    msg = p.AcquirePaint(page_id=1, generation=0, buffer_id=1, width=2, height=3,
                         dirty_rects=[], captured_ns=0, dropped=0)
    assert p.FrameReader().feed(p.encode(msg)) == [msg]


def test_unknown_type_is_rejected() -> None:
    """A message type nobody registered is a protocol error."""
    with pytest.raises(p.ProtocolError, match="unknown message type"):
        p.FrameReader().feed(struct.pack("<IB", 1, 250))


def test_truncated_and_stray_bytes_are_rejected() -> None:
    """A body shorter or longer than its fields is a protocol error."""
    wire = p.encode(p.Navigate(req=1, page_id=2, url="http://x"))
    short = struct.pack("<I", len(wire) - 4 - 2) + wire[4:-2]
    with pytest.raises(p.ProtocolError):
        p.FrameReader().feed(short)
    long = struct.pack("<I", len(wire) - 4 + 1) + wire[4:] + b"\0"
    with pytest.raises(p.ProtocolError, match="stray"):
        p.FrameReader().feed(long)


def test_oversized_length_is_rejected() -> None:
    """A length above the limit is refused before anything is buffered for it."""
    with pytest.raises(p.ProtocolError, match="out of range"):
        p.FrameReader().feed(struct.pack("<IB", p.MAX_MESSAGE_BYTES + 1, 1))


def test_types_are_unique_and_fields_typed() -> None:
    """Every registered message is a slotted dataclass with a wire type of its own."""
    assert len({c.TYPE for c in p.MESSAGES.values()}) == len(p.MESSAGES)
    for cls in p.MESSAGES.values():
        assert dataclasses.is_dataclass(cls)
