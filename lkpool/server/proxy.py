"""The DevTools proxy: /session/{id}/... reaches the DevTools endpoint of that session's
instance, and nothing else.

    GET  /session/{id}                      WebSocket: the browser target; HTTP: /json/version
    WS   /session/{id}/devtools/{kind}/{target}      a target's WebSocket
    HTTP /session/{id}/json[/...]           /json/version, /json/list, /json/new (PUT only,
                                            as Chromium: a GET is what a web page can send),
                                            /json/protocol, /json/activate|close/{target}
    HTTP /session/{id}/devtools/...         the DevTools front-end, when the browser has it

Every upstream URL is built from 127.0.0.1, the lease's own port and a path that passed
`checked_tail` (no '..', no percent-encoding, a fixed character set), so no path, header or
query reaches another host or port. DevTools' own URLs in the answers
(`webSocketDebuggerUrl`, `devtoolsFrontendUrl`) are rewritten to come back through here, at
the Host the client used. WebSockets are spliced byte for byte (`splice.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from ..errors import InvalidArgument, LkpoolError, UnknownSession
from ..pool import EndReason, Lease
from . import upstream as upstream_ws
from .appkeys import METRICS, POOL, PROXY_HTTP, PROXY_SOCKETS, SETTINGS
from .splice import Splice, accept_client
from .upstream import InstanceUnreachable, upstream_url
from .urls import ws_base

logger = logging.getLogger(__name__)

TAIL_RE = re.compile(r"[A-Za-z0-9._~\-/]{0,512}")
HTTP_TAIL_RE = re.compile(r"json(?:/.*)?|devtools/.+")
WS_TAIL_RE = re.compile(
    r"devtools/(?:browser|page|worker|shared_worker|service_worker|iframe|other)/"
    r"[A-Za-z0-9._\-]{1,128}")
# method the client used -> method sent to DevTools (which only speaks GET and PUT)
METHODS = {"GET": "GET", "HEAD": "HEAD", "PUT": "PUT"}
# Chromium's own CSRF guard since 111: /json/new creates a target, so only PUT (which no
# cross-site form or no-cors fetch can send) may reach it
PUT_ONLY = frozenset({"json/new"})
# endpoints that act on one target: only a target the instance lists (the lease's own)
TARGET_ACTIONS = re.compile(r"json/(?:close|activate)/(.*)")
REWRITTEN_KEYS = ("webSocketDebuggerUrl", "devtoolsFrontendUrl", "devtoolsFrontendUrlCompat")
# how a lease's end reaches a proxied WebSocket: close code by end reason
CLOSE_CODES: dict[str, int] = {
    EndReason.RELEASED: 1000,
    EndReason.SHUTDOWN: 1001,
    EndReason.CRASHED: 1011,
    EndReason.EXPIRED: 4001,
    EndReason.IDLE: 4002,
}
TOUCH_EVERY = 1.0  # seconds: activity is recorded at most this often per socket


class SessionEnded(LkpoolError):
    """The session exists no more for this instance (it ended, or its instance died)."""

    code = "session_ended"
    status = 403


def live_lease(request: web.Request) -> Lease:
    """The session's lease; 404 unknown, 403 when it ended (saying why)."""
    pool = request.app[POOL]
    session_id = request.match_info["session_id"]
    try:
        lease = pool.get(session_id)
    except UnknownSession:
        ended = pool.ended(session_id)
        if ended is None:
            raise
        raise SessionEnded(f"session {session_id} ended: {ended.end_reason}") from None
    if not lease.context.alive:
        raise SessionEnded(f"the instance of session {session_id} is gone: "
                           f"{lease.context.closed_reason or 'crashed'}")
    return lease


def checked_tail(request: web.Request) -> str:
    """The path after /session/{id}/, refused unless plainly safe."""
    raw_path = request.raw_path.split("?", 1)[0]
    tail = request.match_info.get("tail", "")
    if ("%" in raw_path or "\\" in raw_path or not TAIL_RE.fullmatch(tail)
            or "//" in tail or any(seg in (".", "..") for seg in tail.split("/"))):
        raise InvalidArgument(f"path not allowed through the proxy: {raw_path[:200]!r}")
    return tail


def _is_websocket(request: web.Request) -> bool:
    return (request.method == "GET"
            and request.headers.get("Upgrade", "").lower() == "websocket")


# ---- HTTP ---------------------------------------------------------------------------------

async def _fetch(request: web.Request, lease: Lease, tail: str, method: str = "GET"
                 ) -> tuple[int, str, bytes]:
    settings = request.app[SETTINGS]
    url = upstream_url(lease, "/" + tail, request.rel_url.raw_query_string)
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout,
                                    sock_connect=settings.proxy_connection_timeout)
    try:
        async with request.app[PROXY_HTTP].request(method, url, timeout=timeout,
                                                   allow_redirects=False) as resp:
            body = await resp.read()
            content_type = resp.headers.get("Content-Type", "application/octet-stream")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InstanceUnreachable(
            f"the instance's DevTools endpoint is not answering: {exc or type(exc).__name__}"
        ) from None
    request.app[METRICS].proxied_requests.inc()
    lease.touch()
    return resp.status, content_type, body


def rewrite(value: str, port: int, scheme: str, base: str) -> str:
    """One DevTools URL made to point back through the proxy."""
    for local in (f"127.0.0.1:{port}", f"localhost:{port}"):
        value = value.replace(f"ws://{local}/", f"{scheme}://{base}/")
        value = value.replace(f"ws={local}/", f"{scheme}={base}/")
    if value.startswith("/devtools/"):  # a relative front-end URL
        value = "/" + base.split("/", 1)[1] + value
    return value


def rewrite_json(data: Any, port: int, scheme: str, base: str) -> Any:
    if isinstance(data, list):
        return [rewrite_json(item, port, scheme, base) for item in data]
    if isinstance(data, dict):
        for key in REWRITTEN_KEYS:
            if isinstance(data.get(key), str):
                data[key] = rewrite(data[key], port, scheme, base)
    return data


async def _http(request: web.Request, lease: Lease, tail: str) -> web.Response:
    method = METHODS.get(request.method)
    if method is None:
        raise web.HTTPMethodNotAllowed(request.method, list(METHODS))
    if tail.rstrip("/") in PUT_ONLY and method != "PUT":
        raise web.HTTPMethodNotAllowed(request.method, ["PUT"],
                                       text=f"/{tail.rstrip('/')} needs PUT (as in Chromium)")
    await request.read()  # DevTools takes no body: reading it applies MAX_BODY_BYTES (413)
    if (action := TARGET_ACTIONS.fullmatch(tail)) is not None:
        await _own_target(request, lease, action.group(1))
    status, content_type, body = await _fetch(request, lease, tail, method)
    if content_type.startswith("application/json") and tail.rstrip("/") != "json/protocol":
        try:
            data = json.loads(body)
        except ValueError:
            pass
        else:
            scheme, base = ws_base(request, lease.session_id)
            body = json.dumps(rewrite_json(data, lease.debugging_port, scheme, base),
                              indent=2).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": content_type})


async def _own_target(request: web.Request, lease: Lease, target_id: str) -> None:
    """404 unless `target_id` is one of the targets the lease's instance lists."""
    _, _, body = await _fetch(request, lease, "json/list")
    try:
        ids = {t.get("id") for t in json.loads(body) if isinstance(t, dict)}
    except (ValueError, TypeError):
        raise InstanceUnreachable("the instance's /json/list is unusable") from None
    if target_id not in ids:
        raise web.HTTPNotFound(text=f"no target {target_id[:64]!r} in this session")


async def _browser_path(request: web.Request, lease: Lease) -> str:
    """The browser target's WebSocket path: known by the pool, or from /json/version."""
    if lease.browser_path and WS_TAIL_RE.fullmatch(lease.browser_path.lstrip("/")):
        return lease.browser_path
    status, _, body = await _fetch(request, lease, "json/version")
    try:
        path = URL(json.loads(body)["webSocketDebuggerUrl"]).path
    except (ValueError, KeyError, TypeError):
        raise InstanceUnreachable(f"the instance's /json/version is unusable ({status})") \
            from None
    if not WS_TAIL_RE.fullmatch(path.lstrip("/")):
        raise InstanceUnreachable(f"unexpected browser target path {path!r}")
    return path


# ---- WebSocket ----------------------------------------------------------------------------

async def _pipe(request: web.Request, lease: Lease, path: str) -> web.StreamResponse:
    """Connects to the target first (so a failure is still an HTTP 502), then splices."""
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    try:
        resp = accept_client(request)
    except ValueError as exc:
        raise InvalidArgument(f"bad WebSocket upgrade: {exc}") from None
    upstream = await upstream_ws.take(request.app, lease, path) or await upstream_ws.connect(
        request.app, lease, path)
    try:
        writer = await resp.prepare(request)
        assert writer is not None  # prepared just now, so it has a writer
    except BaseException:
        upstream.close()
        raise
    loop = asyncio.get_running_loop()
    counters = {"to_instance": metrics.to_instance, "to_client": metrics.to_client}
    last_touch = 0.0

    def on_messages(direction: str, count: int) -> None:
        nonlocal last_touch
        counters[direction].inc(count)
        now = loop.time()
        if now - last_touch >= TOUCH_EVERY:
            last_touch = now
            lease.touch()

    splice = Splice(upstream, request, writer, max_message=settings.max_ws_message_bytes,
                    on_messages=on_messages)
    request.app[PROXY_SOCKETS].add(splice)
    ended: asyncio.Future[Any] = asyncio.create_task(lease.wait_ended())
    try:
        await asyncio.wait({splice.finished, splice.dropped, ended},
                           return_when=asyncio.FIRST_COMPLETED)
        if splice.dropped.done() and not splice.dropped.cancelled() and not ended.done():
            # the instance dropped the connection: most likely it died, and the pool is
            # about to say so; give it a moment so the client learns the real reason
            await asyncio.wait({ended, splice.finished}, timeout=settings.health_check_interval
                               + settings.health_check_timeout)
        if not splice.finished.done():
            await splice.close(*_close_reason(lease, splice))
    except BaseException:
        splice.abort()
        raise
    finally:
        ended.cancel()
    return resp


def _close_reason(lease: Lease, splice: Splice) -> tuple[int, str]:
    if lease.end_reason is not None:
        return CLOSE_CODES.get(lease.end_reason, 4000), lease.end_reason
    if splice.upstream.closed:
        if not lease.context.alive:
            return CLOSE_CODES[EndReason.CRASHED], EndReason.CRASHED
        return 1011, "connection to the instance lost"
    return 1000, ""


# ---- routes -------------------------------------------------------------------------------

async def session_root(request: web.Request) -> web.StreamResponse:
    lease = live_lease(request)
    if _is_websocket(request):
        return await _pipe(request, lease, await _browser_path(request, lease))
    return await _http(request, lease, "json/version")


async def session_path(request: web.Request) -> web.StreamResponse:
    lease = live_lease(request)
    tail = checked_tail(request)
    if _is_websocket(request):
        if not WS_TAIL_RE.fullmatch(tail):
            raise web.HTTPNotFound(text=f"no WebSocket at /session/{{id}}/{tail}")
        return await _pipe(request, lease, "/" + tail)
    if not HTTP_TAIL_RE.fullmatch(tail):
        raise web.HTTPNotFound(text=f"the proxy only serves json/... and devtools/..., "
                                    f"not {tail!r}")
    return await _http(request, lease, tail)


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: proxied WebSockets are told the server is going away (1001)."""
    open_sockets = app[PROXY_SOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(*(s.close(1001, "server shutdown") for s in sockets),
                         return_exceptions=True)


def setup(app: web.Application) -> None:
    # registered last by the app: the catch-all must not shadow /session/{id}/frames etc.
    app.router.add_route("*", "/session/{session_id}", session_root)
    app.router.add_route("*", "/session/{session_id}/{tail:.*}", session_path)
    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(upstream_ws.preconnect_ctx)
