"""Every typed key of the aiohttp application state, in one place (never string keys)."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from ..config import Settings

if TYPE_CHECKING:  # the types only: imports stay one-way at run time
    from ..cluster.node import Cluster
    from ..pool import Pool
    from .frames import Broadcasters
    from .mcp_http import McpEndpoint
    from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
POOL: web.AppKey[Pool] = web.AppKey("pool")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# the client session the proxy talks to instances with (one per app, pooled connections)
PROXY_HTTP = web.AppKey("proxy_http", aiohttp.ClientSession)
# session id -> the task opening its browser target's WebSocket early (server.upstream)
PRECONNECTED: web.AppKey[dict[str, asyncio.Task[Any]]] = web.AppKey("proxy_preconnected")
# client-side WebSockets of the proxy, closed with 1001 at shutdown
PROXY_SOCKETS: web.AppKey[weakref.WeakSet[Any]] = web.AppKey("proxy_sockets")
# /session/{id}/frames broadcasters, one per watched page (lkpool.server.stream)
BROADCASTERS: web.AppKey[Broadcasters] = web.AppKey("lkpool_broadcasters")
# this node's part in a cluster (lkpool.cluster), only when REDIS_URL is set
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster")
# a request another node of the cluster forwarded (it carries CLUSTER_SECRET): that node's
# edge and TOKEN check passed it already, so this one's do not ask again
FROM_PEER: web.RequestKey[bool] = web.RequestKey("from_peer", bool)
# session id -> its LiveKit publication (lkpool.server.publishing)
PUBLICATIONS: web.AppKey[dict[str, Any]] = web.AppKey("publications")
# the MCP server over streamable HTTP at /mcp and its sessions (lkpool.server.mcp_http)
MCP_ENDPOINT: web.AppKey[McpEndpoint] = web.AppKey("mcp_endpoint")
