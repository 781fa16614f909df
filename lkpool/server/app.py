"""The application factory: `create_app(settings, pool=None) -> web.Application`.

Each resource is one `cleanup_ctx` generator (set up, `yield`, torn down in reverse order):
the metrics, the pool (unless the caller brought one, which it then owns), and the HTTP
client the proxy reaches instances with. Routes come from a table of modules, each with a
`setup(app)`; modules written by others that are not there yet are skipped.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..config import Settings
from ..pool import Pool
from .appkeys import METRICS, POOL, PROXY_HTTP, PROXY_SOCKETS, SETTINGS
from .auth import auth_middleware
from .errors import error_middleware
from .metrics import Metrics

logger = logging.getLogger(__name__)

# (module, required): order matters, the proxy's /session/{id}/{tail} catch-all comes last
ROUTE_MODULES: tuple[tuple[str, bool], ...] = (
    ("lkpool.server.rest", True),
    ("lkpool.server.openapi", True),
    ("lkpool.server.stream", False),
    ("lkpool.server.publishing", False),
    ("lkpool.server.proxy", True),
)


def create_app(settings: Settings | None = None, pool: Pool | None = None) -> web.Application:
    settings = settings or (pool.settings if pool else Settings.from_env())
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[error_middleware, auth_middleware])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[PROXY_SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(_pool_ctx(pool))
    app.cleanup_ctx.append(_proxy_http_ctx)
    for name, required in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if required or exc.name != name:
                raise
            logger.debug("%s is not there yet: its routes are skipped", name)
            continue
        module.setup(app)
    return app


def _pool_ctx(given: Pool | None):
    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = given or Pool(app[SETTINGS])
        app[POOL] = pool
        if given is None:
            await pool.start()
        app[METRICS].watch(pool)
        try:
            yield
        finally:
            app[METRICS].unwatch()
            if given is None:
                await pool.aclose()  # ends every lease: proxied sockets close with 1001
    return pool_ctx


async def _proxy_http_ctx(app: web.Application) -> AsyncIterator[None]:
    # DevTools endpoints are local: no cookies kept, no proxy from the environment
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     trust_env=False) as session:
        app[PROXY_HTTP] = session
        yield
