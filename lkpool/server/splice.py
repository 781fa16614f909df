"""A proxied DevTools WebSocket, spliced byte for byte.

Once both handshakes are done, the client's WebSocket to /session/{id}/... and the proxy's
to the instance carry the same frames: the client masks its frames as every client must,
Chromium sends its own unmasked as every server does, and neither handshake negotiated an
extension. So bytes go from one socket's `data_received` straight to the other's `write`:
no message assembly, no unmasking, no task switch. `websocket.Scanner` follows each
direction's frame headers as they pass, which is all the proxy needs to

- count messages (the `proxied_messages` metric) and record lease activity;
- refuse a client message above MAX_WS_MESSAGE_BYTES with close code 1009;
- write its own close frame (lease ended, instance crashed, server stopping) between two
  of Chromium's frames, never inside one.

Flow control is the sockets' own: when one side's write buffer fills, reading from the
other side pauses until it drains.

The client side hooks in where aiohttp's own WebSocketResponse does: after the 101, the
connection's `RequestHandler.set_parser` takes an object with `feed_data`/`feed_eof`, which
then gets every byte the client sends (hence aiohttp < 4 in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .. import websocket as ws
from ..tasks import spawn

logger = logging.getLogger(__name__)

WRITE_LIMIT = 256 << 10  # bytes queued for the client before the instance is not read
CLOSE_TIMEOUT = 2.0  # seconds the other side has to answer a close frame
MAX_RESPONSE_HEAD = 16 << 10


class HandshakeFailed(ConnectionError):
    """The upstream refused the upgrade (`status`: its HTTP status, 0 when there was none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Upstream(asyncio.Protocol):
    """The proxy's connection to an instance's DevTools WebSocket. Frames that arrive before
    a client is attached are kept for it."""

    def __init__(self, key: str) -> None:
        self._key = key
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head = b""
        self._early: list[bytes] = []
        self.splice: Splice | None = None
        self.closed = False

    @classmethod
    async def open(cls, port: int, path: str, timeout: float, *, host: str = "127.0.0.1",
                   host_header: str | None = None, headers: Mapping[str, str] | None = None,
                   sock: socket.socket | None = None) -> Upstream:
        """Connects to `host`:`port` (an instance's DevTools on 127.0.0.1, or another node
        of the cluster) and upgrades `path`; raises OSError or TimeoutError. `sock`: an
        unconnected socket to connect with (one made inside an instance's sandbox)."""
        loop = asyncio.get_running_loop()
        key = ws.new_key()
        async with asyncio.timeout(timeout):
            if sock is None:
                _, up = await loop.create_connection(lambda: cls(key), host, port)
            else:
                try:
                    await loop.sock_connect(sock, (host, port))
                    _, up = await loop.create_connection(lambda: cls(key), sock=sock)
                except BaseException:
                    sock.close()
                    raise
            try:
                assert up.transport is not None
                up.transport.write(ws.upgrade_request(host_header or f"{host}:{port}", path,
                                                      key, headers))
                await up.handshake
            except BaseException:
                up.close()
                raise
        return up

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass  # asyncio and uvloop both set it already on TCP; this is belt and braces

    def data_received(self, data: bytes) -> None:
        if not self.handshake.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_RESPONSE_HEAD:
                    self.handshake.set_exception(HandshakeFailed("no end of the answer"))
                return
            head, data = self._head[:end + 4], self._head[end + 4:]
            self._head = b""
            try:
                ws.check_upgrade(head, self._key)
            except ValueError as exc:
                code = head.split(b" ", 2)[1:2]
                status = int(code[0]) if code and code[0].isdigit() else 0
                self.handshake.set_exception(HandshakeFailed(str(exc), status))
                return
            self.handshake.set_result(None)
            if not data:
                return
        if self.splice is not None:
            self.splice.from_upstream(data)
        else:
            self._early.append(data)

    def attach(self, splice: Splice) -> None:
        self.splice = splice
        early, self._early = self._early, []
        for data in early:
            splice.from_upstream(data)
        if self.closed:
            splice.upstream_lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed(f"connection lost: {exc}"))
        if self.splice is not None:
            self.splice.upstream_lost()

    def pause_writing(self) -> None:
        if self.splice is not None:
            self.splice.client.pause_reading()

    def resume_writing(self) -> None:
        if self.splice is not None:
            self.splice.client.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def accept_client(request: web.Request) -> web.StreamResponse:
    """The 101 answer to a client's WebSocket upgrade; ValueError names what is wrong. No
    extension is accepted, so the client's frames stay what Chromium expects."""
    headers = request.headers
    if request.method != "GET" or headers.get("Upgrade", "").lower() != "websocket":
        raise ValueError("not a WebSocket upgrade")
    if "upgrade" not in headers.get("Connection", "").lower():
        raise ValueError("Connection header lacks 'upgrade'")
    if headers.get("Sec-WebSocket-Version", "") != "13":
        raise ValueError("only WebSocket version 13 is spoken")
    key = headers.get("Sec-WebSocket-Key", "")
    if len(key) != 24 or not key.endswith("=="):
        raise ValueError("Sec-WebSocket-Key is not a 16-byte base64 value")
    resp = web.StreamResponse(status=101, headers={
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Accept": ws.accept_key(key)})
    resp.force_close()
    return resp


class Splice:
    """Both directions of one proxied WebSocket. It is the client connection's payload
    parser (aiohttp feeds it every byte after the upgrade), and the upstream's consumer.

    `dropped` resolves when the instance's side ended without a close handshake (the
    caller picks the close code: it knows whether the lease ended); `finished` when both
    connections are closed."""

    def __init__(self, upstream: Upstream, request: web.Request, writer: AbstractStreamWriter,
                 *, max_message: int, on_messages: Callable[[str, int], None]) -> None:
        transport = request.transport
        assert transport is not None and upstream.transport is not None
        self.client: asyncio.Transport = transport
        self.upstream = upstream
        self._writer = writer
        self._max_message = max_message
        self._on_messages = on_messages
        self._from_client = ws.Scanner()
        self._from_upstream = ws.Scanner()
        self._message_size = 0
        self._closing: bytes | None = None  # our close frame, waiting for a boundary
        self._close_sent = False
        self._upstream_said_close = False
        self._client_said_close = asyncio.get_running_loop().create_future()
        self._draining = False
        self._tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        self.dropped: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        request.protocol.keep_alive(False)
        request.protocol.set_parser(self)  # type: ignore[arg-type]
        upstream.attach(self)

    # -- client -> instance (aiohttp's payload parser interface) --
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.finished.done():
            return False, b""
        messages = 0
        for at, head in self._from_client.feed(data):
            if head.opcode in ws.CONTROL:
                if head.opcode == ws.CLOSE and not self._client_said_close.done():
                    self._client_said_close.set_result(None)
                continue
            if head.opcode != ws.CONT:
                self._message_size = 0
            self._message_size += head.length
            if self._message_size > self._max_message:
                if at > 0 and self._closing is None and not self._close_sent:
                    self.upstream.transport.write(data[:at])  # type: ignore[union-attr]
                self._spawn(self.close(1009, f"message over {self._max_message} bytes"))
                return False, b""
            messages += head.fin
        if self._closing is None and not self._close_sent and not self.upstream.closed:
            self.upstream.transport.write(data)  # type: ignore[union-attr]
        if messages:
            self._on_messages("to_instance", messages)
        return False, b""

    def feed_eof(self) -> None:
        """The client's connection is gone."""
        if not self._client_said_close.done():
            self._client_said_close.set_result(None)
        self.upstream.close()
        self._finish()

    # -- instance -> client --
    def from_upstream(self, data: bytes) -> None:
        if self.finished.done() or self._close_sent:
            return
        scanner = self._from_upstream
        if self._closing is not None:  # finish the frame under way, then our close frame
            heads = scanner.feed(data)
            boundary = next((at for at, _ in heads if at >= 0), None)
            if boundary is None and not scanner.at_boundary:
                self.client.write(data)
                return
            self.client.write(data if boundary is None else data[:boundary])
            self._write_close()
            return
        messages = 0
        for _, head in scanner.feed(data):
            if head.opcode == ws.CLOSE:
                self._upstream_said_close = True
            elif head.fin:
                messages += 1
        self.client.write(data)
        if messages:
            self._on_messages("to_client", messages)
        if not self._draining and self.client.get_write_buffer_size() > WRITE_LIMIT:
            self._draining = True
            self.upstream.transport.pause_reading()  # type: ignore[union-attr]
            self._spawn(self._drain())

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError:
            pass
        self._draining = False
        if not self.upstream.closed:
            self.upstream.transport.resume_reading()  # type: ignore[union-attr]

    def upstream_lost(self) -> None:
        if self._closing is not None or self._close_sent:
            return  # we are the ones closing
        if self._upstream_said_close:
            # the close handshake went through us: the client has Chromium's close frame
            self._spawn(self._close_client_after_answer())
        elif not self.dropped.done():
            self.dropped.set_result(None)

    # -- ending --
    async def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        """Sends the client a close frame with `code` (after the frame under way), lets it
        answer, and closes both connections. Idempotent."""
        if self._closing is None and not self._close_sent and not self.finished.done():
            reason = message.decode(errors="replace") if isinstance(message, bytes) else message
            self._closing = ws.frame(ws.CLOSE, ws.close_payload(code, reason), masked=False)
            if self._from_upstream.at_boundary:
                self._write_close()
            else:
                # the instance owes the rest of a frame; a dead one never sends it
                self.upstream.transport.resume_reading()  # type: ignore[union-attr]
                self._spawn(self._abort_later())
        await asyncio.shield(self.finished)

    def _write_close(self) -> None:
        assert self._closing is not None
        self.client.write(self._closing)
        self._closing, self._close_sent = None, True
        self.upstream.close()
        self._spawn(self._close_client_after_answer())

    async def _close_client_after_answer(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._client_said_close), CLOSE_TIMEOUT)
        except TimeoutError:
            pass
        self._finish()

    async def _abort_later(self) -> None:
        await asyncio.sleep(CLOSE_TIMEOUT)
        if not self.finished.done():
            self.client.abort()
            self._finish()

    def _finish(self) -> None:
        self.upstream.close()
        self.client.close()
        if not self.finished.done():
            self.finished.set_result(None)
        if not self.dropped.done():
            self.dropped.cancel()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def abort(self) -> None:
        """Ends both connections now (the handler was cancelled)."""
        self.client.abort()
        self._finish()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        spawn(coro, name="lkpool-splice", into=self._tasks, log=logger)
