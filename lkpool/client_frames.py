"""The client's frames stream (`APIClient.frames()`): one WebSocket, decoded into `Frame`s."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import numpy as np

from .server.header import FrameFormat, FrameHeader

if TYPE_CHECKING:
    from .client import APIClient


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame from the frames stream. `data`: an (height, width, 4) BGRA numpy array for
    raw, the JPEG bytes for jpeg. Times are Unix ns (see lkpool/server/header.py)."""

    format: FrameFormat
    width: int
    height: int
    sequence: int
    captured_ns: int
    ready_ns: int
    received_ns: int
    skipped: int  # frames this stream never got so far (gaps in `sequence`)
    data: np.ndarray | bytes



class FrameStream:
    """Async iterator over a session's frames WebSocket; `aclose()` (or `async with`) ends it."""

    def __init__(self, client: APIClient, query: dict[str, str]) -> None:
        self._client, self._query = client, query
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = False
        self.close_reason = ""
        self.skipped = 0
        self._last_sequence = 0

    def __aiter__(self) -> FrameStream:
        return self

    async def __aenter__(self) -> FrameStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Frame:
        if self.closed:
            raise StopAsyncIteration
        if self._ws is None:
            self._ws = await self._client._ws_connect("frames", self._query)
        msg = await self._ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            self.close_reason = str(msg.extra or self._ws.close_code or msg.type.name)
            await self.aclose()
            raise StopAsyncIteration
        received = time.time_ns()
        header, payload = FrameHeader.unpack(msg.data)
        data: np.ndarray | bytes
        if header.format is FrameFormat.RAW:
            data = np.frombuffer(payload, np.uint8).reshape(header.height, header.width, 4)
        else:
            data = bytes(payload)
        if self._last_sequence and header.sequence > self._last_sequence + 1:
            self.skipped += header.sequence - self._last_sequence - 1
        self._last_sequence = header.sequence
        return Frame(header.format, header.width, header.height, header.sequence,
                     header.captured_ns, header.ready_ns, received, self.skipped, data)

    async def aclose(self) -> None:
        self.closed = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

