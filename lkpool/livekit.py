"""LiveKit's browser agent (livekit-plugins-browser) on pages leased from a `Pool`: a warm
browser in milliseconds instead of a cold CEF start, the plugin's code unchanged.

- `BrowserSession` takes a page: give it `lease.page` (`session_on(pool, room, ...)` does
  the lease and the session together).
- `BrowserAgent` makes its own page: it constructs `livekit.browser.BrowserContext` itself.
  `PooledBrowserAgent` is the plugin's `BrowserAgent` whose context is a `LeasedContext`:
  its `new_page` is a lease from the pool, its `aclose` the lease's end. The plugin looks
  the class up in its module when it starts; we put a switch there (once, on first use)
  that gives a `LeasedContext` inside a `PooledBrowserAgent.start()` (a context variable,
  so agents started concurrently elsewhere in the process are not affected) and
  livekit.browser's own context everywhere else.

Both need `pip install livekit-plugins-browser livekit-plugins-anthropic` (the agent's LLM),
a LiveKit server and, for the agent, an Anthropic key; examples/browser_agent.py runs it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from .pool import Lease, Pool

_pool_of_start: contextvars.ContextVar[tuple[Pool, float] | None] = contextvars.ContextVar(
    "lkpool_agent_pool", default=None)


class LeasedContext:
    """livekit.browser's `BrowserContext` API over one pool: each page is a lease."""

    def __init__(self, pool: Pool, lease_timeout: float) -> None:
        self.pool = pool
        self.lease_timeout = lease_timeout
        self.leases: list[Lease] = []

    async def initialize(self) -> None:
        """The pool's browsers are started already."""

    async def new_page(self, *, url: str, width: int = 1920, height: int = 1080,
                       framerate: int = 24) -> Any:
        lease = await self.pool.acquire(self.lease_timeout, url=url, width=width,
                                        height=height, framerate=framerate)
        self.leases.append(lease)
        return lease.page

    async def aclose(self) -> None:
        leases, self.leases = self.leases, []
        for lease in leases:
            with contextlib.suppress(Exception):  # ended already (expired, crashed)
                await self.pool.release(lease.session_id)


def _install_switch() -> None:
    """Makes the plugin's `BrowserContext(...)` give a LeasedContext inside a
    PooledBrowserAgent.start() (see the module docstring); idempotent."""
    from livekit.plugins.browser import browser_agent

    original = browser_agent.BrowserContext
    if getattr(original, "lkpool_switch", False):
        return

    def context(*args: Any, **kwargs: Any) -> Any:
        chosen = _pool_of_start.get()
        if chosen is None:
            return original(*args, **kwargs)
        return LeasedContext(*chosen)

    context.lkpool_switch = True  # type: ignore[attr-defined]
    browser_agent.BrowserContext = context


def _agent_class() -> type:
    from livekit.plugins.browser import BrowserAgent

    class PooledBrowserAgent(BrowserAgent):
        """The plugin's BrowserAgent on a page leased from `pool` (same arguments as
        BrowserAgent, plus `pool` and `lease_timeout`)."""

        def __init__(self, *, pool: Pool, lease_timeout: float = 3600.0,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._lkpool = (pool, lease_timeout)

        async def start(self, *, room: Any) -> None:
            _install_switch()
            token = _pool_of_start.set(self._lkpool)
            try:
                await super().start(room=room)
            finally:
                _pool_of_start.reset(token)

    return PooledBrowserAgent


def __getattr__(name: str) -> Any:
    # the plugin (and livekit-agents under it) load only when the agent class is asked for
    if name == "PooledBrowserAgent":
        cls = _agent_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


@contextlib.asynccontextmanager
async def session_on(pool: Pool, room: Any, *, url: str, width: int = 1280,
                     height: int = 720, framerate: int = 30,
                     lease_timeout: float = 3600.0) -> AsyncIterator[Any]:
    """The plugin's BrowserSession, started on a page leased from `pool`; closed and the
    lease ended on exit."""
    from livekit.plugins.browser import BrowserSession

    async with pool.lease(lease_timeout, url=url, width=width, height=height,
                          framerate=framerate) as lease:
        session = BrowserSession(page=lease.page, room=room)
        await session.start()
        try:
            yield session
        finally:
            await session.aclose()
