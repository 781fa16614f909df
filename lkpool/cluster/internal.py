"""The node-to-node endpoints, under /_cluster/, each needing CLUSTER_SECRET.

    GET  /_cluster/channel    the placement's calls, over one WebSocket per peer (channel.py):
                              acquire (make the lease of a session placed on this node),
                              release (end one made for a caller who went away)
    GET  /_cluster/browsers   this node's instances and leases, for GET /browsers anywhere
    POST /_cluster/drain      no more placements here (Kubernetes' preStop), its leases
                              carry on until they end; answers how many are left

Their middleware runs first (after the error middleware): the secret stands for the edge's
Host/Origin check and the token here, so these endpoints are no way around them (a request
without the secret gets 403, and nothing under /_cluster/ answers when the node is not in a
cluster). A session request another node forwarded carries the secret too: that node's
edge and TOKEN check passed its client already (with the client's Host, which the owner
writes into its URLs), so the owner marks it FROM_PEER and does not check again; it may
also say which scheme the client used (X-Forwarded-Proto).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH
from ..errors import InvalidArgument, LkpoolError
from ..server.appkeys import FROM_PEER
from . import channel, ids

if TYPE_CHECKING:
    from .node import Cluster

SECRET_HEADER = "X-Lkpool-Cluster-Secret"
PREFIX = "/_cluster/"


class Forbidden(LkpoolError):
    code = "forbidden"
    status = 403


def from_peer(request: web.Request, secret: str) -> bool:
    """True when the request carries the cluster's secret (a node forwarded it)."""
    given = request.headers.get(SECRET_HEADER, "")
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def middleware(cluster: Cluster) -> Any:
    @web.middleware
    async def internal_middleware(request: web.Request, handler: Handler
                                  ) -> web.StreamResponse:
        if from_peer(request, cluster.settings.cluster_secret) and _forwardable(cluster,
                                                                               request):
            proto = request.headers.get("X-Forwarded-Proto", "")
            if proto in ("http", "https") and proto != request.scheme:
                request = request.clone(scheme=proto)
            request[FROM_PEER] = True
        if not request.path.startswith(PREFIX):
            return await handler(request)
        if not from_peer(request, cluster.settings.cluster_secret):
            raise Forbidden("node-to-node endpoint: the cluster secret is needed")
        route_handler = request.match_info.handler  # past TOKEN auth: the secret stands in
        return await route_handler(request)
    return internal_middleware


def _forwardable(cluster: Cluster, request: web.Request) -> bool:
    """What a peer forwards: a request about one of this node's sessions, nothing else (the
    secret is no token for POST /browser, /browsers or another node's sessions)."""
    match = ids.SESSION_PATH.match(request.path)
    return match is not None and ids.nid_of(match.group(1)) == cluster.registry.nid


def _option(body: dict[str, Any], name: str, lo: float, hi: float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} out of range: {value!r}")
    return value


def _session_id(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
        raise InvalidArgument("an object with a session_id is needed")
    return body["session_id"]


def routes(cluster: Cluster) -> list[web.RouteDef]:
    async def acquire(body: Any) -> dict[str, Any]:
        sid = _session_id(body)
        options = {"url": body.get("url"),
                   "width": _option(body, "width", 1, MAX_WIDTH),
                   "height": _option(body, "height", 1, MAX_HEIGHT),
                   "framerate": _option(body, "framerate", 1, MAX_FRAMERATE)}
        if options["url"] is not None and not isinstance(options["url"], str):
            raise InvalidArgument("url must be a string")
        timeout = _option(body, "timeout", 0.001, cluster.settings.max_lease_timeout)
        wait = _option(body, "wait", 0, cluster.settings.max_lease_timeout) or 0.0
        return await cluster.placement.make_local(sid, timeout, options, wait)

    async def release(body: Any) -> dict[str, Any]:
        sid = _session_id(body)
        return {"session_id": sid, "released": await cluster.placement.release_local(sid)}

    async def browsers(request: web.Request) -> web.Response:
        return web.json_response(cluster.local_browsers())

    async def drain(request: web.Request) -> web.Response:
        await cluster.drain()
        return web.json_response({"state": cluster.registry.state,
                                  "leases": len(cluster.registry.pool.list())})

    return [channel.route({"acquire": acquire, "release": release}),
            web.get(PREFIX + "browsers", browsers), web.post(PREFIX + "drain", drain)]
