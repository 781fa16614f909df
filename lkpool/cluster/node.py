"""One node of the cluster as the server sees it: `Cluster` ties the registry, placement and
routing to the app, and `install(app)` puts them in (only when REDIS_URL is set: without it
the server is the single node it always was).

Middleware order: errors → internal (/_cluster/, the secret; marks forwarded requests) →
edge (Host, Origin) → TOKEN auth → routing (sessions of other nodes) → the routes. The
cluster starts after the pool (its heartbeat lists the pool's leases) and stops before it:
drain, then the pool ends every lease (`shutdown`), then the node leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import Settings
from ..pool import Pool
from ..server.appkeys import CLUSTER, METRICS, POOL
from . import internal, routing
from .channel import Channels
from .placement import Placement
from .registry import Registry
from .store import Store, StoreError

logger = logging.getLogger("lkpool.cluster")


class Cluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.redis_url, timeout=max(0.5, settings.cluster_node_timeout))
        self._registry: Registry | None = None
        self._placement: Placement | None = None
        self._http: aiohttp.ClientSession | None = None
        self._channels: Channels | None = None
        self._watchers: dict[str, set[asyncio.Future[None]]] = {}

    @property
    def registry(self) -> Registry:
        assert self._registry is not None, "the cluster has not started"
        return self._registry

    @property
    def placement(self) -> Placement:
        assert self._placement is not None, "the cluster has not started"
        return self._placement

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "the cluster has not started"
        return self._http

    async def start(self, pool: Pool) -> None:
        # node-to-node: no cookies, no proxy from the environment, connections kept
        self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                           trust_env=False)
        self._registry = Registry(self.settings, self.store, pool)
        secret = {internal.SECRET_HEADER: self.settings.cluster_secret}
        self._channels = Channels(self._http, secret, open_timeout=self.settings.request_timeout)
        self._placement = Placement(self._registry, pool, self._channels)
        self._registry.on_node_lost.append(self._node_lost)
        pool.on("lease_ended", self._registry.lease_ended)
        await self._registry.start()

    async def drain(self) -> None:
        """SIGTERM: this node takes no more placements (it still serves its sessions)."""
        if self._registry is not None and self._registry.state != "draining":
            await self._registry.drain()
            logger.info("node %s draining", self._registry.nid)

    async def aclose(self) -> None:
        if self._registry is not None:
            await self._registry.leave()
        if self._channels is not None:
            await self._channels.aclose()
        if self._http is not None:
            await self._http.close()
        await self.store.aclose()

    # ---- sockets proxied to other nodes close when their node is lost -------------------

    def watch(self, nid: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(nid, set()).add(fut)
        return fut

    def unwatch(self, nid: str, fut: asyncio.Future[None]) -> None:
        fut.cancel()
        self._watchers.get(nid, set()).discard(fut)

    def _node_lost(self, nid: str) -> None:
        if self._channels is not None:
            self._channels.drop(nid)
        for fut in self._watchers.pop(nid, set()):
            if not fut.done():
                fut.set_result(None)

    # ---- GET /browsers over the whole cluster -------------------------------------------

    def local_browsers(self) -> list[dict[str, Any]]:
        from ..server.rest import local_browsers

        return [entry | {"node": self.registry.nid}
                for entry in local_browsers(self.registry.pool)]

    async def browsers(self) -> list[dict[str, Any]]:
        """Every node's instances and leases, each with its node (a node that does not
        answer in time is left out, and named in the log)."""
        reg = self.registry
        others = [info for nid, info in reg.nodes.items() if nid != reg.nid]

        async def ask(url: str) -> list[dict[str, Any]]:
            async with self.http.get(
                    f"{url}/_cluster/browsers",
                    headers={internal.SECRET_HEADER: self.settings.cluster_secret},
                    timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout)) as r:
                r.raise_for_status()
                return list(await r.json())

        answers = await asyncio.gather(*(ask(info.internal_url) for info in others),
                                       return_exceptions=True)
        out = self.local_browsers()
        for info, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                logger.warning("node %s did not list its browsers: %s", info.nid, answer)
            else:
                out += answer
        return out

    def health(self) -> dict[str, Any]:
        """The node, and the cluster's figures from the last heartbeat that reached Redis;
        while Redis is away they are unknown (null), never the last ones seen."""
        reg = self.registry
        f = reg.figures
        return {"node": reg.nid, "state": reg.state, "store": reg.store_error or "ok",
                "nodes_up": f and f.nodes_up, "capacity": f and f.capacity,
                "used": f and f.used, "queued": f and f.queued}


class ClusterCollector(Collector):
    """/metrics: the cluster's figures as the last heartbeat saw them (no Redis call in a
    scrape)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        reg = self.cluster._registry
        if reg is None:
            return
        yield GaugeMetricFamily("lkpool_cluster_store_up",
                                "1 while this node reaches the cluster's Redis",
                                value=int(reg.store_error is None))
        f = reg.figures
        if f is None:  # Redis away: the figures are unknown, not the last ones seen
            return
        for name, doc, value in (
                ("nodes_up", "nodes whose heartbeat is fresh", f.nodes_up),
                ("capacity", "slots of the nodes taking placements", f.capacity),
                ("used", "slots placed or leased across the cluster", f.used),
                ("queued", "allocations waiting in the cluster's queue", f.queued)):
            yield GaugeMetricFamily(f"lkpool_cluster_{name}", doc, value=value)


def install(app: web.Application, settings: Settings) -> None:
    """Cluster mode: the middlewares, the internal routes and the node's life."""
    cluster = Cluster(settings)
    app[CLUSTER] = cluster
    mws = app.middlewares
    # after the error middleware (index 0), before the edge and TOKEN auth; routing after
    mws.insert(1, internal.middleware(cluster))
    mws.append(routing.middleware(cluster))
    app.router.add_routes(internal.routes(cluster))
    app[METRICS].registry.register(ClusterCollector(cluster))

    async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
        from ..server import upstream

        pool = app[POOL]
        await cluster.start(pool)
        cluster.placement.on_made = functools.partial(upstream.preconnect, app)
        try:
            yield
        finally:
            # drain, end every lease (`shutdown`, each slot freed in Redis), then leave;
            # the pool's own context closes it again later, which is a no-op
            with contextlib.suppress(*StoreError):
                await cluster.drain()
            await pool.aclose()
            await cluster.aclose()

    app.cleanup_ctx.append(cluster_ctx)

    async def drain_on_shutdown(app: web.Application) -> None:
        with contextlib.suppress(*StoreError):
            await cluster.drain()

    app.on_shutdown.insert(0, drain_on_shutdown)

