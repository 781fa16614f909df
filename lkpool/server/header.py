"""The fixed header in front of every message of the frames WebSocket.

Pure (no I/O) so the server packs it and the client (`lkpool.client`) unpacks it from the
same table. Little-endian, 48 bytes in version 1::

    offset size type  field
     0      4   4s    magic         b"LKPF"
     4      1   u8    version       1
     5      1   u8    format        1 = raw BGRA (width*height*4 bytes, rows top-down,
                                    no padding), 2 = JPEG
     6      2   u16   header_size   bytes before the payload (48); a reader skips to it
     8      4   u32   width         of the payload image (after scale / max_width)
    12      4   u32   height
    16      8   u64   sequence      the page's frame number; gaps are frames this viewer
                                    skipped
    24      8   i64   captured_ns   when the frame was captured, Unix time in ns
    32      8   i64   sent_ns       when the server handed it to the socket, Unix time in ns
    40      4   u32   skipped       frames this viewer has skipped so far (slow socket or fps)
    44      4   u32   reserved      0

A later version may append fields; `header_size` says where the payload starts, so a
version-1 reader keeps working.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

MAGIC = b"LKPF"
VERSION = 1
_STRUCT = struct.Struct("<4sBBHIIQqqII")
HEADER_SIZE = _STRUCT.size


class FrameFormat(enum.IntEnum):
    RAW = 1  # BGRA
    JPEG = 2

    @property
    def label(self) -> str:
        return self.name.lower()


FORMATS: dict[str, FrameFormat] = {f.label: f for f in FrameFormat}


class HeaderError(ValueError):
    """Bytes that do not start with a frames header this reader understands."""


@dataclass(frozen=True, slots=True)
class FrameHeader:
    format: FrameFormat
    width: int
    height: int
    sequence: int
    captured_ns: int
    sent_ns: int
    skipped: int = 0

    def pack(self) -> bytes:
        return _STRUCT.pack(MAGIC, VERSION, self.format, HEADER_SIZE, self.width, self.height,
                            self.sequence, self.captured_ns, self.sent_ns, self.skipped, 0)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> tuple[FrameHeader, memoryview]:
        """The header and a view of the payload that follows it."""
        if len(data) < HEADER_SIZE:
            raise HeaderError(f"message of {len(data)} bytes is shorter than a header")
        (magic, version, fmt, size, width, height, seq, captured, sent, skipped,
         _) = _STRUCT.unpack_from(data)
        if magic != MAGIC:
            raise HeaderError(f"bad magic {magic!r}")
        if version < 1 or size < HEADER_SIZE or size > len(data):
            raise HeaderError(f"unsupported header (version {version}, size {size})")
        try:
            fmt = FrameFormat(fmt)
        except ValueError:
            raise HeaderError(f"unknown frame format {fmt}") from None
        header = cls(fmt, width, height, seq, captured, sent, skipped)
        return header, memoryview(data)[size:]
