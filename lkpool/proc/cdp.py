"""A small CDP connection: commands by id, events to callbacks, flat sessions.

One WebSocket to the browser endpoint carries every page: a page is a *session* attached
with `Target.attachToTarget(flatten=True)`, and its commands and events carry its
`sessionId`. Events are emitted under their CDP name (`"Page.frameNavigated"`) with
`(params, session_id)`, through lkpool's EventEmitter, so `on(name, cb, temporary=True)`
returns an id and `off(id)` removes it.

    CDPError            base; also what a failed command raises (message + CDP code)
     ├── CDPTimeout     no answer within the timeout (also TimeoutError)
     └── CDPClosed      the socket dropped; every pending command fails with it
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import urllib.parse
from typing import Any

from .. import websocket as ws
from ..events import EventEmitter

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0


class CDPError(Exception):
    def __init__(self, message: str, code: int = 0, method: str = "") -> None:
        super().__init__(f"{method}: {message}" if method else message)
        self.code = code
        self.method = method


class CDPTimeout(CDPError, TimeoutError):
    pass


class CDPClosed(CDPError, ConnectionError):
    pass


class DevToolsSocket:
    """The client end of Chromium's DevTools WebSocket on loopback: text messages in and
    out, pings answered, nothing else (no extensions, no TLS, no proxies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str, timeout: float, sock: socket.socket | None = None
                   ) -> DevToolsSocket:
        """`sock`: an unconnected socket to reach the URL's host and port with (one made
        inside the browser's sandbox: no relay between us)."""
        parts = urllib.parse.urlsplit(url)
        if sock is None:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                parts.hostname, parts.port), timeout)
        else:
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                    sock, (parts.hostname, parts.port)), timeout)
                reader, writer = await asyncio.open_connection(sock=sock)
            except BaseException:
                sock.close()
                raise
        try:
            key = ws.new_key()
            writer.write(ws.upgrade_request(parts.netloc, parts.path, key))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            try:
                ws.check_upgrade(head, key)
            except ValueError as exc:
                raise ConnectionError(str(exc)) from None
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        self._writer.write(ws.frame(ws.TEXT, text.encode(), masked=True))
        await self._writer.drain()

    async def receive(self) -> str | None:
        """The next text message; None once the browser closed the socket."""
        parts: list[bytes] = []
        while True:
            try:
                first = await self._reader.readexactly(2)
                head = ws.parse_header(
                    first + await self._reader.readexactly(ws.header_size(first[1]) - 2))
                assert head is not None
                payload = await self._reader.readexactly(head.length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if head.mask is not None:
                payload = ws.apply_mask(payload, head.mask)
            if head.opcode == ws.PING:
                self._writer.write(ws.frame(ws.PONG, payload, masked=True))
            elif head.opcode == ws.CLOSE:
                self._write_close()
                return None
            elif head.opcode in (ws.TEXT, ws.BINARY, ws.CONT):
                parts.append(payload)
                if head.fin:
                    return b"".join(parts).decode()

    def _write_close(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(ws.frame(ws.CLOSE, ws.close_payload(1000), masked=True))
            self._writer.close()

    async def close(self) -> None:
        self._write_close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class CDPConnection(EventEmitter[str]):
    """Use as `async with await CDPConnection.connect(ws_url) as cdp:`."""

    def __init__(self, sock: DevToolsSocket):
        super().__init__()
        self._ws = sock
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future, str]] = {}
        self._closed: CDPClosed | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="cdp-reader")

    @classmethod
    async def connect(cls, ws_url: str, timeout: float = 10.0,
                      sock: socket.socket | None = None) -> CDPConnection:
        return cls(await DevToolsSocket.open(ws_url, timeout, sock))

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session_id: str | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Sends one command and returns its `result`; raises CDPError/CDPTimeout/CDPClosed."""
        if self._closed is not None:
            raise CDPClosed(str(self._closed), method=method)
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (fut, method)
        try:
            await self._ws.send_text(json.dumps(msg))
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CDPTimeout(f"no answer within {timeout} s", method=method) from None
        except (ConnectionError, RuntimeError) as exc:
            raise CDPClosed(f"socket error: {exc}", method=method) from exc
        finally:
            self._pending.pop(msg_id, None)

    async def _read(self) -> None:
        reason = "browser closed the DevTools socket"
        try:
            while (text := await self._ws.receive()) is not None:
                self._dispatch(json.loads(text))
        except Exception as exc:  # the reason every pending call will carry
            reason = f"DevTools socket failed: {exc!r}"
        self._fail_all(reason)
        self.emit("disconnected", reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        msg_id = msg.get("id")
        if msg_id is None:
            self.emit(msg.get("method", ""), msg.get("params", {}), msg.get("sessionId"))
            return
        entry = self._pending.get(msg_id)
        if entry is None or entry[0].done():
            return
        fut, method = entry
        if "error" in msg:
            err = msg["error"]
            fut.set_exception(CDPError(err.get("message", "error"), err.get("code", 0), method))
        else:
            fut.set_result(msg.get("result", {}))

    def _fail_all(self, reason: str) -> None:
        self._closed = CDPClosed(reason)
        for fut, method in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(CDPClosed(reason, method=method))
        self._pending.clear()

    async def close(self) -> None:
        """Idempotent; safe after the browser died."""
        if self._closed is None:
            self._fail_all("connection closed")
        await self._ws.close()
        self._reader.cancel()
        try:
            await self._reader
        except BaseException:
            pass

    async def __aenter__(self) -> CDPConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
