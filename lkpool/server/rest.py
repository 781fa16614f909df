"""The REST API, chrome-pool compatible: /browser, /browsers, /health, /metrics.

    POST   /browser?timeout=S            allocate (also url, width, height, framerate; query
                                         or JSON body) -> session_id, proxy_url, ws_url, ...
    GET    /browser/{session_id}         one lease, also a recently ended one (end_reason)
    DELETE /browser/{session_id}         release
    POST   /browser/{session_id}/timeout?timeout=S   extend by S seconds
    GET    /browsers                     every instance, and leases that ended crashed
    GET    /health, GET /metrics
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH
from ..errors import CallerGone, InvalidArgument, UnknownSession
from ..pool import EndReason, Lease, Pool, State
from . import upstream
from .appkeys import CLUSTER, METRICS, POOL, SETTINGS
from .edge import read_json
from .metrics import CONTENT_TYPE
from .urls import public_host, session_urls

routes = web.RouteTableDef()

URL_SCHEMES = frozenset({"http", "https", "about", "data"})
MAX_URL_LENGTH = 8192


def _number(params: dict[str, Any], name: str, kind: type, lo: float, hi: float) -> Any:
    """`params[name]` as `kind` in lo..hi, None when absent; 400 naming it otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    what = "an integer" if kind is int else "a number"
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if kind is int and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be {what} in {lo:g}..{hi:g}, got {raw!r}") from None
    if not lo <= value <= hi:  # also false for nan
        raise InvalidArgument(f"{name} must be {what} in {lo:g}..{hi:g}, got {raw!r}")
    return kind(value)


def _url(params: dict[str, Any]) -> str | None:
    url = params.get("url")
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"url must be a string of at most {MAX_URL_LENGTH} characters")
    if urlsplit(url).scheme.lower() not in URL_SCHEMES:
        raise InvalidArgument(f"url must use one of {', '.join(sorted(URL_SCHEMES))}: {url!r}")
    return url


async def _params(request: web.Request) -> dict[str, Any]:
    """Query parameters, overridden by a JSON object body when there is one."""
    params: dict[str, Any] = dict(request.query)
    params.update(await read_json(request, types=(dict,)) or {})
    return params


def _timeout(request: web.Request, params: dict[str, Any]) -> float | None:
    return _number(params, "timeout", float, 1, request.app[SETTINGS].max_lease_timeout)


def lease_json(lease: Lease) -> dict[str, Any]:
    return {"session_id": lease.session_id, "debugging_port": lease.debugging_port,
            "active": lease.active, "created_at": lease.created_at,
            "expires_at": lease.expires_at, "last_used": lease.last_used,
            "timeout": round(lease.remaining, 3), "end_reason": lease.end_reason}


def _lookup(pool: Pool, session_id: str) -> Lease:
    """An active or recently ended lease; 404 otherwise."""
    try:
        return pool.get(session_id)
    except UnknownSession:
        ended = pool.ended(session_id)
        if ended is None:
            raise
        return ended


def _caller_gone(request: web.Request) -> bool:
    """The client closed its connection (aiohttp lets the handler run on): a lease made for
    it now would be held by nobody until it timed out."""
    return request.transport is None or request.transport.is_closing()


@routes.post("/browser")
async def allocate(request: web.Request) -> web.Response:
    params = await _params(request)
    timeout = _timeout(request, params)
    options = {
        "url": _url(params),
        "width": _number(params, "width", int, 1, MAX_WIDTH),
        "height": _number(params, "height", int, 1, MAX_HEIGHT),
        "framerate": _number(params, "framerate", int, 1, MAX_FRAMERATE),
    }
    public_host(request)  # an unusable Host fails before an instance is taken
    cluster = request.app.get(CLUSTER)
    if cluster is not None:  # placed on any node of the cluster, made by its owner
        answer = await cluster.placement.allocate(timeout, options,
                                                  gone=lambda: _caller_gone(request))
        proxy_url, ws_url = session_urls(request, answer["session_id"])
        return web.json_response({
            "session_id": answer["session_id"], "proxy_url": proxy_url, "ws_url": ws_url,
            "debugging_port": answer["debugging_port"], "expires_at": answer["expires_at"],
            "timeout": answer["timeout"], "node": answer["node"]})
    pool = request.app[POOL]
    lease = await pool.acquire(timeout, **options)
    if _caller_gone(request):  # it hung up while it waited: nobody to hand the lease to
        with contextlib.suppress(UnknownSession):
            await pool.release(lease.session_id, EndReason.CANCELLED)
        raise CallerGone("the caller went away before its lease was made")
    upstream.preconnect(request.app, lease)
    proxy_url, ws_url = session_urls(request, lease.session_id)
    return web.json_response({
        "session_id": lease.session_id, "proxy_url": proxy_url, "ws_url": ws_url,
        "debugging_port": lease.debugging_port, "expires_at": lease.expires_at,
        "timeout": round(lease.remaining, 3),
    })


@routes.get("/browser/{session_id}")
async def describe(request: web.Request) -> web.Response:
    return web.json_response(lease_json(_lookup(request.app[POOL],
                                                 request.match_info["session_id"])))


@routes.delete("/browser/{session_id}")
async def release(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    lease = _lookup(pool, request.match_info["session_id"])
    released = lease.active
    if released:
        await pool.release(lease.session_id, EndReason.RELEASED)
    return web.json_response({"session_id": lease.session_id, "released": released,
                              "end_reason": lease.end_reason})


@routes.post("/browser/{session_id}/timeout")
async def extend(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    session_id = request.match_info["session_id"]
    pool.get(session_id)  # 404 before 400: an unknown session is the bigger news
    params = await _params(request)
    seconds = _timeout(request, params)
    lease = pool.extend(session_id, request.app[SETTINGS].lease_timeout
                        if seconds is None else seconds)
    return web.json_response({"session_id": lease.session_id, "expires_at": lease.expires_at,
                              "timeout": round(lease.remaining, 3)})


@routes.get("/browsers")
async def browsers(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    if cluster is not None:  # every node's, each entry naming its node
        return web.json_response(await cluster.browsers())
    return web.json_response(local_browsers(request.app[POOL]))


def local_browsers(pool: Pool) -> list[dict[str, Any]]:
    """This node's instances (idle and leased), and leases that ended crashed."""
    out = []
    for slot in pool.slots():
        if slot.state in (State.IDLE, State.LEASED):
            lease = slot.lease
            entry = lease_json(lease) if lease else {
                "session_id": None, "debugging_port": slot.debugging_port, "active": False,
                "last_used": slot.last_used, "timeout": 0, "end_reason": None}
            out.append(entry | {"state": slot.state.value})
    out += [lease_json(lease) | {"state": State.DEAD.value} for lease in pool.ended_leases()
            if lease.end_reason == EndReason.CRASHED]
    return out


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    counts = pool.counts()
    status = "closing" if pool.closed else "degraded" if counts["degraded"] else "ok"
    body: dict[str, Any] = {"status": status, "pool": counts}
    cluster = request.app.get(CLUSTER)
    if cluster is not None:  # nodes up, capacity, used, queue length, as last heard
        body["cluster"] = cluster.health()
    return web.json_response(body, status=200 if status == "ok" else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE})


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
