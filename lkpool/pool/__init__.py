"""The pool: warm instances handed out to sessions, with deadlines, health and recycling.

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
- Health: every `HEALTH_CHECK_INTERVAL` each leased slot is pinged (an idle one every
  `IDLE_HEALTH_CHECK_INTERVAL`), and a context's `closed` event reports a crash at once.
  `MAX_STARTUP_ATTEMPTS` failed starts in a row make the pool *degraded*: it stops starting
  instances on its own until an acquire asks for one and that start succeeds.

Events (`Pool.on`): "launched"(seconds), "acquired"(lease, wait_seconds),
"lease_ended"(lease), "crashed"(slot_id, why), "restarted"(), "degraded"(error).

The package, one idea per module: `lease` (the records: Slot, Lease, State, EndReason),
`warm` (the warm set: start, refill, recycle, health, scale-down) and `book` (the lease
book: acquire, extend, deadlines, ended leases), whose `Pool` is the public face.
"""

from .book import Pool
from .lease import EndReason, Lease, Slot, State
from .warm import PoolEvent

__all__ = ["EndReason", "Lease", "Pool", "PoolEvent", "Slot", "State"]
