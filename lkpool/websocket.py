"""The RFC 6455 framing lkpool speaks itself, with no I/O here.

Two places need WebSocket frames below a library: an instance's child talks CDP to its own
Chromium on loopback (aiohttp would add about 10 MB of memory to every instance for one
socket), and the DevTools proxy splices a client's socket to Chromium's byte for byte
(parsing and re-framing every message costs a round trip tens of microseconds). Both only
need headers: `parse_header` reads one, `frame` writes one. `Scanner` follows a byte stream
across reads and reports each frame's header as it passes, so the proxy knows where frames
start and end without copying or unmasking payloads.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CONTROL = frozenset({CLOSE, PING, PONG})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER = 14


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` a server answers to a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


@dataclass(frozen=True, slots=True)
class Header:
    fin: bool
    opcode: int
    length: int  # payload bytes
    mask: bytes | None
    size: int  # header bytes


def header_size(second: int) -> int:
    """Bytes of a frame header, from its second byte (length code and mask bit)."""
    return 2 + {126: 2, 127: 8}.get(second & 0x7F, 0) + (4 if second & 0x80 else 0)


def parse_header(buf: bytes | bytearray | memoryview, at: int = 0) -> Header | None:
    """The frame header starting at `buf[at]`, or None when `buf` does not hold all of it."""
    avail = len(buf) - at
    if avail < 2:
        return None
    b0, b1 = buf[at], buf[at + 1]
    size = header_size(b1)
    if avail < size:
        return None
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack_from("!H", buf, at + 2)[0]
    elif length == 127:
        length = struct.unpack_from("!Q", buf, at + 2)[0]
    mask = bytes(buf[at + size - 4:at + size]) if b1 & 0x80 else None
    return Header(bool(b0 & 0x80), b0 & 0x0F, length, mask, size)


def upgrade_request(host: str, path: str, key: str,
                    headers: Mapping[str, str] | None = None) -> bytes:
    """A client's opening handshake, offering no extension (RFC 6455 4.1); `headers` adds
    fields (names and values already checked by whoever passes them)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def check_upgrade(head: bytes, key: str) -> None:
    """Raises ValueError unless `head` (the answer up to its blank line) accepts `key`."""
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines if line)}
    if status.split()[1:2] != ["101"] or headers.get("sec-websocket-accept") != accept_key(key):
        raise ValueError(f"the WebSocket upgrade was refused: {status[:100]!r}")


def frame(opcode: int, payload: bytes = b"", *, masked: bool, fin: bool = True) -> bytes:
    """One whole frame. Clients mask (RFC 6455 5.3), servers do not."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XORs with the 4-byte key (masking and unmasking are the same), a whole int at once."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
            ).to_bytes(n, "little")


def close_payload(code: int, reason: str = "") -> bytes:
    # a control frame's payload is at most 125 bytes: 2 for the code, 123 for the reason
    return struct.pack("!H", code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack_from("!H", payload)[0], payload[2:].decode(errors="replace")


class Scanner:
    """Follows one direction of a WebSocket byte stream across reads.

    `feed(data)` returns the headers of the frames that start in `data`, each with its
    offset, and keeps the partial header or the unread rest of a payload for the next
    call. `at_boundary` says whether the stream so far ends exactly between frames, the
    only place where something else may be written into it."""

    __slots__ = ("_pending", "_left")

    def __init__(self) -> None:
        self._pending = b""  # bytes of a header split across reads
        self._left = 0  # payload bytes of the current frame still to come

    @property
    def at_boundary(self) -> bool:
        return self._left == 0 and not self._pending

    def feed(self, data: bytes) -> list[tuple[int, Header]]:
        found: list[tuple[int, Header]] = []
        at = 0
        n = len(data)
        if self._left:
            if self._left >= n:
                self._left -= n
                return found
            at, self._left = self._left, 0
        if self._pending:
            buf = self._pending + data[at:at + MAX_HEADER]
            head = parse_header(buf)
            if head is None:
                self._pending = buf
                return found
            consumed = head.size - len(self._pending)
            found.append((at - len(self._pending), head))
            self._pending = b""
            at += consumed
            if head.length > n - at:
                self._left = head.length - (n - at)
                return found
            at += head.length
        while at < n:
            head = parse_header(data, at)
            if head is None:
                self._pending = bytes(data[at:])
                return found
            found.append((at, head))
            at += head.size
            if head.length > n - at:
                self._left = head.length - (n - at)
                return found
            at += head.length
        return found
