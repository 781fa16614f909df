"""Background tasks that are never lost and never fail silently (STYLE: every background
task gets a done-callback that logs its exception).

The event loop keeps only weak references to tasks, so each one is held: in the owner's set
(which its `aclose` cancels and awaits), or here for a detached one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)
_detached: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str | None = None,
          into: set[asyncio.Task] | None = None,
          log: logging.Logger | logging.LoggerAdapter = logger) -> asyncio.Task:
    """Starts `coro` as a task held in `into` (or here) until it ends; a failure is logged
    once with `log`, a cancellation is not."""
    held = _detached if into is None else into
    task = asyncio.get_running_loop().create_task(coro, name=name)
    held.add(task)

    def done(t: asyncio.Task) -> None:
        held.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s failed", t.get_name(), exc_info=t.exception())

    task.add_done_callback(done)
    return task
