"""This node's membership of the cluster: it registers, heartbeats, and keeps what it knows
of the other nodes.

Every `CLUSTER_HEARTBEAT` seconds one script (heartbeat.lua) writes the node's record and
its whole session set (so a Redis that restarted empty learns it again, and counts never
drift), reaps nodes silent for `CLUSTER_NODE_TIMEOUT` (their sessions become gone with
reason `node_lost`), serves the queue, and answers the cluster's figures. The node's list
of live nodes is refreshed from the same round; it is what routing uses while Redis is
away. A start reaps the earlier incarnations of the same name at once, so a restarted node
never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import Settings
from ..tasks import spawn
from . import ids
from .store import Store, StoreError

if TYPE_CHECKING:
    from ..pool import Lease, Pool

logger = logging.getLogger("lkpool.cluster")

GONE_TTL = 3600.0  # seconds an ended session's record tells clients why it ended


@dataclass
class Figures:
    """The cluster as the last heartbeat saw it (for /health and /metrics)."""

    nodes_up: int = 0
    capacity: int = 0
    used: int = 0
    queued: int = 0


@dataclass
class NodeInfo:
    nid: str
    internal_url: str
    public_url: str
    state: str


@dataclass
class Registry:
    settings: Settings
    store: Store
    pool: Pool
    name: str = ""
    nid: str = ""
    internal_url: str = ""
    public_url: str = ""
    state: str = "up"  # or "draining"
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    figures: Figures | None = None  # None until a heartbeat reached Redis, and while it is away
    store_error: str | None = None  # why Redis cannot be used now; None when it can
    on_node_lost: list[Callable[[str], None]] = field(default_factory=list)
    _older: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _beat_now: asyncio.Event = field(default_factory=asyncio.Event)
    _heartbeat: asyncio.Task | None = None
    # ended here, not yet recorded in Redis (it was away): the next heartbeat says so
    _unreleased: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.name = self.name or ids.node_name(s)
        self.nid = self.nid or ids.new_nid(self.name)
        host = s.host if s.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.public_url = (s.public_url or f"http://{host}:{s.port}").rstrip("/")
        self.internal_url = (s.internal_url or s.public_url
                             or f"http://{host}:{s.port}").rstrip("/")

    # ---- timing, in the milliseconds the scripts take --------------------------------------

    @property
    def timeout_ms(self) -> int:
        return int(self.settings.cluster_node_timeout * 1000)

    @property
    def starting_ttl_ms(self) -> int:
        """A placed session not made within this frees its slot (its maker died)."""
        s = self.settings
        return int((s.acquire_timeout + s.start_timeout + s.request_timeout) * 1000)

    @property
    def request_ttl_ms(self) -> int:
        """A queued request outlives its waiter's ACQUIRE_TIMEOUT only by a little."""
        return int((self.settings.acquire_timeout + 2 * self.settings.cluster_heartbeat
                    + 5) * 1000)

    gone_ttl_ms = int(GONE_TTL * 1000)

    # ---- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Registers (reaping this name's earlier incarnations), then heartbeats."""
        self._older = await self._earlier_incarnations()
        await self.beat()
        if self.figures is not None:
            logger.info("node %s joined the cluster: %d nodes up, %d/%d slots used", self.nid,
                        self.figures.nodes_up, self.figures.used, self.figures.capacity)
        self._heartbeat = spawn(self._heartbeat_loop(), name="lkpool-cluster-heartbeat",
                                into=self._tasks, log=logger)

    async def _earlier_incarnations(self) -> list[str]:
        try:
            nids = await self.store.client.zrange(self.store.key("nodes", "hb"), 0, -1)
        except StoreError:
            return []
        return [str(n) for n in nids if ids.name_of(str(n)) == self.name and n != self.nid]

    async def drain(self) -> None:
        """No new placements here from now on (the record says `draining`)."""
        self.state = "draining"
        await self.beat()

    async def leave(self) -> None:
        """Stops heartbeating and removes the node's records (after its leases ended)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel(msg="node leaving")
        # the releases of the leases that just ended, within a heartbeat's time
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.cluster_heartbeat)
        for task in list(self._tasks):
            task.cancel(msg="node leaving")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*StoreError):
            await self.store.run("leave", self.nid, self.gone_ttl_ms)
            logger.info("node %s left the cluster", self.nid)

    async def _heartbeat_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.cluster_heartbeat):
                    await self._beat_now.wait()
            self._beat_now.clear()
            await self.beat()

    def beat_soon(self) -> None:
        self._beat_now.set()

    async def beat(self) -> None:
        """One heartbeat; a Redis that is away is noted (and said once), never raised."""
        s = self.settings
        live = [lease.session_id for lease in self.pool.list()]
        ended = list(self._unreleased)
        try:
            reaped, dropped, up, capacity, used, queued, flat = await self.store.run(
                "heartbeat", self.nid, self.internal_url, self.public_url, s.max_instances,
                self.state, __version__, self.timeout_ms, self.gone_ttl_ms,
                self.starting_ttl_ms, self.request_ttl_ms, len(self._older), *self._older,
                len(ended), *ended, *live)
        except StoreError as exc:
            if self.store_error is None:
                logger.warning("cluster store unreachable: %s", exc or type(exc).__name__)
            self.store_error = f"{type(exc).__name__}: {exc}"
            self.figures = None  # the store and the figures say the same, at any moment
            return
        if self.store_error is not None:
            logger.info("cluster store reachable again: state written anew")
        self._older = []
        self._unreleased.difference_update(ended)
        # both at once (no await between): /health never shows one without the other
        self.store_error = None
        self.figures = Figures(int(up), int(capacity), int(used), int(queued))
        nodes = {flat[i]: NodeInfo(*flat[i:i + 4]) for i in range(0, len(flat), 4)}
        for nid in reaped:
            logger.warning("node %s lost (no heartbeat): its sessions end as node_lost", nid)
        lost = set(self.nodes) - set(nodes)
        self.nodes = nodes
        for nid in lost | set(reaped):
            for callback in self.on_node_lost:
                callback(nid)
        for sid in dropped:  # the cluster gave these up while this node was cut off
            with contextlib.suppress(Exception):
                await self.pool.release(sid, "node_lost")

    # ---- lookups ------------------------------------------------------------------------

    async def node(self, nid: str) -> NodeInfo | None:
        """A live node by id: from what the last heartbeat saw, else asked of Redis (a node
        that joined since). Raises a StoreError when it is not known here and Redis is away."""
        info = self.nodes.get(nid)
        if info is not None:
            return info
        client = self.store.client
        seen = await client.zscore(self.store.key("nodes", "hb"), nid)
        if seen is None:
            return None
        rec = await client.hgetall(self.store.key("node", nid))
        if not rec:
            return None
        info = NodeInfo(nid, str(rec.get("internal_url", "")), str(rec.get("public_url", "")),
                        str(rec.get("state", "")))
        self.nodes[nid] = info
        return info

    async def session_record(self, session_id: str) -> dict[str, Any]:
        record = await self.store.client.hgetall(self.store.key("sess", session_id))
        return {str(k): str(v) for k, v in record.items()}

    # ---- the node's own sessions ----------------------------------------------------------

    def lease_ended(self, lease: Lease) -> None:
        """Pool event: the slot is free in the cluster at once (and goes to the queue)."""
        if ids.nid_of(lease.session_id) != self.nid:
            return
        spawn(self.release(lease.session_id, lease.end_reason or "released"),
              name="lkpool-cluster-release", into=self._tasks, log=logger)

    async def release(self, session_id: str, reason: str) -> None:
        try:
            await self.store.run("release", session_id, reason, self.gone_ttl_ms,
                                 self.timeout_ms, self.starting_ttl_ms, self.request_ttl_ms)
        except StoreError as exc:  # the next heartbeat that reaches Redis frees it
            self._unreleased.add(session_id)
            logger.debug("release of %s… not recorded now: %s", session_id[:12], exc)
