"""The request layer over an instance's duplex: requests answered by one `Result` each,
input posted without waiting for its answer (bounded), and fire-and-forget messages.

Two kinds of objects talk through it, each only about what it owns (playwright's
`ChannelOwner` shape): the `BrowserContext` through the `Connection` itself (ping, shutdown),
and each `BrowserPage` through its own `PageChannel`, which knows the page's id and nothing
of the context. The context reads the child's messages and hands each `Result` to
`Connection.resolve`; everything else it routes to the page the message names.

Nothing here waits forever: every request has a timeout, and `fail_all` fails every pending
request at once when the instance ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable

from .errors import BY_CODE, ClosedError, InstanceCrashed, LkpoolError, RequestTimeout
from .proc import protocol as p
from .proc.channel import Channel, ChannelClosed

MAX_POSTED = 256  # input messages sent to the child and not answered yet (see Connection.post)

MakeMessage = Callable[[int], p.Message]  # request id -> the message carrying it


class Connection:
    """One instance's duplex, seen as requests and answers."""

    def __init__(self, channel: Channel, *, name: str, request_timeout: float,
                 is_open: Callable[[bool], None], log: logging.LoggerAdapter) -> None:
        self._channel = channel
        self._name = name  # "instance 3", for error messages
        self._request_timeout = request_timeout
        self._check_open = is_open  # raises ClosedError / InstanceCrashed when not usable
        self.log = log
        self._pending: dict[int, asyncio.Future[str]] = {}
        self.posted: dict[asyncio.Future[str], None] = {}  # of _pending: input, oldest first
        self._req_ids = itertools.count(1)

    @property
    def closed(self) -> bool:
        return self._channel.closed

    @property
    def usable(self) -> bool:
        """The instance is running and takes requests."""
        try:
            self._check_open(False)
        except LkpoolError:
            return False
        return True

    def __aiter__(self) -> AsyncIterator[p.Message]:
        """The child's messages, for the one reader that routes them."""
        return self._channel.__aiter__()

    def send(self, msg: p.Message) -> None:
        """Fire and forget; nothing happens once the duplex is gone."""
        if self._channel.closed:
            return
        with contextlib.suppress(ChannelClosed):
            self._channel.send(msg)

    async def request(self, make: MakeMessage, timeout: float | None = None, *,
                      allow_closing: bool = False) -> str:
        self._check_open(allow_closing)
        req = next(self._req_ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[req] = fut
        msg = make(req)
        try:
            self._channel.send(msg)
            timeout = self._request_timeout if timeout is None else timeout
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                raise  # the instance answered, with a timeout of its own (a stuck page)
            raise RequestTimeout(f"{type(msg).__name__} got no answer within {timeout:g}s "
                                 f"from {self._name}") from None
        except ChannelClosed as exc:
            raise InstanceCrashed(f"{self._name} is gone") from exc
        finally:
            self._pending.pop(req, None)

    async def post(self, make: MakeMessage) -> None:
        """Sends a request and returns without waiting for its answer: for input, which the
        child hands to Chromium in the order it was sent.

        Waiting for each event's answer would hold every event behind a mouse move, which
        Blink handles only at its next frame (12-16 ms here; a press after it is handled
        within a millisecond because it flushes the move). livekit.browser does not wait
        either. Unanswered posts are bounded by MAX_POSTED: past it, posting waits for the
        oldest, so a flood of input meets back-pressure instead of a growing queue. An
        answer that is an error is logged."""
        while len(self.posted) >= MAX_POSTED:
            oldest = next(iter(self.posted))
            with contextlib.suppress(Exception):
                await asyncio.shield(oldest)  # its error, if any, is logged by its callback
            self.posted.pop(oldest, None)
        self._check_open(False)
        req = next(self._req_ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        msg = make(req)
        try:
            self._channel.send(msg)
        except ChannelClosed as exc:
            raise InstanceCrashed(f"{self._name} is gone") from exc
        self._pending[req] = fut
        self.posted[fut] = None
        fut.add_done_callback(lambda f: self._post_answered(req, f, type(msg).__name__))

    async def posted_handled(self, timeout: float | None = None) -> None:
        """Returns once every input posted so far was answered (handled or failed)."""
        if not self.posted:
            return
        timeout = self._request_timeout if timeout is None else timeout
        _, late = await asyncio.wait([asyncio.shield(f) for f in self.posted], timeout=timeout)
        if late:
            raise RequestTimeout(f"{len(late)} input events not handled within {timeout:g}s "
                                 f"by {self._name}")

    def _post_answered(self, req: int, fut: asyncio.Future[str], kind: str) -> None:
        self._pending.pop(req, None)
        self.posted.pop(fut, None)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and not isinstance(exc, ClosedError | InstanceCrashed):
            self.log.warning("%s failed: %s", kind, exc)

    def resolve(self, msg: p.Result) -> None:
        """The child's answer to one request."""
        fut = self._pending.get(msg.req)
        if fut is None or fut.done():
            return
        if msg.error:
            fut.set_exception(BY_CODE.get(msg.code, LkpoolError)(msg.error))
        else:
            fut.set_result(msg.value)

    def fail_all(self, error: LkpoolError) -> None:
        """The instance ended: nobody waits on it any more."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()

    def close(self) -> None:
        self._channel.close()


class PageChannel:
    """What one page may say to its instance: requests and input about itself.

    The page builds its messages (it knows its id); this object carries them and tells the
    page whether the instance is still there, so the page never reaches into its context."""

    def __init__(self, connection: Connection, *, start_timeout: float,
                 detach: Callable[[], None]) -> None:
        self._connection = connection
        self.start_timeout = start_timeout  # a page's creation may take a browser's start
        self._detach = detach

    @property
    def alive(self) -> bool:
        return self._connection.usable

    async def request(self, make: MakeMessage, timeout: float | None = None) -> str:
        return await self._connection.request(make, timeout)

    async def post(self, make: MakeMessage) -> None:
        await self._connection.post(make)

    async def posted_handled(self, timeout: float | None = None) -> None:
        await self._connection.posted_handled(timeout)

    def send(self, msg: p.Message) -> None:
        self._connection.send(msg)

    def detach(self) -> None:
        """The page is closed: its instance stops routing messages to it."""
        self._detach()
