"""POST /browser on any node: place the lease, wait in the cluster's queue when every node is
full, and have the owner make it.

    place.lua ──placed──► this node: pool.acquire(session_id=sid)
        │                 another:   "acquire" over the channel to the owner (who checks the claim)
        └──queued──► BLPOP req:{rid}:answer up to ACQUIRE_TIMEOUT
                        ├── answer: as placed
                        └── none:   cancel.lua (undoes a place made meanwhile) → 503

A caller who gives up (timeout, disconnect) never gets a browser started: the owner only
starts one for a claim that is still `starting`, and cancel.lua removes the claim of a
request that was answered too late. Redis away: 503 `cluster_unavailable` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..errors import (
    CallerGone,
    ClusterUnavailable,
    InvalidArgument,
    LkpoolError,
    PoolExhausted,
    UnknownSession,
)
from ..pool import EndReason, Lease, Pool
from . import ids
from .channel import Channels
from .registry import Registry
from .store import StoreError

logger = logging.getLogger("lkpool.cluster")

WAIT_STEP = 0.25  # seconds of one BLPOP: how soon a waiter that went away leaves the queue


def lease_answer(lease: Lease) -> dict[str, Any]:
    """What the owner tells the entry node about a new lease (the entry adds its URLs)."""
    return {"session_id": lease.session_id, "debugging_port": lease.debugging_port,
            "expires_at": lease.expires_at, "timeout": round(lease.remaining, 3),
            "node": ids.nid_of(lease.session_id)}


class Placement:
    def __init__(self, registry: Registry, pool: Pool, channels: Channels) -> None:
        self.registry = registry
        self.pool = pool
        self.channels = channels
        self.settings = registry.settings
        # called with each lease this node makes (the server opens its browser socket early)
        self.on_made: Callable[[Lease], None] | None = None

    async def allocate(self, timeout: float | None, options: dict[str, Any],
                       gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Places and makes one lease somewhere in the cluster; its answer as a dict.
        `gone()` tells whether the caller went away (a closed connection): then nothing is
        placed for it, and a lease made meanwhile is released at once."""
        reg = self.registry
        # a draining node still places, elsewhere: the scripts never pick a draining node
        preferred = reg.nid if reg.state == "up" else ""
        wait = self.settings.acquire_timeout
        deadline = time.monotonic() + wait
        rid = secrets.token_urlsafe(12)
        try:
            result = await reg.store.run(
                "place", preferred, ids.new_random(), reg.starting_ttl_ms, reg.timeout_ms,
                rid, reg.request_ttl_ms)
            sid = result[1] if result[0] == "placed" else await self._wait(rid, deadline, gone)
        except StoreError as exc:
            raise ClusterUnavailable(
                f"the cluster's Redis is unreachable, so no lease can be placed: "
                f"{exc or type(exc).__name__}") from None
        try:
            answer = await self._make(sid, timeout, options,
                                      max(0.0, deadline - time.monotonic()))
        except StoreError as exc:
            raise ClusterUnavailable(f"the cluster's Redis is unreachable: "
                                     f"{exc or type(exc).__name__}") from None
        if gone():  # nobody to hand it to: the slot goes back at once
            await self._release_remote(sid)
            raise CallerGone("the caller went away before the lease was made")
        return answer

    async def _release_remote(self, sid: str) -> None:
        """Ends a lease just made for a caller who left, on whichever node owns it."""
        reg = self.registry
        if ids.nid_of(sid) == reg.nid:
            await self.release_local(sid)
            return
        info = await reg.node(ids.nid_of(sid) or "")
        if info is not None:
            with contextlib.suppress(LkpoolError, TimeoutError):
                await self.channels.to(info.nid, info.internal_url).call(
                    "release", {"session_id": sid}, timeout=self.settings.request_timeout)

    async def release_local(self, sid: str) -> bool:
        """Ends a lease of this node made for a caller who went away; False if none."""
        self._check_local(sid)
        try:
            await self.pool.release(sid, EndReason.CANCELLED)
        except UnknownSession:
            return False
        return True

    def _check_local(self, sid: str) -> None:
        if ids.nid_of(sid) != self.registry.nid:
            raise InvalidArgument(f"session {sid[:40]!r} is not placed on this node")

    async def _wait(self, rid: str, deadline: float, gone: Callable[[], bool]) -> str:
        """The queued request's answer, or PoolExhausted once the deadline passed. Waits in
        short steps, so a caller who went away leaves the queue within one."""
        reg = self.registry
        answer_key = reg.store.key("req", rid, "answer")
        try:
            while (left := deadline - time.monotonic()) > 0 and not gone():
                got = await reg.store.blocking.blpop([answer_key],
                                                     timeout=max(min(left, WAIT_STEP), 0.01))
                if got:
                    return str(got[1])
        except BaseException:
            await self._cancel(rid)
            raise
        if gone():
            await self._cancel(rid)
            raise CallerGone("the caller went away while waiting")
        if (late := await self._cancel(rid)) is not None:
            logger.info("request %s answered after its waiter gave up: %s… freed", rid,
                        late[:16])
        f = reg.figures
        raise PoolExhausted(
            f"no instance free in the cluster within {self.settings.acquire_timeout:g}s"
            + (f" ({f.used} of {f.capacity} slots used on {f.nodes_up} nodes)" if f else ""))

    async def _cancel(self, rid: str) -> str | None:
        reg = self.registry
        with contextlib.suppress(*StoreError):
            return await asyncio.shield(reg.store.run("cancel", rid, reg.gone_ttl_ms))
        return None

    async def _make(self, sid: str, timeout: float | None, options: dict[str, Any],
                    wait: float) -> dict[str, Any]:
        """The owner of `sid` makes its lease; the claim is freed when that fails."""
        reg = self.registry
        nid = ids.nid_of(sid)
        try:
            if nid == reg.nid:
                return await self.make_local(sid, timeout, options, wait)
            info = await reg.node(nid) if nid else None
            if info is None:
                raise UnknownSession(f"node {nid} of placed session left the cluster")
            body = {"session_id": sid, "timeout": timeout, "wait": wait, **options}
            return await self.channels.to(info.nid, info.internal_url).call(
                "acquire", body,
                timeout=wait + self.settings.start_timeout + self.settings.request_timeout)
        except BaseException:
            with contextlib.suppress(*StoreError):
                await asyncio.shield(reg.release(sid, "failed"))
            raise

    async def make_local(self, sid: str, timeout: float | None, options: dict[str, Any],
                         wait: float) -> dict[str, Any]:
        """This node makes the lease of a session placed on it, if the claim still holds."""
        reg = self.registry
        self._check_local(sid)
        try:  # the claim must still hold: a waiter who gave up gets nothing started
            state = await reg.store.client.hget(reg.store.key("sess", sid), "state")
        except StoreError:
            state = "starting"  # Redis away: the entry node that placed it still waits
        if state != "starting":
            raise PoolExhausted("the placement was given up before the lease was made")
        lease = await self.pool.acquire(timeout, wait=wait, session_id=sid, **options)
        try:
            kept = await reg.store.run("confirm", sid)
        except StoreError:
            kept = 1  # Redis away right now: the lease stands, the heartbeat records it
        if not kept:
            await self.release_local(sid)  # unless a heartbeat has ended it already
            raise PoolExhausted("the placement was given up before the lease was made")
        if self.on_made is not None:
            self.on_made(lease)
        return lease_answer(lease)

