"""The floor of any TCP proxy: a bare byte relay on uvloop, nothing parsed, nothing counted.

    python -m bench.relay TARGET_PORT        (prints the port it listens on, then serves)

bench.pool runs it in a process of its own, as lkpool's server is, between the bench's client
and an instance's DevTools port: its round trip beside the proxy's says how much of the
proxy's cost is its own code and how much the second loopback hop (two more socket writes and
two more process wake-ups per round trip) that any proxy pays.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvloop


class Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.early: list[bytes] = []  # what came before the other side was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.transport is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)

    def join(self, peer: Pipe) -> None:
        self.peer = peer
        early, self.early = self.early, []
        for data in early:
            self.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve(target: int) -> None:
    loop = asyncio.get_running_loop()

    async def accept(reader_sock: socket.socket) -> None:
        _, up = await loop.create_connection(Pipe, "127.0.0.1", target)
        _, down = await loop.connect_accepted_socket(Pipe, reader_sock)
        up.join(down)
        down.join(up)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        await accept(conn)


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
