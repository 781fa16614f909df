"""EventEmitter: named events to sync or async callbacks, in registration order.

Two calling styles meet here. livekit's `EventEmitter` (which `livekit.browser`'s pages use)
registers with `on(event, cb)` or `@on(event)` and removes with `off(event, cb)`; pydoll's
model registers with `on(event, cb, temporary=True)` and removes by the returned id. Both work,
so code written against `livekit.browser` runs unchanged and callers that want ids get them.

A raising callback is logged and does not stop the others; a coroutine callback is scheduled
as a task whose failure is logged too. A subclass whose events cost work to produce (a page's
audio) learns when an event gets its first listener and loses its last (`_listening`).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .tasks import spawn

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


class EventEmitter[T: str]:
    def __init__(self) -> None:
        # event -> {id: (callback, temporary)}; dicts keep insertion order
        self._listeners: dict[str, dict[int, tuple[Callable[..., Any], bool]]] = {}
        self._tasks: set[asyncio.Task] = set()

    def on(self, event: T, callback: Callable[..., Any] | None = None, *,
           temporary: bool = False) -> Any:
        """Registers `callback` and returns its id; without one, acts as a decorator."""
        if callback is None:
            def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
                self.on(event, fn, temporary=temporary)
                return fn
            return deco
        cb_id = next(_ids)
        listeners = self._listeners.setdefault(event, {})
        listeners[cb_id] = (callback, temporary)
        if len(listeners) == 1:
            self._listening(event, True)
        if not temporary:
            self._listener_added(event, cb_id)
        return cb_id

    def _listener_added(self, event: T, cb_id: int) -> None:
        """Called after each lasting registration (not `once`/`temporary`, which waits for
        the next event); a subclass may greet the new listener."""

    def _emit_to(self, event: T, cb_id: int, *args: Any) -> None:
        """Calls one listener, if it is still registered, as `emit` would."""
        listeners = self._listeners.get(event, {})
        entry = listeners.get(cb_id)
        if entry is None:
            return
        cb, temporary = entry
        if temporary and listeners.pop(cb_id, None) is not None:
            self._removed(event, listeners)
        self._invoke(event, cb, args)

    def once(self, event: T, callback: Callable[..., Any] | None = None) -> Any:
        return self.on(event, callback, temporary=True)

    def off(self, event_or_id: T | int, callback: Callable[..., Any] | None = None) -> bool:
        """Removes a callback by id, or by (event, callback) as livekit does; True if found.
        Callbacks are compared with `==`, as livekit does: `self.method` is a new bound
        method object at each access, equal to (not the same as) the one registered."""
        if isinstance(event_or_id, int):
            for event, listeners in self._listeners.items():
                if listeners.pop(event_or_id, None) is not None:
                    self._removed(event, listeners)
                    return True
            return False
        listeners = self._listeners.get(event_or_id, {})
        for cb_id, (cb, _) in list(listeners.items()):
            if cb == callback:
                del listeners[cb_id]
                self._removed(event_or_id, listeners)
                return True
        return False

    def remove_all(self, event: T | None = None) -> None:
        events = list(self._listeners) if event is None else [event]
        for name in events:
            if self._listeners.pop(name, None):
                self._listening(name, False)

    def _removed(self, event: str, listeners: dict) -> None:
        if not listeners:
            self._listening(event, False)

    def _listening(self, event: str, on: bool) -> None:
        """`event` got its first listener (on) or lost its last; for subclasses."""

    def has_listeners(self, event: T) -> bool:
        return bool(self._listeners.get(event))

    def emit(self, event: T, *args: Any) -> None:
        listeners = self._listeners.get(event)
        if not listeners:
            return
        for cb_id, (cb, temporary) in list(listeners.items()):
            if temporary and listeners.pop(cb_id, None) is not None:
                self._removed(event, listeners)
            self._invoke(event, cb, args)

    def _invoke(self, event: str, cb: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            result = cb(*args)
        except Exception:
            logger.exception("callback for %s raised", event)
            return
        if inspect.isawaitable(result):
            spawn(_awaited(result), name=f"{event} callback", into=self._tasks, log=logger)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    """Any awaitable a callback returns (a coroutine, a future) as a coroutine for spawn."""
    return await awaitable
