"""Pool and Lease: warm instances handed out to sessions, with deadlines, health and recycling.

A *slot* is one instance (one `BrowserContext` and its primary page); a *lease* binds a slot
to a session. The life of a slot::

    STARTING ──► IDLE ──► LEASED ──► STOPPING ──► DEAD
        │         │ ▲        │                     ▲
        │         │ └─ reset ┘ (opt-in reuse)      │
        └─────────┴──────────── crash / failure ───┘

- `NUM_WARM` idle slots are kept started in the background; an acquire takes an idle one
  at once and never waits for a replacement to start. Without one it waits, in FIFO order,
  up to `ACQUIRE_TIMEOUT` while the pool grows to `MAX_INSTANCES`, then `PoolExhausted`.
- A lease ends at its deadline, after `IDLE_TIMEOUT` without activity (`touch`), when
  released, when its instance dies (`crashed`) or at shutdown. Its slot is then stopped and
  a fresh instance (fresh profile) started, unless the reuse policy (`lkpool.recycle`)
  allows a reset instead.
- Health: every `HEALTH_CHECK_INTERVAL` each slot is pinged, and a context's `closed` event
  reports a crash at once. `MAX_STARTUP_ATTEMPTS` failed starts in a row make the pool
  *degraded*: it stops starting instances on its own until an acquire asks for one and that
  start succeeds.

Events (`Pool.on`): "launched"(seconds), "acquired"(lease, wait_seconds),
"lease_ended"(lease), "crashed"(slot_id, why), "restarted"(), "degraded"(error).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from . import engines, profiles, recycle
from .config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH, Settings
from .errors import (BrowserStartError, EngineError, InstanceCrashed, InvalidArgument,
                     LkpoolError, PoolClosed, PoolExhausted, UnknownSession)
from .events import EventEmitter
from .lease import EndReason, Lease, Slot, State
from .tasks import spawn

__all__ = ["EndReason", "Lease", "Pool", "Slot", "State"]

if TYPE_CHECKING:
    from .context import BrowserContext

logger = logging.getLogger(__name__)

PoolEvent = Literal["launched", "acquired", "lease_ended", "crashed", "restarted", "degraded"]
# ended leases stay visible (GET /browsers, the proxy's 403) for this long / this many
ENDED_KEEP_SECONDS = 600.0
ENDED_KEEP_COUNT = 1000
STOP_TIMEOUT = 15.0
LEASE_CHECK_INTERVAL = 0.25


def _check_number(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    """A keyword argument of `acquire` checked, so the library gives a clear error too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()) or not (lo <= value <= hi):
        raise InvalidArgument(f"{name} must be {'an integer' if kind is int else 'a number'} "
                              f"in {lo:g}..{hi:g}, got {value!r}")
    return kind(value)


class Pool(EventEmitter[PoolEvent]):
    """Warm browser instances leased to sessions. Use as `async with Pool(settings) as pool`."""

    def __init__(self, settings: Settings | None = None, *,
                 check_invalid: recycle.CheckInvalid | None = None,
                 context_factory: Callable[..., BrowserContext] | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings.from_env()
        self.policy = recycle.ReusePolicy.from_settings(self.settings, check_invalid)
        self._factory = context_factory or engines.create_context
        self._slots: dict[int, Slot] = {}
        self._leases: dict[str, Lease] = {}
        self._ended: OrderedDict[str, tuple[float, Lease]] = OrderedDict()
        self._waiters: deque[asyncio.Future[Slot]] = deque()
        self._tasks: set[asyncio.Task] = set()
        self._loops: list[asyncio.Task] = []
        self._slot_ids = itertools.count(1)
        self._failures = 0
        self.last_error: str | None = None
        self.degraded = False
        self._retry_pending = False
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._closed_event = asyncio.Event()
        # frame counters of instances already gone, so the totals only grow
        self._frames_gone = 0
        self._dropped_gone = 0

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Purges what a dead earlier run left, then starts the warm floor in the background."""
        if self._state != "new":
            raise PoolClosed(f"pool already {self._state}: create a new Pool")
        removed = await asyncio.to_thread(profiles.purge_leftovers,
                                          self.settings.chromium_profile_base_dir)
        if removed:
            logger.info("purged %d profile folders left by an earlier run", len(removed))
        self._state = "open"
        for name, loop in (("health", self._health_loop), ("leases", self._lease_loop),
                           ("scale-down", self._scale_down_loop)):
            self._loops.append(self._spawn(loop(), f"lkpool-pool-{name}"))
        self._refill()

    async def aclose(self) -> None:
        """Stops everything; idempotent. Leaves no process, shm segment or profile behind."""
        if self._state in ("closing", "closed"):
            await self._closed_event.wait()
            return
        if self._state == "new":
            self._state = "closed"
            self._closed_event.set()
            return
        self._state = "closing"
        try:
            # 1. no new leases: whoever waits for an instance gets PoolClosed
            self._fail_waiters(PoolClosed("the pool is shutting down"))
            # 2. background loops stop, so nothing restarts or reaps behind our back
            for task in self._loops:
                task.cancel(msg="pool closing")
            await asyncio.gather(*self._loops, return_exceptions=True)
            # 3. every lease ends with "shutdown": proxied sockets see it and close
            for lease in list(self._leases.values()):
                self._end_lease(lease, EndReason.SHUTDOWN)
            # 4. starts in progress may finish (cancelling a process start midway is not
            #    safe with every engine), within STOP_TIMEOUT; the rest are cancelled and
            #    each closes its half-started context
            starts = [t for t in self._tasks if t.get_name().startswith("lkpool-start")]
            if starts:
                _, late = await asyncio.wait(starts, timeout=STOP_TIMEOUT)
                for task in late:
                    task.cancel(msg="pool closing")
            # 5. every instance left is stopped at once, then pending stops are awaited
            for slot in list(self._slots.values()):
                if slot.state in (State.IDLE, State.LEASED):
                    self._stop(slot)
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            self._state = "closed"
            self._closed_event.set()

    @property
    def closed(self) -> bool:
        return self._state != "open"

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        """A tracked background task whose failure is logged."""
        return spawn(coro, name=name, into=self._tasks, log=logger)

    # ---- leases -------------------------------------------------------------------------

    async def acquire(self, timeout: float | None = None, *, url: str | None = None,
                      width: int | None = None, height: int | None = None,
                      framerate: int | None = None, wait: float | None = None) -> Lease:
        """A lease of `timeout` seconds on an instance whose page shows `url` at this size.

        Waits up to `wait` (default `ACQUIRE_TIMEOUT`) for a busy pool, then raises
        `PoolExhausted`; `PoolClosed` when the pool shuts down."""
        s = self.settings
        timeout = _check_number("timeout", s.lease_timeout if timeout is None else timeout,
                                float, 0.001, s.max_lease_timeout)
        width = _check_number("width", s.width if width is None else width, int, 1, MAX_WIDTH)
        height = _check_number("height", s.height if height is None else height, int, 1,
                               MAX_HEIGHT)
        framerate = _check_number("framerate", s.framerate if framerate is None else framerate,
                                  int, 1, MAX_FRAMERATE)
        wait = _check_number("wait", s.acquire_timeout if wait is None else wait, float, 0,
                             s.max_lease_timeout)
        if url is not None and not isinstance(url, str):
            raise InvalidArgument(f"url must be a string, got {url!r}")
        if self._state != "open":
            raise PoolClosed(f"the pool is {self._state}")
        started = time.monotonic()
        slot = await self._take(wait)
        try:
            await self._prepare(slot, url, width, height, framerate)
        except BaseException:
            # the client's URL may have left state behind: this instance is not handed out
            if slot.state is State.LEASED:
                self._stop(slot)
            raise
        if slot.state is not State.LEASED:  # it died, or the pool closed, meanwhile
            if self._state != "open":
                raise PoolClosed("the pool closed before the lease began")
            raise InstanceCrashed("the instance died before the lease began")
        now = time.time()
        lease = Lease(session_id=secrets.token_urlsafe(24), context=slot.context,
                      page=slot.page, debugging_port=slot.debugging_port,
                      cdp_url=f"http://127.0.0.1:{slot.debugging_port}", created_at=now,
                      expires_at=now + timeout, last_used=now, slot_id=slot.id,
                      browser_path=slot.browser_path)
        slot.lease = lease
        slot.uses += 1
        slot.last_used = now
        self._leases[lease.session_id] = lease
        slot.log.info("leased to %s… for %gs", lease.session_id[:6], timeout)
        self.emit("acquired", lease, time.monotonic() - started)
        return lease

    async def _take(self, wait: float) -> Slot:
        """An idle slot, marked LEASED; FIFO behind earlier waiters."""
        if not self._waiters and (slot := self._idle_slot()) is not None:
            slot.to(State.LEASED)
            self._refill()
            return slot
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self.degraded and not self._count(State.STARTING):
            self._start_one()  # one probe: a success ends the degraded state
        self._refill()
        try:
            await asyncio.wait([waiter], timeout=wait)
        except asyncio.CancelledError:
            self._give_back(waiter)
            raise
        if not waiter.done():
            self._give_back(waiter)
            raise PoolExhausted(
                f"no instance free within {wait:g}s ({self._count(State.LEASED)} leased of "
                f"at most {self.settings.max_instances})")
        return waiter.result()

    def _give_back(self, waiter: asyncio.Future[Slot]) -> None:
        """A waiter that gave up: its place in the queue, or the slot it just got, returns."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            slot = waiter.result()
            if slot.state is State.LEASED and slot.lease is None:
                slot.to(State.IDLE)
                self._dispatch()
        else:
            waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _prepare(self, slot: Slot, url: str | None, width: int, height: int,
                       framerate: int) -> None:
        """Makes the warm page what the client asked for."""
        page = slot.page
        assert page is not None
        if (page.width, page.height) != (width, height):
            await page.resize(width, height)
        if page.framerate != framerate:
            await page.set_framerate(framerate)
        if url:
            await page.navigate(url)

    async def release(self, session_id: str, reason: str = EndReason.RELEASED) -> Lease:
        """Ends a lease; its instance is replaced (or reset, when reuse is on)."""
        lease = self.get(session_id)
        self._end_lease(lease, reason)
        return lease

    def extend(self, session_id: str, seconds: float) -> Lease:
        """Moves the deadline `seconds` further, but never past MAX_LEASE_TIMEOUT after the
        lease began: however often it is extended, a lease's whole life is bounded."""
        lease = self.get(session_id)
        seconds = _check_number("timeout", seconds, float, 0.001,
                                self.settings.max_lease_timeout)
        now = time.time()
        lease.expires_at = min(max(lease.expires_at, now) + seconds,
                               lease.created_at + self.settings.max_lease_timeout)
        lease.touch()
        return lease

    def get(self, session_id: str) -> Lease:
        """The active lease of `session_id`; `UnknownSession` otherwise."""
        lease = self._leases.get(session_id) if isinstance(session_id, str) else None
        if lease is None:
            ended = self.ended(session_id)
            if ended is not None:
                raise UnknownSession(f"session {session_id} has ended ({ended.end_reason})")
            raise UnknownSession(f"no session {session_id}")
        return lease

    def ended(self, session_id: str) -> Lease | None:
        """A recently ended lease (kept a while, so clients can learn why it ended)."""
        entry = self._ended.get(session_id)
        return entry[1] if entry else None

    def touch(self, session_id: str) -> None:
        """Records activity on a lease (it will not end for being idle)."""
        self.get(session_id).touch()

    def list(self) -> list[Lease]:
        return list(self._leases.values())

    def ended_leases(self) -> list[Lease]:
        return [lease for _, lease in self._ended.values()]

    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    @contextlib.asynccontextmanager
    async def lease(self, timeout: float | None = None, **options: Any
                    ) -> AsyncIterator[Lease]:
        """`async with pool.lease() as lease:` acquires, then releases even on error."""
        lease = await self.acquire(timeout, **options)
        try:
            yield lease
        finally:
            if lease.active:
                self._end_lease(lease, EndReason.RELEASED)

    def _end_lease(self, lease: Lease, reason: str) -> None:
        if not lease.active:
            return
        lease.end_reason = str(reason)
        self._leases.pop(lease.session_id, None)
        self._remember(lease)
        lease._ended.set()
        slot = self._slots.get(lease.slot_id)
        if slot is not None and slot.lease is lease:
            slot.lease = None
            slot.last_used = lease.last_used
            slot.log.info("lease %s… ended: %s", lease.session_id[:6], reason)
            if slot.state is State.LEASED:
                self._recycle(slot)
        self.emit("lease_ended", lease)

    def _remember(self, lease: Lease) -> None:
        now = time.monotonic()
        self._ended[lease.session_id] = (now, lease)
        while self._ended:
            first_time, _ = next(iter(self._ended.values()))
            if len(self._ended) <= ENDED_KEEP_COUNT and now - first_time < ENDED_KEEP_SECONDS:
                break
            self._ended.popitem(last=False)

    # ---- slots: start, hand out, recycle, stop ------------------------------------------

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
        waiting = sum(1 for w in self._waiters if not w.done())
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

    def _dispatch(self) -> None:
        """Hands idle slots to waiters, oldest waiter first, then tops up the warm floor."""
        while self._waiters:
            if self._waiters[0].done():
                self._waiters.popleft()
                continue
            slot = self._idle_slot()
            if slot is None:
                break
            slot.to(State.LEASED)
            self._waiters.popleft().set_result(slot)
        self._refill()

    def _fail_waiters(self, exc: LkpoolError) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

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
        while True:
            await asyncio.sleep(self.settings.health_check_interval)
            checked = [s for s in self._slots.values()
                       if s.state in (State.IDLE, State.LEASED) and s.context is not None]
            await asyncio.gather(*(self._check(s) for s in checked))

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

    async def _lease_loop(self) -> None:
        """Ends leases past their deadline or idle longer than IDLE_TIMEOUT."""
        idle_timeout = self.settings.idle_timeout
        while True:
            await asyncio.sleep(LEASE_CHECK_INTERVAL)
            now = time.time()
            for lease in list(self._leases.values()):
                if now >= lease.expires_at:
                    self._end_lease(lease, EndReason.EXPIRED)
                elif now - lease.last_used >= idle_timeout:
                    self._end_lease(lease, EndReason.IDLE)

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

    # ---- reporting ----------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Instances by state, leases and waiters: for /health and /metrics."""
        by_state = {state.value: 0 for state in State if state is not State.DEAD}
        for slot in self._slots.values():
            if slot.state is not State.DEAD:
                by_state[slot.state.value] += 1
        return {"instances": by_state, "leases": len(self._leases),
                "waiting": sum(1 for w in self._waiters if not w.done()),
                "max_instances": self.settings.max_instances,
                "num_warm": self.settings.num_warm, "degraded": self.degraded,
                "last_error": self.last_error}

    def frame_totals(self) -> tuple[int, int]:
        """Frames delivered and dropped by every instance so far."""
        frames, dropped = self._frames_gone, self._dropped_gone
        for slot in self._slots.values():
            if slot.page is not None:
                frames += slot.page.frames
                dropped += slot.page.dropped
        return frames, dropped

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Waits until the warm floor is idle (or the pool is degraded: `BrowserStartError`)."""
        async with asyncio.timeout(timeout or self.settings.start_timeout * 2):
            while self._count(State.IDLE) < self.settings.num_warm:
                if self.degraded:
                    raise BrowserStartError(f"instances fail to start: {self.last_error}")
                if self._state != "open":
                    raise PoolClosed(f"the pool is {self._state}")
                await asyncio.sleep(0.05)
