"""A page's BGRA frame as a PNG or JPEG image, optionally scaled down: the screenshots of
computer use (lkpool/computer.py). Pure and synchronous: callers run it in a thread.

PNG is written here (zlib and four chunks, RGB, no filter, zlib level 1, run-length)
rather than with an imaging library: a 1280x720 page encodes in about 10 ms, and it adds
no dependency. JPEG is simplejpeg's, as for the frames socket.
"""

from __future__ import annotations

import struct
import zlib
from typing import Literal

import numpy as np
import simplejpeg

ImageFormat = Literal["png", "jpeg"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg")
PNG_LEVEL = 1  # zlib level and strategy: page images are mostly flat runs of one colour,
PNG_STRATEGY = zlib.Z_RLE  # which run-length matching finds fastest (9 ms, 12 by default)


def scaled(img: np.ndarray, scale: float) -> np.ndarray:
    """Area-averaged when the factor is a whole number (2, 3, ...), nearest pixel otherwise."""
    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    k = round(1 / scale)
    if abs(1 / scale - k) < 1e-9 and h % k == 0 and w % k == 0:
        return img.reshape(nh, k, nw, k, -1).mean(axis=(1, 3)).astype(np.uint8)
    ys = np.arange(nh) * h // nh
    xs = np.arange(nw) * w // nw
    return img[ys[:, None], xs[None, :]]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(rgb: np.ndarray) -> bytes:
    h, w = rgb.shape[:2]
    rows = np.empty((h, 1 + w * 3), np.uint8)
    rows[:, 0] = 0  # filter: none
    out = rows[:, 1:].reshape(h, w, 3)
    for i in range(3):  # one channel at a time: 6x faster than one reversed-view copy
        out[..., i] = rgb[..., i]
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", _deflate(rows)) + _chunk(b"IEND", b""))


def _deflate(data: np.ndarray) -> bytes:
    z = zlib.compressobj(PNG_LEVEL, zlib.DEFLATED, 15, 9, PNG_STRATEGY)
    return z.compress(data) + z.flush()


def encode(bgra: bytes, width: int, height: int, fmt: ImageFormat, *, scale: float = 1.0,
           quality: int = 80) -> tuple[bytes, int, int]:
    """-> (image bytes, width, height) of the image."""
    img = scaled(np.frombuffer(bgra, np.uint8).reshape(height, width, 4), scale)
    h, w = img.shape[:2]
    if fmt == "jpeg":
        return simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality,
                                      colorspace="BGRA", colorsubsampling="420"), w, h
    return png(img[:, :, 2::-1]), w, h
