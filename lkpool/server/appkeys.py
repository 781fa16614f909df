"""Every typed key of the aiohttp application state, in one place (never string keys)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..config import Settings

if TYPE_CHECKING:
    from ..pool import Pool
    from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", "Pool")
METRICS = web.AppKey("metrics", "Metrics")
# the client session the proxy talks to instances with (one per app, pooled connections)
PROXY_HTTP = web.AppKey("proxy_http", aiohttp.ClientSession)
# client-side WebSockets of the proxy, closed with 1001 at shutdown
PROXY_SOCKETS = web.AppKey("proxy_sockets", weakref.WeakSet)
