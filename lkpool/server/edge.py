"""The edge: what a request must pass before any handler runs, and the limits that keep one
client from holding the server's memory or connections (SECURITY.md says why each exists).

- **Host.** A web page can rebind its own DNS name to 127.0.0.1 and then talk to the server
  as a same-origin page; its requests still carry that name in `Host`. So only IP addresses
  (a rebinding page never has one: its Host is a name), `localhost` names, `ALLOWED_HOSTS`
  and the host of `PUBLIC_URL` are served, as Chromium's own DevTools endpoint does.
- **Origin.** A web page may send forms, `no-cors` fetches and WebSockets anywhere. Every
  WebSocket upgrade and every state-changing request (anything but GET/HEAD/OPTIONS) that
  carries an `Origin` must come from the server's own origin (the Host it was reached at, or
  `PUBLIC_URL`) or one in `ALLOWED_ORIGINS`. Clients that are not browsers send no Origin
  and are not affected. Browsers also say `Sec-Fetch-Site: cross-site` on sub-resource
  requests from foreign sites (an `<img>` pointing at `/json/close/...`): those are refused
  too; a plain navigation (a link to the live view) is not.
- **JSON means JSON.** `read_json` is the one reader of JSON bodies: `application/json` or
  415, within `CLIENT_TIMEOUT`, nesting too deep for the parser a 400.
- **Sockets per session** are counted here, for every socket route alike (frames, input,
  CDP): past `MAX_SESSION_SOCKETS` a new one is accepted and closed with 1008 and a reason.
- **Slow clients.** `make_runner` sets aiohttp's keep-alive timeout to `CLIENT_TIMEOUT`:
  aiohttp arms it when a connection opens and again after each response, and closes the
  connection if it still waits for a request head then, so half a header is held no longer
  (aiohttp >= 3.14.5 arms it at connect; before, a first request head had no deadline).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import Settings
from ..errors import HostNotAllowed, InvalidArgument, OriginNotAllowed, UnsupportedMediaType
from .appkeys import FROM_PEER, SETTINGS
from .auth import is_session_route

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
SOCKET_LIMIT_CLOSE = 1008  # policy violation: the reason says which limit
MAX_SEEN = 1024  # (Host, Origin) verdicts kept
JSON_NAMES: dict[type, str] = {dict: "a JSON object", list: "a JSON list"}


def _split_host(host: str) -> tuple[str, str]:
    """'Name:port' -> ('name', 'port'); '[::1]:80' -> ('::1', '80'); lower case, no final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest.removeprefix(":")
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit():
        name, port = host, ""
    return name.rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _csv(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, the default port left out (as browsers send Origin)."""
    parts = urlsplit(url.strip().lower())
    name, port = _split_host(parts.netloc)
    host = f"[{name}]" if ":" in name else name
    if port and port != DEFAULT_PORTS.get(parts.scheme):
        host += f":{port}"
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True, slots=True)
class Policy:
    """Who is served, from the settings: computed once per app."""

    any_host: bool
    hosts: frozenset[str]  # exact names
    suffixes: tuple[str, ...]  # ".example.com" serves every name under example.com
    origins: frozenset[str]
    # verdicts already reached (a request costs a dict lookup, not an address parse);
    # cleared when full, so a client sending endless new names cannot grow it
    _seen: dict[tuple[str, str | None], bool] = field(default_factory=dict, compare=False,
                                                       hash=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        names = _csv(settings.allowed_hosts)
        origins = {_origin(o) for o in _csv(settings.allowed_origins)}
        if settings.public_url:
            names.append(_split_host(urlsplit(settings.public_url).netloc)[0])
            origins.add(_origin(settings.public_url))
        return cls(any_host="*" in names,
                   hosts=frozenset(n.rstrip(".") for n in names if not n.startswith(".")),
                   suffixes=tuple(n.rstrip(".") for n in names if n.startswith(".")),
                   origins=frozenset(origins))

    def allowed(self, host: str, origin: str | None) -> bool:
        """Whether `host` is served, and `origin` (when given) may act on it; cached."""
        key = (host, origin)
        verdict = self._seen.get(key)
        if verdict is None:
            verdict = self.host_allowed(host) and (
                origin is None or self.origin_allowed(origin, host))
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
            self._seen[key] = verdict
        return verdict

    def host_allowed(self, host: str) -> bool:
        name, _ = _split_host(host)
        return (self.any_host or _is_ip(name) or name == "localhost"
                or name.endswith(".localhost") or name in self.hosts
                or any(name.endswith(s) for s in self.suffixes))

    def origin_allowed(self, origin: str, host: str) -> bool:
        """The server's own origin (same host and port as the request's Host, http or https:
        TLS may end at a proxy in front) or a listed one. `null` never is."""
        if _origin(origin) in self.origins:
            return True
        parts = urlsplit(origin.strip().lower())
        if parts.scheme not in ("http", "https"):
            return False
        own = _split_host(host)
        theirs = _split_host(parts.netloc)
        return (own[0] == theirs[0]
                and (own[1] or DEFAULT_PORTS[parts.scheme])
                == (theirs[1] or DEFAULT_PORTS[parts.scheme]))


def is_websocket(request: web.Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def check(policy: Policy, request: web.Request) -> None:
    """Raises HostNotAllowed or OriginNotAllowed (403) when the request must not be served."""
    host = request.headers.get("Host")
    if host is not None and not policy.allowed(host, None):
        raise HostNotAllowed(f"this server does not answer to Host {host[:100]!r}: add it to "
                             "ALLOWED_HOSTS (or PUBLIC_URL) if that is its name")
    origin = request.headers.get("Origin")
    if origin is not None and (is_websocket(request) or request.method not in SAFE_METHODS):
        if not policy.allowed(host or request.host, origin):
            raise OriginNotAllowed(f"requests from web pages of {origin[:100]!r} are not "
                                   "allowed: add it to ALLOWED_ORIGINS if it should drive "
                                   "this server")
    elif (request.headers.get("Sec-Fetch-Site") == "cross-site"
          and request.headers.get("Sec-Fetch-Mode") != "navigate"
          and not (origin is not None and _origin(origin) in policy.origins)):
        raise OriginNotAllowed("requests that another site's page makes are not allowed")


class SocketCounter:
    """Open WebSockets per session id; an entry lives only while its count is above 0."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, session_id: str) -> int:
        return self._open.get(session_id, 0)

    def take(self, session_id: str) -> bool:
        n = self._open.get(session_id, 0)
        if n >= self.limit:
            return False
        self._open[session_id] = n + 1
        return True

    def give_back(self, session_id: str) -> None:
        n = self._open.get(session_id, 0) - 1
        if n > 0:
            self._open[session_id] = n
        else:
            self._open.pop(session_id, None)


async def _refuse_socket(request: web.Request, limit: int) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=SOCKET_LIMIT_CLOSE,
                   message=f"too many sockets on this session (MAX_SESSION_SOCKETS={limit})"
                   .encode())
    return ws


def middleware(settings: Settings) -> Any:
    """The edge middleware for an app with these settings (Host, Origin, socket counts)."""
    policy = Policy.from_settings(settings)
    sockets = SocketCounter(settings.max_session_sockets)

    @web.middleware
    async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.get(FROM_PEER, False):  # a peer node checked its client already
            check(policy, request)
        if not (is_websocket(request) and is_session_route(request)):
            return await handler(request)
        session_id = request.match_info.get("session_id", "")
        if not sockets.take(session_id):
            return await _refuse_socket(request, sockets.limit)
        try:
            return await handler(request)  # a socket's handler returns once it closed
        finally:
            sockets.give_back(session_id)

    return edge_middleware


# ---- JSON bodies ----------------------------------------------------------------------------

def is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json"))


def loads(text: str | bytes | bytearray) -> Any:
    """JSON text -> value; InvalidArgument (400) for anything the parser refuses, including
    nesting deeper than it recurses (which Python reports as RecursionError, not ValueError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidArgument("the JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None


async def read_json(request: web.Request, *, types: Iterable[type] = ()) -> Any:
    """The request's JSON body, None when it has none. A body sent with another content type
    is a 415 (a cross-site form can send text/plain, never application/json); one that takes
    longer than CLIENT_TIMEOUT to arrive is a 408. `types`: the accepted top-level types."""
    timeout = request.app[SETTINGS].client_timeout
    try:
        async with asyncio.timeout(timeout):
            body = await request.read()  # client_max_size turns a huge body into 413 here
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body did not arrive within {timeout:g} s "
                                          "(CLIENT_TIMEOUT)") from None
    if not body.strip():
        return None
    if not is_json_type(request.content_type):
        raise UnsupportedMediaType("the body must be sent as application/json, not "
                                   f"{request.content_type[:100]}")
    value = loads(body)
    types = tuple(types)
    if types and not isinstance(value, types):
        names = " or ".join(JSON_NAMES.get(t, t.__name__) for t in types)
        raise InvalidArgument(f"the body must be {names}")
    return value


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> web.AppRunner:
    """The app's runner, with the keep-alive timeout that also bounds a request head's
    arrival (see the module docstring)."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=settings.client_timeout,
                         **kwargs)
