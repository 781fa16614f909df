"""Requests for a session of another node go to that node: a proxy, not a redirect (Node's
`ws` client follows none), for REST (/browser/{id}...), DevTools HTTP and WebSockets,
frames, input, the view and publishing alike.

The owner is named by the session id itself (`ids.nid_of`), its address by the registry
(what the last heartbeat saw, so routing goes on while Redis is away). The request keeps
the client's Host, so every URL the owner writes into its answers (`proxy_url`, `ws_url`,
/json/version's `webSocketDebuggerUrl`) points at the node the client called. WebSockets
are spliced byte for byte to the owner, as the owner splices them to its browser. A
session whose node is gone answers 410 (`node_lost`) on every node, and its proxied
sockets close with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from ..errors import (
    ClusterUnavailable,
    InvalidArgument,
    LkpoolError,
    NodeLost,
    OwnerUnreachable,
    SessionGone,
)
from ..server.appkeys import PROXY_SOCKETS
from ..server.splice import HandshakeFailed, Splice, Upstream, accept_client
from . import ids
from .internal import SECRET_HEADER
from .store import StoreError

if TYPE_CHECKING:
    from .node import Cluster
    from .registry import NodeInfo

logger = logging.getLogger("lkpool.cluster")

# not passed on: hop-by-hop fields, and what the proxy sets itself
DROPPED_REQUEST = frozenset({
    "host", "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "sec-websocket-key",
    "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
    SECRET_HEADER.lower(), "x-forwarded-proto"})
DROPPED_RESPONSE = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
    "server", "date"})
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def middleware(cluster: Cluster) -> Any:
    @web.middleware
    async def routing_middleware(request: web.Request, handler: Handler
                                 ) -> web.StreamResponse:
        match = ids.SESSION_PATH.match(request.path)
        nid = ids.nid_of(match.group(1)) if match else None
        if match is None or nid is None or nid == cluster.registry.nid:
            return await handler(request)
        owner = await owner_of(cluster, nid, match.group(1))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _websocket(cluster, request, owner)
        return await _http(cluster, request, owner)
    return routing_middleware


async def owner_of(cluster: Cluster, nid: str, session_id: str) -> NodeInfo:
    """The live node that owns `session_id`; 410 when that node is gone."""
    reg = cluster.registry
    try:
        info = await reg.node(nid)
        record = {} if info is not None else await reg.session_record(session_id)
    except StoreError as exc:
        raise ClusterUnavailable(f"node {nid} is unknown here and the cluster's Redis is "
                                 f"unreachable: {exc or type(exc).__name__}") from None
    if info is not None:
        return info
    raise gone(session_id, record.get("reason", "node_lost"))


def gone(session_id: str, reason: str) -> SessionGone:
    """410 for a session that ended on a node of the cluster, saying why."""
    if reason == "node_lost":
        return NodeLost(f"session {session_id} ended: node_lost (its node is gone)")
    return SessionGone(f"session {session_id} ended: {reason}")


def _forward_headers(cluster: Cluster, request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in DROPPED_REQUEST and HEADER_VALUE.fullmatch(v)}
    headers[SECRET_HEADER] = cluster.settings.cluster_secret
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


async def _http(cluster: Cluster, request: web.Request, owner: NodeInfo) -> web.Response:
    s = cluster.settings
    url = URL(owner.internal_url).with_path(request.raw_path.split("?", 1)[0], encoded=True) \
        .with_query(request.rel_url.raw_query_string)
    headers = _forward_headers(cluster, request)
    headers["Host"] = request.host
    body = await request.read()
    timeout = aiohttp.ClientTimeout(total=s.acquire_timeout + s.start_timeout
                                    + s.request_timeout, sock_connect=s.proxy_connection_timeout)
    try:
        async with cluster.http.request(request.method, url, headers=headers, data=body,
                                        allow_redirects=False, timeout=timeout) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in DROPPED_RESPONSE}
            return web.Response(status=resp.status, body=payload, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _maybe_lost(cluster, owner, request)
        raise _unreachable(owner, exc) from None


def _unreachable(owner: NodeInfo, exc: BaseException) -> OwnerUnreachable:
    """The client learns which node did not answer; its internal address is only logged."""
    logger.warning("node %s at %s did not answer: %s", owner.nid, owner.internal_url,
                   exc or type(exc).__name__)
    return OwnerUnreachable(f"node {owner.nid} did not answer")


async def _maybe_lost(cluster: Cluster, owner: NodeInfo, request: web.Request) -> None:
    """An owner that does not answer may have died just now: say 410 if Redis agrees."""
    match = ids.SESSION_PATH.match(request.path)
    if match is None:
        return
    with contextlib.suppress(*StoreError):
        record = await cluster.registry.session_record(match.group(1))
        if record.get("state") == "gone":
            raise gone(match.group(1), record.get("reason", "node_lost"))


async def _websocket(cluster: Cluster, request: web.Request, owner: NodeInfo
                     ) -> web.StreamResponse:
    """Opens the owner's socket first (so a refusal is still an HTTP answer), then splices."""
    s = cluster.settings
    try:
        resp = accept_client(request)
    except ValueError as exc:
        raise InvalidArgument(f"bad WebSocket upgrade: {exc}") from None
    target = URL(owner.internal_url)
    try:
        upstream = await Upstream.open(
            target.port or 80, request.raw_path, s.proxy_connection_timeout,
            host=target.host or "127.0.0.1", host_header=request.host,
            headers=_forward_headers(cluster, request))
    except HandshakeFailed as exc:
        if exc.status in (403, 404, 410):
            raise _refused(exc.status, str(exc)) from None
        raise OwnerUnreachable(f"node {owner.nid} refused the WebSocket: {exc}") from None
    except (OSError, TimeoutError) as exc:
        await _maybe_lost(cluster, owner, request)
        raise _unreachable(owner, exc) from None
    try:
        writer = await resp.prepare(request)
        assert writer is not None
    except BaseException:
        upstream.close()
        raise
    splice = Splice(upstream, request, writer, max_message=s.max_ws_message_bytes,
                    on_messages=lambda direction, count: None)
    request.app[PROXY_SOCKETS].add(splice)
    lost = cluster.watch(owner.nid)
    try:
        await asyncio.wait({splice.finished, splice.dropped, lost},
                           return_when=asyncio.FIRST_COMPLETED)
        if not splice.finished.done():
            # the owner went without a close frame (killed, cut off), or was declared lost
            await splice.close(1011, "node_lost")
    except BaseException:
        splice.abort()
        raise
    finally:
        cluster.unwatch(owner.nid, lost)
    return resp


def _refused(status: int, detail: str) -> LkpoolError:
    """The owner's refusal of an ended or unknown session, with its status."""
    err = LkpoolError(f"the owner node refused the WebSocket: {detail}")
    err.status = status
    err.code = {403: "session_ended", 404: "unknown_session", 410: "session_gone"}[status]
    return err
