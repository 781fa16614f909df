"""The messages waiting for one socket's reader, bounded whatever the reader does.

Why: a page decides how often its URL, title and cursor change (a `history.replaceState`
loop changes the URL many times a second), and a client decides how fast it reads. Queued
one by one, a client that reads nothing makes the server keep every change. So messages
that describe a state (`url_changed`, `cursor_changed`...) coalesce: only the newest of each
type waits, in the place of the first. The others (acks, errors, dialogs) are each needed
and queue in order, up to `limit`; past it the reader has stayed behind for good, the
outbox says `overflowed` and the socket is closed with a reason (SECURITY.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

_END = object()

Message = dict[str, Any]


class Outbox:
    """Newest state per coalescing type, plus at most `limit` other messages, in order."""

    def __init__(self, *, coalesce: Iterable[str], limit: int) -> None:
        self._coalesce = frozenset(coalesce)
        self._limit = limit
        self._queue: deque[Any] = deque()  # messages, coalescing type names, or _END
        self._latest: dict[str, Message] = {}
        self._queued = 0  # messages in _queue that do not coalesce
        self._ready = asyncio.Event()
        self._overflow = asyncio.Event()
        self._ended = False

    @property
    def overflowed(self) -> bool:
        return self._overflow.is_set()

    async def wait_overflow(self) -> None:
        """Returns once the reader has stayed behind by more than `limit` messages."""
        await self._overflow.wait()

    def __len__(self) -> int:
        return self._queued + len(self._latest)

    def put(self, msg: Message) -> None:
        if self._ended or self.overflowed:
            return
        kind = msg.get("type")
        if kind in self._coalesce:
            if kind not in self._latest:
                self._queue.append(kind)
            self._latest[kind] = msg
        elif self._queued >= self._limit:
            self._overflow.set()
            self._queue.clear()
            self._latest.clear()
        else:
            self._queue.append(msg)
            self._queued += 1
        self._ready.set()

    def end(self, last: Message | None = None) -> None:
        """`last` (if any) is the final message; `get` then returns None."""
        if last is not None:
            self.put(last)
        if not self._ended:
            self._ended = True
            self._queue.append(_END)
            self._ready.set()

    async def get(self) -> Message | None:
        """The next message; None once ended or overflowed."""
        while True:
            if self.overflowed:
                return None
            if self._queue:
                item = self._queue.popleft()
                if item is _END:
                    return None
                if isinstance(item, str):
                    return self._latest.pop(item)
                self._queued -= 1
                return item
            self._ready.clear()
            await self._ready.wait()
