"""WebSocket connections from the proxy to an instance's DevTools (`splice.Upstream`), and
one opened early.

When POST /browser hands out a lease, the browser target's WebSocket is opened at once, while
the client reads the answer and connects; its first connection to /session/{id} then skips
one handshake. An early connection not taken within `PRECONNECT_KEEP` seconds, or whose lease
ends, is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from yarl import URL

from ..errors import InstanceError
from ..pool import Lease
from .appkeys import POOL, PRECONNECTED, SETTINGS
from .splice import HandshakeFailed, Upstream

PRECONNECT_KEEP = 30.0


class InstanceUnreachable(InstanceError):
    code = "instance_unreachable"
    status = 502


def upstream_url(lease: Lease, path: str, query: str = "", scheme: str = "http") -> URL:
    """Always 127.0.0.1 and the lease's own port: only the (checked) path varies."""
    return URL.build(scheme=scheme, host="127.0.0.1", port=lease.debugging_port, path=path,
                     query_string=query, encoded=True)


async def connect(app: web.Application, lease: Lease, path: str) -> Upstream:
    """`path` passed the proxy's checks; host and port are the lease's own."""
    # inside the instance's sandbox where the engine allows it: one relay fewer per message
    make_socket = getattr(lease.context, "devtools_socket", None)
    try:
        return await Upstream.open(lease.debugging_port, path,
                                   app[SETTINGS].proxy_connection_timeout,
                                   sock=make_socket() if make_socket is not None else None)
    except (OSError, TimeoutError, HandshakeFailed) as exc:
        raise InstanceUnreachable(
            f"the instance's DevTools WebSocket is not answering: {exc or type(exc).__name__}"
        ) from None


def preconnect(app: web.Application, lease: Lease) -> None:
    """Starts opening the browser target's WebSocket of a new lease."""
    if not lease.browser_path:
        return
    task = asyncio.get_running_loop().create_task(connect(app, lease, lease.browser_path),
                                                  name=f"lkpool-preconnect-{lease.slot_id}")
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failures: not needed
    app[PRECONNECTED][lease.session_id] = task
    asyncio.get_running_loop().call_later(PRECONNECT_KEEP, drop, app, lease.session_id, task)


async def take(app: web.Application, lease: Lease, path: str) -> Upstream | None:
    """The early connection of this lease to `path`, if there is a usable one."""
    task = app[PRECONNECTED].get(lease.session_id)
    if task is None or path != lease.browser_path:
        return None
    del app[PRECONNECTED][lease.session_id]
    try:
        up = await task
    except (InstanceError, asyncio.CancelledError):
        return None
    return None if up.closed else up


def drop(app: web.Application, session_id: str, task: asyncio.Task | None = None) -> None:
    """Closes an early connection nobody took (all of a lease's, or just `task`)."""
    current = app[PRECONNECTED].get(session_id)
    if current is None or (task is not None and current is not task):
        return
    del app[PRECONNECTED][session_id]
    if not current.done():
        current.cancel()
    elif not current.cancelled() and current.exception() is None:
        current.result().close()


async def preconnect_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: early connections go when their lease ends, and all at shutdown."""
    app[PRECONNECTED] = {}
    pool = app[POOL]
    listener = pool.on("lease_ended", lambda lease: drop(app, lease.session_id))
    try:
        yield
    finally:
        pool.off(listener)
        preconnected = app[PRECONNECTED]
        for session_id in list(preconnected):
            drop(app, session_id)
