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
from typing import Any

import aiohttp

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


class CDPConnection(EventEmitter[str]):
    """Use as `async with await CDPConnection.connect(ws_url) as cdp:`."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        super().__init__()
        self._http = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future, str]] = {}
        self._closed: CDPClosed | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="cdp-reader")

    @classmethod
    async def connect(cls, ws_url: str, timeout: float = 10.0) -> CDPConnection:
        http = aiohttp.ClientSession()
        try:
            # CDP messages (screenshots, screencast frames) are far above aiohttp's 4 MB default
            ws = await http.ws_connect(ws_url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(
                ws_receive=None, ws_close=timeout), autoping=False)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

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
            await self._ws.send_str(json.dumps(msg))
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
            async for frame in self._ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                self._dispatch(json.loads(frame.data))
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
        await self._http.close()

    async def __aenter__(self) -> CDPConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
