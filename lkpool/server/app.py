"""The application factory: `create_app(settings, pool=None) -> web.Application`.

Each resource is one `cleanup_ctx` generator (set up, `yield`, torn down in reverse order):
the metrics, the pool (unless the caller brought one, which it then owns), and the HTTP
client the proxy reaches instances with. Routes come from a table of modules, each with a
`setup(app)`. `serve_local` runs an app on a free port of 127.0.0.1 (the in-process pool of
`lkpool screenshot`, tests, benches).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import weakref
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..config import Settings
from ..pool import Pool
from . import edge
from .appkeys import METRICS, POOL, PROXY_HTTP, PROXY_SOCKETS, SETTINGS
from .auth import auth_middleware
from .errors import error_middleware
from .metrics import Metrics

logger = logging.getLogger(__name__)

# order matters: the proxy's /session/{id}/{tail} catch-all comes last
ROUTE_MODULES: tuple[str, ...] = (
    "lkpool.server.rest",
    "lkpool.server.openapi",
    "lkpool.server.stream",
    "lkpool.server.publishing",
    "lkpool.server.computer",
    "lkpool.server.mcp_http",
    "lkpool.server.proxy",
)


def create_app(settings: Settings | None = None, pool: Pool | None = None) -> web.Application:
    settings = settings or (pool.settings if pool else Settings.from_env())
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[error_middleware, edge.middleware(settings),
                                       auth_middleware])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[PROXY_SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(_pool_ctx(pool))
    app.cleanup_ctx.append(_proxy_http_ctx)
    for name in ROUTE_MODULES:
        importlib.import_module(name).setup(app)
    if settings.redis_url:  # one API over many machines; without Redis, one node as ever
        from ..cluster.node import install

        install(app, settings)
    return app


@contextlib.asynccontextmanager
async def serve_local(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
    """An app with its own pool on a free port of 127.0.0.1: yields its base URL and the app;
    leaving stops the pool (every browser, shm segment and profile)."""
    app = create_app(settings)
    runner = edge.make_runner(app, settings)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", app
    finally:
        await runner.cleanup()


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
