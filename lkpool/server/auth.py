"""TOKEN auth: when `TOKEN` is set, every endpoint but `/session/{id}/...`, `/health` and the
lease list's page needs it.

Under `/session/{id}/` the unguessable session id is the capability (a Playwright or
Puppeteer client cannot add headers to the URLs the proxy hands back). The check is made on
the route that matched, not on the raw path, so no path trick moves a request across.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from .appkeys import FROM_PEER, SETTINGS

SESSION_PREFIX = "/session/{session_id}"
# what holds no data: the lease list's page (it asks for the token itself) and /health (so a
# container's health check needs no secret; it tells only whether the pool is up)
PUBLIC_PAGES = frozenset({"/", "/health"})


def is_session_route(request: web.Request) -> bool:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource is not None and resource.canonical.startswith(SESSION_PREFIX)


def is_public_page(request: web.Request) -> bool:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return (request.method in ("GET", "HEAD") and resource is not None
            and resource.canonical in PUBLIC_PAGES)


def presented_token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.query.get("token", "")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].token
    if (token and not is_session_route(request) and not is_public_page(request)
            and not request.get(FROM_PEER, False)):  # the entry node checked the client's
        if not hmac.compare_digest(presented_token(request).encode(), token.encode()):
            raise web.HTTPUnauthorized(text="a valid token is needed (?token= or "
                                            "Authorization: Bearer)",
                                       headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)
