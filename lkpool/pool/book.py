"""The lease book: acquire (FIFO waiters, `ACQUIRE_TIMEOUT`), extend, deadlines and idle
ends, and the ended leases kept a while so clients learn why. It sits on the warm set
(lkpool.pool.warm), which starts, checks and recycles the instances it hands out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .. import profiles, recycle
from ..config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH, Settings
from ..errors import (
    BrowserStartError,
    InstanceCrashed,
    InvalidArgument,
    LkpoolError,
    PoolClosed,
    PoolExhausted,
    UnknownSession,
)
from .lease import EndReason, Lease, Slot, State
from .warm import STOP_TIMEOUT, WarmSet

if TYPE_CHECKING:
    from ..context import BrowserContext

logger = logging.getLogger("lkpool.pool")

# ended leases stay visible (GET /browsers, the proxy's 403) for this long / this many
ENDED_KEEP_SECONDS = 600.0
ENDED_KEEP_COUNT = 1000
LEASE_CHECK_INTERVAL = 0.25
# a lease taken while other instances stay idle starts its replacement this much later, so
# the client's first commands do not share the cores with a Chromium start-up; a lease that
# drains the floor starts it once its own answer is out (a fork and a Chromium start-up
# beside it made the allocation 1-2 ms slower, bench/cluster.py); a waiter starts one at once
REFILL_DELAY = 0.25
DRAINED_REFILL_DELAY = 0.05


def _check_number(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    """A keyword argument of `acquire` checked, so the library gives a clear error too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()) or not (lo <= value <= hi):
        raise InvalidArgument(f"{name} must be {'an integer' if kind is int else 'a number'} "
                              f"in {lo:g}..{hi:g}, got {value!r}")
    return kind(value)


class Pool(WarmSet):
    """Warm browser instances leased to sessions. Use as `async with Pool(settings) as pool`."""

    def __init__(self, settings: Settings | None = None, *,
                 check_invalid: recycle.CheckInvalid | None = None,
                 context_factory: Callable[..., BrowserContext] | None = None) -> None:
        super().__init__(settings, check_invalid=check_invalid,
                         context_factory=context_factory)
        self._leases: dict[str, Lease] = {}
        self._ended: OrderedDict[str, tuple[float, Lease]] = OrderedDict()
        self._waiters: deque[asyncio.Future[Slot]] = deque()
        self._has_leases = asyncio.Event()  # the lease loop sleeps while there is none
        self._loops: list[asyncio.Task] = []
        self._state = "new"
        self._closed_event = asyncio.Event()

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
                                          self.settings.chromium_profile_base_dir, self._owner)
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
            profiles.forget_owner(self.settings.chromium_profile_base_dir, self._owner)
        finally:
            self._state = "closed"
            self._closed_event.set()

    @property
    def _owner(self) -> str:
        """Whose profile folders these are, across runs: the node's name and port."""
        return f"{self.settings.node_name or socket.gethostname()}-{self.settings.port}"

    @property
    def closed(self) -> bool:
        return self._state != "open"

    # ---- leases -------------------------------------------------------------------------

    async def acquire(self, timeout: float | None = None, *, url: str | None = None,
                      width: int | None = None, height: int | None = None,
                      framerate: int | None = None, wait: float | None = None,
                      session_id: str | None = None) -> Lease:
        """A lease of `timeout` seconds on an instance whose page shows `url` at this size.

        Waits up to `wait` (default `ACQUIRE_TIMEOUT`) for a busy pool, then raises
        `PoolExhausted`; `PoolClosed` when the pool shuts down. `session_id` is the cluster's
        (placed before the lease is made); by default a fresh random one."""
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
        assert slot.context is not None and slot.page is not None  # a LEASED slot has both
        now = time.time()
        lease = Lease(session_id=session_id or secrets.token_urlsafe(24), context=slot.context,
                      page=slot.page, debugging_port=slot.debugging_port,
                      cdp_url=f"http://127.0.0.1:{slot.debugging_port}", created_at=now,
                      expires_at=now + timeout, last_used=now, slot_id=slot.id,
                      browser_path=slot.browser_path)
        slot.lease = lease
        slot.uses += 1
        slot.last_used = now
        self._leases[lease.session_id] = lease
        self._has_leases.set()
        slot.log.info("leased to %s… for %gs", lease.session_id[:6], timeout)
        self.emit("acquired", lease, time.monotonic() - started)
        return lease

    async def _take(self, wait: float) -> Slot:
        """An idle slot, marked LEASED; FIFO behind earlier waiters."""
        if not self._waiters and (slot := self._idle_slot()) is not None:
            slot.to(State.LEASED)
            asyncio.get_running_loop().call_later(
                REFILL_DELAY if self._count(State.IDLE) else DRAINED_REFILL_DELAY, self._refill)
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

    def ended_leases(self) -> list[Lease]:
        return [lease for _, lease in self._ended.values()]

    def list(self) -> list[Lease]:  # defined last: below it, `list` means this method
        return list(self._leases.values())

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

    # ---- the junction with the warm set --------------------------------------------------

    def _waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

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

    async def _lease_loop(self) -> None:
        """Ends leases past their deadline or idle longer than IDLE_TIMEOUT; asleep while
        there is no lease (an idle pool does no work)."""
        idle_timeout = self.settings.idle_timeout
        while True:
            if not self._leases:  # nothing can expire: no wake-ups until a lease begins
                self._has_leases.clear()
                await self._has_leases.wait()
            await asyncio.sleep(LEASE_CHECK_INTERVAL)
            now = time.time()
            for lease in list(self._leases.values()):
                if now >= lease.expires_at:
                    self._end_lease(lease, EndReason.EXPIRED)
                elif now - lease.last_used >= idle_timeout:
                    self._end_lease(lease, EndReason.IDLE)

    # ---- reporting ----------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Instances by state, leases and waiters: for /health and /metrics."""
        by_state = {state.value: 0 for state in State if state is not State.DEAD}
        for slot in self._slots.values():
            if slot.state is not State.DEAD:
                by_state[slot.state.value] += 1
        return {"instances": by_state, "leases": len(self._leases),
                "waiting": self._waiting(),
                "max_instances": self.settings.max_instances,
                "num_warm": self.settings.num_warm, "degraded": self.degraded,
                "last_error": self.last_error}

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Waits until the warm floor is idle (or the pool is degraded: `BrowserStartError`)."""
        async with asyncio.timeout(timeout or self.settings.start_timeout * 2):
            while self._count(State.IDLE) < self.settings.num_warm:
                if self.degraded:
                    raise BrowserStartError(f"instances fail to start: {self.last_error}")
                if self._state != "open":
                    raise PoolClosed(f"the pool is {self._state}")
                await asyncio.sleep(0.05)
