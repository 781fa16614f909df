"""The public URLs of a session, built from the Host the client used (checked first, so an
odd Host header can neither break the URLs we hand out nor smuggle anything into them)."""

from __future__ import annotations

import re

from aiohttp import web

from ..errors import InvalidArgument

# a DNS name or IPv4 address, or a bracketed IPv6 address, and an optional port
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])"
                     r"(?::[0-9]{1,5})?$")


def public_host(request: web.Request) -> str:
    host = request.host
    if not HOST_RE.fullmatch(host or ""):
        raise InvalidArgument(f"unusable Host header {host!r}")
    return host


def session_urls(request: web.Request, session_id: str) -> tuple[str, str]:
    """(proxy_url, ws_url) of a session: http(s)://host/session/ID and ws(s)://..."""
    host = public_host(request)
    secure = request.scheme == "https"
    path = f"/session/{session_id}"
    return (f"{'https' if secure else 'http'}://{host}{path}",
            f"{'wss' if secure else 'ws'}://{host}{path}")


def ws_base(request: web.Request, session_id: str) -> tuple[str, str]:
    """(scheme, host/session/ID) for rewriting DevTools' own URLs."""
    host = public_host(request)
    return ("wss" if request.scheme == "https" else "ws"), f"{host}/session/{session_id}"
