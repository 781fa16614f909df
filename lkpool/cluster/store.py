"""The cluster's Redis: one client, the keys' prefix and the Lua scripts.

Every change of shared state is one Lua script (lkpool/cluster/lua/), so it is atomic
across nodes: `lib.lua` (the helpers: pick a node, claim a slot, serve the queue, reap) is
prepended to each. Scripts are sent by hash (EVALSHA) and loaded again when a restarted
Redis forgot them.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript

PREFIX = "lkpool:"
SCRIPTS = ("place", "cancel", "confirm", "release", "heartbeat", "leave")
# what a store call may raise when Redis is away or answers oddly
StoreError = (redis.RedisError, OSError)


def _source(name: str) -> str:
    folder = resources.files(__package__) / "lua"
    return (folder / "lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Store:
    """The Redis client and its scripts; `await store.run("place", ...)`."""

    def __init__(self, url: str, *, prefix: str = PREFIX, timeout: float = 2.0) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout,
                                           decode_responses=True)
        # BLPOP waits longer than any socket timeout: its own client, without one
        self.blocking = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                             decode_responses=True)
        self._scripts: dict[str, AsyncScript] = {
            name: self.client.register_script(_source(name)) for name in SCRIPTS}

    async def run(self, name: str, *args: Any) -> Any:
        """Runs script `name` with ARGV = (prefix, *args)."""
        return await self._scripts[name](keys=[], args=[self.prefix, *args])

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.blocking.aclose()
