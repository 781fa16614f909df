"""The placement's node-to-node calls: one persistent WebSocket from a node to each peer it
has asked something, carrying small JSON requests and their answers.

    entry node                                   owner node
    Channels.to(peer).call("acquire", {...}) ──► GET /_cluster/channel (the secret, once)
        {"id": 7, "op": "acquire", "body": {...}}    ops["acquire"](body) in its own task
        ◄── {"id": 7, "status": 200, "body": {...}}  (errors: the status and code a REST
                                                     client would get from that node)

Why not one HTTP request per call: a non-owner allocation crosses this hop on its critical
path, and an HTTP request runs several times the code of a WebSocket message on both ends
(headers, the request object, the middlewares, the response). On a machine whose caches
go cold between requests, that code is most of the hop's cost. The socket is opened on first
use, reopened after it broke, and closed when its peer leaves the cluster; a call on a
socket that breaks fails with `OwnerUnreachable` (502), never hangs past its timeout.

The wire format (`request`, `answer`, `parse_answer`) has no I/O and is tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import InvalidArgument, LkpoolError, OwnerUnreachable, RequestTimeout
from ..server.edge import loads
from ..tasks import spawn

logger = logging.getLogger("lkpool.cluster")

PATH = "/_cluster/channel"
MAX_MESSAGE = 64 * 1024  # a request or answer is a few hundred bytes; a URL is bounded below
PING_EVERY = 30.0  # seconds: a socket whose peer vanished without a FIN is found out

Op = Callable[[Any], Awaitable[dict[str, Any]]]


class RemoteError(LkpoolError):
    """An error the peer answered, with its status and code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


# ---- the wire format -----------------------------------------------------------------------

def request(call_id: int, op: str, body: Any) -> str:
    return json.dumps({"id": call_id, "op": op, "body": body}, separators=(",", ":"))


def answer(call_id: Any, status: int, body: Any) -> str:
    return json.dumps({"id": call_id, "status": status, "body": body}, separators=(",", ":"))


def error_answer(call_id: Any, exc: LkpoolError) -> str:
    return answer(call_id, exc.status, {"error": exc.code, "detail": str(exc) or exc.code})


def parse_answer(text: str) -> tuple[int, int, Any]:
    """(call id, status, body) of one answer; InvalidArgument when it is not one."""
    msg = loads(text)
    if (not isinstance(msg, dict) or not isinstance(msg.get("id"), int)
            or not isinstance(msg.get("status"), int)):
        raise InvalidArgument("not an answer: an object with an integer id and status")
    return msg["id"], msg["status"], msg.get("body")


def raise_for(status: int, body: Any) -> dict[str, Any]:
    """The body of a 200 answer; the peer's error as the same kind of error here."""
    if status == 200 and isinstance(body, dict):
        return body
    if status == 200:
        raise OwnerUnreachable("the owner node answered something that is not an object")
    body = body if isinstance(body, dict) else {}
    raise RemoteError(status, str(body.get("error", "error")),
                      f"the owner node answered {status}: {body.get('detail', '')}")


# ---- the owner's end -----------------------------------------------------------------------

def route(ops: Mapping[str, Op]) -> web.RouteDef:
    """GET /_cluster/channel: each request runs in its own task (a slow acquire holds up no
    other call); one that is still running when the socket closes finishes, and its answer
    goes nowhere (the entry node frees the claim of a call it gave up on)."""

    async def channel(request_: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
        await ws.prepare(request_)
        running: set[asyncio.Task] = set()
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA,
                                   message=b"text messages only")
                    break
                spawn(_serve(ws, ops, msg.data), name="lkpool-cluster-call", into=running,
                      log=logger)
        except asyncio.CancelledError:  # the server stops: so do the calls in flight
            for task in list(running):
                task.cancel(msg="node stopping")
            raise
        finally:
            await asyncio.gather(*running, return_exceptions=True)
        return ws

    return web.get(PATH, channel)


async def _serve(ws: web.WebSocketResponse, ops: Mapping[str, Op], text: str) -> None:
    call_id: Any = None
    try:
        msg = loads(text)
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), int):
            raise InvalidArgument("a call is an object with an integer id, an op and a body")
        call_id = msg["id"]
        op = ops.get(msg.get("op"))  # type: ignore[arg-type]
        if op is None:
            raise InvalidArgument(f"no such op: {str(msg.get('op'))[:40]!r}")
        reply = answer(call_id, 200, await op(msg.get("body")))
    except LkpoolError as exc:
        reply = error_answer(call_id, exc)
    except Exception:
        logger.exception("node-to-node call failed")
        reply = answer(call_id, 500, {"error": "internal_error",
                                      "detail": "unexpected server error (logged)"})
    with contextlib.suppress(ConnectionError, RuntimeError):  # the caller left meanwhile
        await ws.send_str(reply)


# ---- the caller's end ----------------------------------------------------------------------

class Channel:
    """This node's socket to one peer (one incarnation: a restarted peer is another)."""

    def __init__(self, http: aiohttp.ClientSession, nid: str, url: str,
                 headers: Mapping[str, str], open_timeout: float) -> None:
        self.nid = nid
        self.url = url + PATH
        self._http = http
        self._headers = dict(headers)
        self._open_timeout = open_timeout
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._opening = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    async def call(self, op: str, body: Any, timeout: float) -> dict[str, Any]:
        """The peer's answer to `op`; its error raised as the same kind of error here,
        `OwnerUnreachable` when the socket cannot be opened or breaks before the answer,
        `RequestTimeout` (504) when no answer comes within `timeout`."""
        try:
            return await self._call(op, body, timeout)
        except TimeoutError:
            raise RequestTimeout(f"node {self.nid} did not answer {op} within {timeout:g} s"
                                 ) from None

    async def _call(self, op: str, body: Any, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            ws = await self._open()
            call_id = next(self._ids)
            fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
            self._pending[call_id] = fut
            try:
                try:
                    await ws.send_str(request(call_id, op, body))
                except (ConnectionError, RuntimeError) as exc:
                    raise self._unreachable(f"the socket broke: {exc}") from None
                status, reply = await fut
            finally:
                self._pending.pop(call_id, None)
        return raise_for(status, reply)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self._closed:
            raise OwnerUnreachable(f"node {self.nid} left the cluster")
        async with self._opening:
            if self._ws is not None and not self._ws.closed:
                return self._ws
            try:
                async with asyncio.timeout(self._open_timeout):
                    ws = await self._http.ws_connect(self.url, headers=self._headers,
                                                     heartbeat=PING_EVERY,
                                                     max_msg_size=MAX_MESSAGE,
                                                     autoclose=True)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise self._unreachable(f"could not connect: {exc or type(exc).__name__}"
                                        ) from None
            self._ws = ws
            spawn(self._read(ws), name="lkpool-cluster-channel", into=self._tasks, log=logger)
            return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Hands each answer to its call; when the socket ends, every call still waiting
        fails at once."""
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                try:
                    call_id, status, body = parse_answer(msg.data)
                except InvalidArgument as exc:
                    logger.warning("node %s sent a malformed answer: %s", self.nid, exc)
                    break
                fut = self._pending.get(call_id)
                if fut is not None and not fut.done():
                    fut.set_result((status, body))
        finally:
            await ws.close()
            if self._ws is ws:
                self._ws = None
            waiting = [fut for fut in self._pending.values() if not fut.done()]
            if waiting:  # a socket closed with no call on it is no news
                gone = self._unreachable("the socket closed before the answer")
                for fut in waiting:
                    fut.set_exception(gone)

    def _unreachable(self, why: str) -> OwnerUnreachable:
        """The error for the client names the node; its internal address is only logged."""
        logger.warning("node %s at %s: %s", self.nid, self.url, why)
        return OwnerUnreachable(f"node {self.nid} did not answer")

    async def aclose(self) -> None:
        """Closes the socket; calls still waiting fail. Safe to call twice."""
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        for task in list(self._tasks):
            task.cancel(msg="channel closed")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(OwnerUnreachable(f"node {self.nid} left the cluster"))


class Channels:
    """This node's channels, one per peer incarnation it has called."""

    def __init__(self, http: aiohttp.ClientSession, headers: Mapping[str, str],
                 open_timeout: float) -> None:
        self._http = http
        self._headers = dict(headers)
        self._open_timeout = open_timeout
        self._by_nid: dict[str, Channel] = {}
        self._closing: set[asyncio.Task] = set()

    def to(self, nid: str, internal_url: str) -> Channel:
        channel = self._by_nid.get(nid)
        if channel is None:
            channel = self._by_nid[nid] = Channel(self._http, nid, internal_url,
                                                  self._headers, self._open_timeout)
        return channel

    def drop(self, nid: str) -> None:
        """The peer left the cluster (or was lost): its socket closes, its calls fail."""
        channel = self._by_nid.pop(nid, None)
        if channel is not None:
            spawn(channel.aclose(), name="lkpool-cluster-channel-close", into=self._closing,
                  log=logger)

    async def aclose(self) -> None:
        channels, self._by_nid = list(self._by_nid.values()), {}
        await asyncio.gather(*(c.aclose() for c in channels), *self._closing,
                             return_exceptions=True)
