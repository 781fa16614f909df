"""Every typed key of the aiohttp application state, in one place (never string keys)."""

from __future__ import annotations

import weakref

import aiohttp
from aiohttp import web

from ..config import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", "Pool")  # lkpool.pool.Pool; a string to keep imports one-way
METRICS = web.AppKey("metrics", "Metrics")  # lkpool.server.metrics.Metrics
# the client session the proxy talks to instances with (one per app, pooled connections)
PROXY_HTTP = web.AppKey("proxy_http", aiohttp.ClientSession)
# session id -> the task opening its browser target's WebSocket early (server.upstream)
PRECONNECTED = web.AppKey("proxy_preconnected", dict)
# client-side WebSockets of the proxy, closed with 1001 at shutdown
PROXY_SOCKETS = web.AppKey("proxy_sockets", weakref.WeakSet)
# /session/{id}/frames broadcasters, one per watched page (lkpool.server.stream)
BROADCASTERS = web.AppKey("lkpool_broadcasters", "Broadcasters")
# session id -> its LiveKit publication (lkpool.server.publishing)
PUBLICATIONS = web.AppKey("publications", dict)
