"""The socketpair duplex: asyncio I/O around the pure protocol, used by both processes."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator

from .protocol import FrameReader, Message, encode


class ChannelClosed(ConnectionError):
    """The other end of the duplex is gone."""


class Channel:
    """One end of the duplex. `send` queues without waiting; `recv` returns one message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader()
        self._pending: deque[Message] = deque()
        self._closed = False

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    def send(self, msg: Message) -> None:
        if self.closed:
            raise ChannelClosed("duplex closed")
        self._writer.write(encode(msg))

    def write_buffer_size(self) -> int:
        """Bytes queued but not yet taken by the peer: a stuck peer shows here."""
        transport = self._writer.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ChannelClosed(str(exc)) from exc

    async def recv(self) -> Message:
        while not self._pending:
            try:
                data = await self._reader.read(1 << 18)
            except ConnectionError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not data:
                self._closed = True
                raise ChannelClosed("peer closed the duplex")
            self._pending.extend(self._frames.feed(data))
        return self._pending.popleft()

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.recv()
            except ChannelClosed:
                return

    def close(self) -> None:
        self._closed = True
        if not self._writer.is_closing():
            self._writer.close()
