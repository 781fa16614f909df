"""The pool's records: a `Slot` (one instance and its state) and a `Lease` (a slot bound to a
session), with the `State` and `EndReason` enums. lkpool.pool.warm and .book hold what moves them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..context import BrowserContext
    from ..page import BrowserPage

logger = logging.getLogger("lkpool.pool")  # slots log as part of the pool


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    LEASED = "leased"
    STOPPING = "stopping"
    DEAD = "dead"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.IDLE, State.STOPPING, State.DEAD}),
    State.IDLE: frozenset({State.LEASED, State.STOPPING, State.DEAD}),
    State.LEASED: frozenset({State.IDLE, State.STOPPING, State.DEAD}),
    State.STOPPING: frozenset({State.DEAD}),
    State.DEAD: frozenset(),
}


class EndReason(enum.StrEnum):
    RELEASED = "released"
    EXPIRED = "expired"
    IDLE = "idle"
    CRASHED = "crashed"
    SHUTDOWN = "shutdown"
    CANCELLED = "cancelled"  # made for a caller who had gone away before it was handed over


class _SlotLog(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[slot {(self.extra or {}).get('slot')}] {msg}", kwargs


class Slot:
    """One instance of the pool and where it is in its life."""

    def __init__(self, slot_id: int) -> None:
        self.id = slot_id
        self.state = State.STARTING
        self.context: BrowserContext | None = None
        self.page: BrowserPage | None = None
        self.lease: Lease | None = None
        self.created = time.monotonic()
        self.idle_since = self.created
        self.checked_at = 0.0  # monotonic time of its last health check
        self.last_used = time.time()
        self.uses = 0
        self.origins: set[str] = set()  # for a reset, when reuse is on
        self.resetting = False  # LEASED with no lease, on its way back to IDLE
        self.browser_path: str | None = None  # /devtools/browser/<id>, when known
        self.log = _SlotLog(logger, {"slot": slot_id})

    def to(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"slot {self.id}: {self.state.value} -> {state.value} is not a "
                               "valid transition")
        self.log.debug("%s -> %s", self.state.value, state.value)
        self.state = state
        if state is State.IDLE:
            self.idle_since = time.monotonic()

    @property
    def debugging_port(self) -> int:
        return self.context.remote_debugging_port if self.context else 0

    def stats(self) -> dict[str, Any]:
        """The object-pool stats the reuse policy and `check_invalid` judge: uses, age, last
        use."""
        return {"count": self.uses, "age": time.monotonic() - self.created,
                "last_used": self.last_used, "new": self.uses == 0}

    def __repr__(self) -> str:
        return f"<Slot {self.id} {self.state.value} port={self.debugging_port}>"


@dataclass(eq=False)
class Lease:
    """A session's hold on one instance. Timestamps are wall-clock seconds (time.time())."""

    session_id: str
    context: BrowserContext
    page: BrowserPage
    debugging_port: int
    cdp_url: str
    created_at: float
    expires_at: float
    last_used: float
    end_reason: str | None = None
    slot_id: int = 0
    # the browser target's WebSocket path, known from the start when the engine tells it
    browser_path: str | None = None
    _ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.end_reason is None

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline (0 once ended)."""
        return max(0.0, self.expires_at - time.time()) if self.active else 0.0

    def touch(self) -> None:
        self.last_used = time.time()

    async def wait_ended(self) -> str:
        await self._ended.wait()
        return self.end_reason or EndReason.RELEASED
