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
    32      8   i64   ready_ns      when the server had this message ready to send (after
                                    any scaling/encoding), Unix time in ns
    40      8   -     reserved      0

Every field is a property of the frame and its encoding, none of one viewer: so a message
is built once per frame and encoding and the same bytes go to every viewer (no per-viewer
copy of a 3.6 MB raw frame). A viewer's skipped frames are the gaps in `sequence`.
A later version may append fields; `header_size` says where the payload starts, so a
version-1 reader keeps working.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

MAGIC = b"LKPF"
VERSION = 1
_STRUCT = struct.Struct("<4sBBHIIQqq8x")
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
    ready_ns: int

    def pack(self) -> bytes:
        return _STRUCT.pack(MAGIC, VERSION, self.format, HEADER_SIZE, self.width, self.height,
                            self.sequence, self.captured_ns, self.ready_ns)

    def pack_into(self, buffer: bytearray) -> None:
        _STRUCT.pack_into(buffer, 0, MAGIC, VERSION, self.format, HEADER_SIZE, self.width,
                          self.height, self.sequence, self.captured_ns, self.ready_ns)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> tuple[FrameHeader, memoryview]:
        """The header and a view of the payload that follows it."""
        if len(data) < HEADER_SIZE:
            raise HeaderError(f"message of {len(data)} bytes is shorter than a header")
        (magic, version, fmt, size, width, height, seq, captured,
         ready) = _STRUCT.unpack_from(data)
        if magic != MAGIC:
            raise HeaderError(f"bad magic {magic!r}")
        if version < 1 or size < HEADER_SIZE or size > len(data):
            raise HeaderError(f"unsupported header (version {version}, size {size})")
        try:
            fmt = FrameFormat(fmt)
        except ValueError:
            raise HeaderError(f"unknown frame format {fmt}") from None
        header = cls(fmt, width, height, seq, captured, ready)
        return header, memoryview(data)[size:]
