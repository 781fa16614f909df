"""The warm set: the pool's instances (slots) started ahead of demand, kept healthy, recycled
when a lease ends and stopped when surplus. lkpool.pool.book holds the leases on top of it.

What moves a slot here: `_refill` starts instances until the warm floor (`NUM_WARM`) and
every waiter are covered, up to `MAX_INSTANCES`; a start that fails is retried with back-off,
and `MAX_STARTUP_ATTEMPTS` failures in a row make the set *degraded* (see lkpool.pool). A slot
whose lease ended is reset for reuse when the policy (`lkpool.recycle`) allows, else stopped
and replaced. Every `HEALTH_CHECK_INTERVAL` each leased slot is pinged (an idle one every
`IDLE_HEALTH_CHECK_INTERVAL`); a context's `closed` event reports a crash at once. Idle
slots above the floor stop after `IDLE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .. import engines, profiles, recycle
from ..config import Settings
from ..errors import BrowserStartError, EngineError, LkpoolError
from ..events import EventEmitter
from ..tasks import spawn
from .lease import EndReason, Lease, Slot, State

if TYPE_CHECKING:
    from ..context import BrowserContext

logger = logging.getLogger("lkpool.pool")

PoolEvent = Literal["launched", "acquired", "lease_ended", "crashed", "restarted", "degraded"]
STOP_TIMEOUT = 15.0


class WarmSet(EventEmitter[PoolEvent]):
    """The slots of a pool and what keeps them started, healthy and few enough. The lease
    book (`Pool`) builds on it and provides the hooks below that hand slots to leases."""

    _state: Literal["new", "open", "closing", "closed"]

    def __init__(self, settings: Settings | None = None, *,
                 check_invalid: recycle.CheckInvalid | None = None,
                 context_factory: Callable[..., BrowserContext] | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings.from_env()
        self.policy = recycle.ReusePolicy.from_settings(self.settings, check_invalid)
        self._factory = context_factory or engines.create_context
        self._slots: dict[int, Slot] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slot_ids = itertools.count(1)
        self._failures = 0
        self.last_error: str | None = None
        self.degraded = False
        self._retry_pending = False
        # frame counters of instances already gone, so the totals only grow
        self._frames_gone = 0
        self._dropped_gone = 0

    # ---- the lease book's side ----------------------------------------------------------

    def _waiting(self) -> int:
        """How many acquires wait for a slot."""
        raise NotImplementedError

    def _dispatch(self) -> None:
        """A slot became idle: hand it to a waiter."""
        raise NotImplementedError

    def _fail_waiters(self, exc: LkpoolError) -> None:
        raise NotImplementedError

    def _end_lease(self, lease: Lease, reason: str) -> None:
        raise NotImplementedError

    # ---- slots: start, recycle, stop ----------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        """A tracked background task whose failure is logged."""
        return spawn(coro, name=name, into=self._tasks, log=logger)

    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    def _count(self, *states: State) -> int:
        return sum(1 for s in self._slots.values() if s.state in states)

    def _idle_slot(self) -> Slot | None:
        """The idle slot that has waited longest (so each one is checked and used)."""
        idle = [s for s in self._slots.values() if s.state is State.IDLE]
        return min(idle, key=lambda s: s.idle_since) if idle else None

    def _refill(self) -> None:
        """Starts instances until the warm floor and every waiter are covered."""
        if self._state != "open" or self.degraded or self._retry_pending:
            return
        waiting = self._waiting()
        # a slot being reset for reuse (LEASED, no lease) is idle within ~100 ms: starting an
        # instance for its waiter would cost a second of both cores and arrive later
        resetting = sum(1 for s in self._slots.values()
                        if s.state is State.LEASED and s.resetting)
        spare = self._count(State.IDLE, State.STARTING) + resetting
        live = self._count(State.IDLE, State.STARTING, State.LEASED)
        want = min(self.settings.num_warm + waiting - spare, self.settings.max_instances - live)
        for _ in range(want):
            self._start_one()

    def _start_one(self) -> None:
        slot = Slot(next(self._slot_ids))
        self._slots[slot.id] = slot
        self._spawn(self._start(slot), f"lkpool-start-{slot.id}")

    def _free_port(self) -> int:
        """DEBUGGING_PORT_START > 0: the first port from there that no instance of ours holds
        and nothing else listens on; 0: let each browser pick its own (race-free)."""
        start = self.settings.debugging_port_start
        if not start:
            return 0
        taken = {slot.context.remote_debugging_port for slot in self._slots.values()
                 if slot.context is not None}
        for port in range(start, min(65536, start + 16 * self.settings.max_instances + 64)):
            if port in taken:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise EngineError(f"no free DevTools port from DEBUGGING_PORT_START={start}")

    async def _start(self, slot: Slot) -> None:
        s = self.settings
        started = time.monotonic()
        try:
            slot.context = self._factory(s, remote_debugging_port=self._free_port())
            await slot.context.initialize()
            slot.context.on("closed", lambda reason: self._on_closed(slot, reason))
            slot.page = await slot.context.new_page(url="about:blank", width=s.width,
                                                    height=s.height, framerate=s.framerate)
        except asyncio.CancelledError:
            await self._discard(slot)
            raise
        except Exception as exc:
            await self._discard(slot)
            self._start_failed(slot, exc)
            return
        if slot.state is not State.STARTING:  # crashed while its page was being made
            await self._discard(slot)
            return
        slot.page.on("closed", lambda reason: self._on_page_closed(slot, reason))
        if self.policy.max_reusable > 0:
            slot.page.on("url_changed", lambda url: self._note_origin(slot, url))
        slot.browser_path = getattr(slot.context, "browser_path", None)
        self._failures = 0
        if self.degraded:
            logger.info("an instance started again: the pool is healthy")
            self.degraded = False
        seconds = time.monotonic() - started
        slot.log.info("started in %.2fs on port %s", seconds, slot.debugging_port)
        self.emit("launched", seconds)
        slot.to(State.IDLE)
        self._dispatch()

    @staticmethod
    def _note_origin(slot: Slot, url: str) -> None:
        if (origin := recycle.origin_of(url)) is not None:
            slot.origins.add(origin)

    def _start_failed(self, slot: Slot, exc: Exception) -> None:
        self._failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        slot.log.warning("start failed (%d in a row): %s", self._failures, self.last_error)
        if self._failures >= self.settings.max_startup_attempts:
            if not self.degraded:
                self.degraded = True
                logger.error("%d instance starts failed in a row; the pool stops trying until "
                             "an acquire asks again. last error: %s", self._failures,
                             self.last_error)
                self.emit("degraded", self.last_error)
            if not self._count(State.STARTING):
                self._fail_waiters(BrowserStartError(
                    f"instances fail to start: {self.last_error}"))
            return
        if self._state == "open" and not self._retry_pending:
            self._retry_pending = True
            delay = min(0.25 * 2 ** (self._failures - 1), 5.0)
            self._spawn(self._retry_later(delay), "lkpool-retry")

    async def _retry_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self._retry_pending = False
        self._refill()

    def _recycle(self, slot: Slot) -> None:
        """A slot whose lease ended: reset and reused when the policy allows, else replaced."""
        if self._state == "open" and slot.context and slot.context.alive \
                and self.policy.allows(slot.stats()):
            self._spawn(self._reset(slot), f"lkpool-reset-{slot.id}")
        else:
            self._stop(slot)

    async def _reset(self, slot: Slot) -> None:
        slot.resetting = True
        try:
            assert slot.page is not None and slot.context is not None
            await slot.page.navigate("about:blank")
            profile = getattr(slot.context, "profile_dir", None)  # lkpool's engine has one
            await recycle.reset_browser(slot.debugging_port, slot.origins,
                                        self.settings.request_timeout, slot.browser_path,
                                        profiles.downloads_dir(profile) if profile else None)
            if profile:
                await asyncio.to_thread(profiles.empty_downloads, profile)
        except Exception as exc:
            slot.log.warning("reset failed, replacing the instance: %s", exc)
            if slot.state is State.LEASED:
                self._stop(slot)
            return
        finally:
            slot.resetting = False
        if slot.state is State.LEASED and slot.lease is None:
            slot.origins.clear()
            slot.to(State.IDLE)
            self._dispatch()

    def _stop(self, slot: Slot) -> None:
        """Stops a slot in the background and starts its replacement at once."""
        slot.to(State.STOPPING)
        self._spawn(self._discard(slot), f"lkpool-stop-{slot.id}")
        self._refill()

    async def _discard(self, slot: Slot) -> None:
        """Closes a slot's context (idempotent) and forgets the slot."""
        if slot.state is not State.STOPPING and slot.state is not State.DEAD:
            slot.to(State.STOPPING)
        ctx = slot.context
        try:
            if ctx is not None:
                await asyncio.wait_for(asyncio.shield(ctx.aclose()), STOP_TIMEOUT)
        except Exception as exc:
            slot.log.error("stopping failed: %s", exc)
        finally:
            page = slot.page
            if page is not None:
                self._frames_gone += page.frames
                self._dropped_gone += page.dropped
                slot.page = None
            if slot.state is not State.DEAD:
                slot.to(State.DEAD)
            self._slots.pop(slot.id, None)

    # ---- health -------------------------------------------------------------------------

    def _on_closed(self, slot: Slot, reason: str) -> None:
        """The context ended: expected while stopping, a crash otherwise."""
        if slot.state in (State.STOPPING, State.DEAD) or reason == "closed":
            return
        self._crashed(slot, f"instance {reason}")

    def _on_page_closed(self, slot: Slot, reason: str) -> None:
        """The instance's page ended while the instance lives on. A renderer crash leaves a
        dead page that no lease can use: the lease ends (crashed) and the instance is
        replaced, as for a browser crash; so is a warm page that closed. A leased page a
        client closed (`Target.closeTarget`) leaves the lease to that client."""
        if slot.state in (State.STOPPING, State.DEAD):
            return
        if reason == "crashed" or slot.state is State.IDLE:
            self._crashed(slot, f"its page {reason}")

    def _crashed(self, slot: Slot, why: str) -> None:
        if slot.state in (State.STOPPING, State.DEAD):
            return
        slot.log.warning("instance died (%s)", why)
        self.emit("crashed", slot.id, why)
        lease = slot.lease
        if slot.state is State.STARTING:
            slot.to(State.STOPPING)  # its _start sees the state and gives up
        else:
            slot.to(State.STOPPING)
            self._spawn(self._discard(slot), f"lkpool-stop-{slot.id}")
        if lease is not None:
            self._end_lease(lease, EndReason.CRASHED)
        if self._state == "open":
            self.emit("restarted")
            self._refill()

    async def _health_loop(self) -> None:
        """Leased slots every HEALTH_CHECK_INTERVAL, idle ones every
        IDLE_HEALTH_CHECK_INTERVAL: a check wakes the child, Chromium and the page's
        renderer (8 ms of the child's CPU alone on this VM), which was most of what a warm
        pool doing nothing cost (bench/idle.py); a crash is an event, only a hang needs a
        check, and an idle instance that hangs harms no one until it is leased."""
        s = self.settings
        while True:
            await asyncio.sleep(s.health_check_interval)
            now = time.monotonic()
            checked = [x for x in self._slots.values() if x.context is not None and (
                x.state is State.LEASED or x.state is State.IDLE
                and now - x.checked_at >= s.idle_health_check_interval)]
            for slot in checked:
                slot.checked_at = now
            await asyncio.gather(*(self._check(x) for x in checked))

    async def _check(self, slot: Slot) -> None:
        ctx = slot.context
        assert ctx is not None
        why = None
        if not ctx.alive:
            why = ctx.closed_reason or "not running"
        else:
            try:
                await ctx.ping(timeout=self.settings.health_check_timeout)
            except Exception as exc:
                why = f"health check failed: {exc or type(exc).__name__}"
        if why is not None and slot.state in (State.IDLE, State.LEASED):
            self._crashed(slot, why)

    async def _scale_down_loop(self) -> None:
        """Stops idle slots above the warm floor after IDLE_TIMEOUT, and expired ones."""
        s = self.settings
        while True:
            await asyncio.sleep(s.scale_down_interval)
            now = time.monotonic()
            idle = sorted((x for x in self._slots.values() if x.state is State.IDLE),
                          key=lambda x: x.idle_since)
            surplus = len(idle) - s.num_warm
            for slot in idle:
                if self.policy.expired(slot.stats()):
                    slot.log.info("expired after %gs", s.expires)
                    self._stop(slot)
                elif surplus > 0 and now - slot.idle_since >= s.idle_timeout:
                    slot.log.info("idle above the warm floor: stopping")
                    surplus -= 1
                    self._stop(slot)
            if self.degraded and not self._count(State.STARTING):
                self._start_one()  # a slow probe, so a fixed machine heals on its own

    def frame_totals(self) -> tuple[int, int]:
        """Frames delivered and dropped by every instance so far."""
        frames, dropped = self._frames_gone, self._dropped_gone
        for slot in self._slots.values():
            if slot.page is not None:
                frames += slot.page.frames
                dropped += slot.page.dropped
        return frames, dropped
