"""The RFC 6455 framing lkpool speaks itself: headers, masks, and the scanner the proxy uses
to find frame boundaries in a byte stream cut anywhere."""

from __future__ import annotations

import os
import random

import pytest

from lkpool import websocket as ws


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("masked", [False, True])
def test_frame_header_round_trip(size: int, masked: bool) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) parses back, masked or not."""
    payload = os.urandom(size)
    data = ws.frame(ws.BINARY, payload, masked=masked)
    head = ws.parse_header(data)
    assert head is not None
    assert (head.fin, head.opcode, head.length) == (True, ws.BINARY, size)
    assert (head.mask is not None) == masked
    body = data[head.size:]
    assert len(body) == size
    assert (ws.apply_mask(body, head.mask) if head.mask else body) == payload


def test_parse_header_needs_all_of_it() -> None:
    """A header cut short gives None, never a wrong length."""
    data = ws.frame(ws.TEXT, b"x" * 70000, masked=True)
    full = ws.parse_header(data)
    assert full is not None and full.size == 14
    for cut in range(full.size):
        assert ws.parse_header(data[:cut]) is None


def test_accept_key_matches_the_rfc_example() -> None:
    """RFC 6455 section 1.3's example key and answer."""
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_close_payload_round_trip_and_limit() -> None:
    """A close frame carries its code and at most 123 bytes of reason."""
    assert ws.parse_close(ws.close_payload(4001, "expired")) == (4001, "expired")
    assert len(ws.close_payload(1000, "x" * 500)) == 125
    assert ws.parse_close(b"") == (1005, "")


def test_scanner_finds_every_frame_however_the_stream_is_cut() -> None:
    """Frames of all sizes, fed in random slices (down to one byte), are each reported once
    with their own header, and boundaries are exactly between frames."""
    rng = random.Random(7)
    sizes = [0, 5, 125, 126, 300, 65536, 70000, 1, 2]
    frames = [ws.frame(ws.TEXT if i % 2 else ws.PING, os.urandom(n), masked=bool(i % 3))
              for i, n in enumerate(sizes)]
    stream = b"".join(frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    for _ in range(20):
        scanner = ws.Scanner()
        seen = []
        at = 0
        while at < len(stream):
            step = rng.choice([1, 2, 3, 7, 13, 100, 5000, 100000])
            chunk = stream[at:at + step]
            seen += [h.length for _, h in scanner.feed(chunk)]
            at += len(chunk)
            assert scanner.at_boundary == (at in ends)
        assert seen == sizes


def test_scanner_offsets_point_at_headers() -> None:
    """Offsets of frames that start inside a chunk index their first header byte."""
    a, b = ws.frame(ws.TEXT, b"hello", masked=False), ws.frame(ws.TEXT, b"world", masked=True)
    found = ws.Scanner().feed(a + b)
    assert [at for at, _ in found] == [0, len(a)]
