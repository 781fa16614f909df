"""The node-to-node channel on its own: the wire format without a socket, then both ends
over a real aiohttp server on loopback (calls answered out of order, errors carried with
their status, a socket that breaks mid-call, a peer that comes back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from lkpool.cluster import channel
from lkpool.errors import InvalidArgument, OwnerUnreachable, PoolExhausted, RequestTimeout
from tests.cluster.conftest import free_port


def test_wire_format_round_trips() -> None:
    """A request and its answer keep their id, status and body; anything else is refused."""
    assert channel.parse_answer(channel.answer(7, 200, {"a": [1]})) == (7, 200, {"a": [1]})
    text = channel.error_answer(3, PoolExhausted("no room"))
    assert channel.parse_answer(text) == (3, 503, {"error": "pool_exhausted",
                                                   "detail": "no room"})
    for bad in ("{", "[]", '{"id": "7", "status": 200}', '{"id": 7}'):
        with pytest.raises(InvalidArgument):
            channel.parse_answer(bad)


def test_errors_come_back_as_the_same_kind() -> None:
    """The peer's 503 is a 503 here with its code (so Retry-After follows); a 200 that is
    not an object is the peer failing, not a lease."""
    assert channel.raise_for(200, {"session_id": "x"}) == {"session_id": "x"}
    with pytest.raises(channel.RemoteError) as err:
        channel.raise_for(503, {"error": "pool_exhausted", "detail": "full"})
    assert (err.value.status, err.value.code) == (503, "pool_exhausted")
    assert "full" in str(err.value)
    with pytest.raises(OwnerUnreachable):
        channel.raise_for(200, [1])


async def _echo(body: Any) -> dict[str, Any]:
    return {"echo": body}


async def _slow(body: Any) -> dict[str, Any]:
    await asyncio.sleep(float(body))
    return {"slept": body}


async def _full(body: Any) -> dict[str, Any]:
    raise PoolExhausted("no instance free")


async def _bug(body: Any) -> dict[str, Any]:
    raise RuntimeError("a bug, with internals: /etc/secret")


OPS = {"echo": _echo, "slow": _slow, "full": _full, "bug": _bug}


class Peer:
    """A real server on loopback with the channel's route, which can go away and come back
    on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_routes([channel.route(OPS)])
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    await p.stop()


async def test_calls_are_answered_each_to_its_caller(peer: Peer) -> None:
    """Calls on one socket overlap: a quick one is not held up by a slow one, and each
    caller gets its own answer; the peer's errors arrive with their status and code."""
    async with aiohttp.ClientSession() as http:
        ch = channel.Channel(http, "peer.1", f"http://127.0.0.1:{peer.port}", {}, 5)
        try:
            slow = asyncio.ensure_future(ch.call("slow", 0.5, timeout=10))
            assert await ch.call("echo", {"n": 1}, timeout=10) == {"echo": {"n": 1}}
            assert not slow.done()
            assert await slow == {"slept": 0.5}
            with pytest.raises(channel.RemoteError) as err:
                await ch.call("full", None, timeout=10)
            assert (err.value.status, err.value.code) == (503, "pool_exhausted")
            with pytest.raises(channel.RemoteError) as err:
                await ch.call("bug", None, timeout=10)
            assert err.value.status == 500 and "/etc/secret" not in str(err.value)
            with pytest.raises(RequestTimeout):
                await ch.call("slow", 5, timeout=0.2)
        finally:
            await ch.aclose()


async def test_a_broken_socket_fails_its_calls_and_is_reopened(peer: Peer) -> None:
    """The peer goes away mid-call: the call fails at once as OwnerUnreachable (not at its
    timeout); while it is away calls fail the same way; once it is back the next call
    opens a new socket. A closed channel refuses calls."""
    async with aiohttp.ClientSession() as http:
        ch = channel.Channel(http, "peer.1", f"http://127.0.0.1:{peer.port}", {}, 5)
        try:
            pending = asyncio.ensure_future(ch.call("slow", 30, timeout=60))
            await asyncio.sleep(0.2)
            await peer.stop()
            async with asyncio.timeout(10):
                with pytest.raises(OwnerUnreachable):
                    await pending
            with pytest.raises(OwnerUnreachable) as err:
                await ch.call("echo", 1, timeout=5)
            assert "127.0.0.1" not in str(err.value)  # the address is logged, not told
            await peer.start()
            assert await ch.call("echo", 2, timeout=5) == {"echo": 2}
        finally:
            await ch.aclose()
        with pytest.raises(OwnerUnreachable):
            await ch.call("echo", 3, timeout=5)
