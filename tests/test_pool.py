"""The pool without the server: leases, FIFO waiting, recycling policies, failures, purge."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from lkpool.errors import (
    BrowserStartError,
    InvalidArgument,
    PoolClosed,
    PoolExhausted,
    UnknownSession,
)
from lkpool.pool import Pool, State
from tests.server.conftest import wait_until
from tests.support.pages import serve_pages

COOKIE_PAGE = ("<title>c</title><body>cookie<a id=d download='lkpool-test-download.txt' "
               "href='data:text/plain,secret'>d</a></body>")


@pytest.fixture
def small(settings):
    return settings.replace(width=320, height=240, framerate=10, audio=False)


async def test_lease_gets_its_page_and_a_fresh_profile_after(small) -> None:
    """A lease's page has the asked size and URL; after release its instance is stopped
    (profile removed) and the next lease runs in a fresh profile without the old cookie."""
    async with serve_pages({"/c": COOKIE_PAGE}) as site, Pool(small) as pool:
        await pool.wait_ready()
        async with pool.lease(30, url=f"{site}/c", width=400, height=300) as lease:
            assert len(lease.session_id) >= 32 and pool.get(lease.session_id) is lease
            assert (lease.page.width, lease.page.height) == (400, 300)
            assert lease.cdp_url == f"http://127.0.0.1:{lease.debugging_port}"
            assert lease.created_at <= lease.last_used < lease.expires_at
            assert await lease.page.evaluate("location.href") == f"{site}/c"
            await lease.page.evaluate("document.cookie = 'who=first; max-age=3600'")
            before = lease.expires_at
            assert pool.extend(lease.session_id, 10).expires_at > before
            first_ctx, first_profile = lease.context, lease.context.profile_dir
        assert lease.end_reason == "released" and not lease.active
        with pytest.raises(UnknownSession, match="released"):
            await pool.release(lease.session_id)
        await wait_until(lambda: not os.path.exists(first_profile), what="the old profile gone")
        assert first_ctx.closed_reason == "closed"

        async with pool.lease(url=f"{site}/c") as second:
            assert second.context is not first_ctx
            assert await second.page.evaluate("document.cookie") == ""


async def test_waiters_are_served_in_order_then_exhausted(small) -> None:
    """With every instance leased, acquires wait in FIFO order; one that waits longer than
    its bound gets PoolExhausted; bad arguments are refused before any wait."""
    async with Pool(small.replace(max_instances=1)) as pool:
        await pool.wait_ready()
        held = await pool.acquire(60)
        with pytest.raises(PoolExhausted):
            await pool.acquire(wait=0.2)
        with pytest.raises(InvalidArgument, match="width"):
            await pool.acquire(width=0)
        order: list[str] = []

        async def take(name: str) -> None:
            lease = await pool.acquire(60, wait=60)
            order.append(name)
            await pool.release(lease.session_id)

        first = asyncio.create_task(take("first"))
        await wait_until(lambda: pool.counts()["waiting"] == 1, what="first waiter")
        second = asyncio.create_task(take("second"))
        await wait_until(lambda: pool.counts()["waiting"] == 2, what="second waiter")
        await pool.release(held.session_id)
        await asyncio.wait_for(asyncio.gather(first, second), 60)
        assert order == ["first", "second"]


NAME = "lkpool-test-download.txt"


async def test_opt_in_reuse_resets_the_instance(small) -> None:
    """With MAX_REUSABLE=2 an instance serves two leases, reset in between (cookie gone,
    page blank, downloads gone), and check_invalid sees its stats; after two uses it is
    replaced. Downloads land in the profile, not in $HOME/Downloads."""
    seen: list[dict] = []

    def check_invalid(stats: dict) -> bool:
        seen.append(stats)
        return False

    async with serve_pages({"/c": COOKIE_PAGE}) as site, \
            Pool(small.replace(max_reusable=2, max_instances=1),
                 check_invalid=check_invalid) as pool:
        await pool.wait_ready()
        async with pool.lease(url=f"{site}/c") as first:
            await first.page.evaluate("document.cookie = 'who=first; max-age=3600'")
            await first.page.evaluate("document.getElementById('d').click()")
            downloaded = Path(first.context.profile_dir) / "Downloads" / NAME
            await wait_until(downloaded.exists, what="the download in the profile")
            assert downloaded.read_text() == "secret"
            assert not (Path.home() / "Downloads" / NAME).exists()
        await wait_until(lambda: pool.counts()["instances"]["idle"] >= 1, what="the reset")
        async with pool.lease() as second:
            assert second.context is first.context
            assert await second.page.evaluate("location.href") == "about:blank"
            await second.page.navigate(f"{site}/c")
            assert await second.page.evaluate("document.cookie") == ""
            assert not downloaded.exists() and downloaded.parent.is_dir()
        assert seen and seen[0]["count"] == 1
        await wait_until(lambda: first.context.closed_reason == "closed",
                         what="the instance to be replaced after two uses")


async def test_failed_starts_make_the_pool_degraded(small, profile_dir) -> None:
    """MAX_STARTUP_ATTEMPTS failed starts in a row: the pool reports degraded, stops trying
    on its own, and an acquire fails fast with the reason instead of waiting."""
    broken = small.replace(chromium_path=str(profile_dir / "no-chromium"),
                           max_startup_attempts=2, acquire_timeout=30)
    async with Pool(broken) as pool:
        with pytest.raises(BrowserStartError, match="no-chromium"):
            await pool.wait_ready()
        counts = pool.counts()
        assert counts["degraded"] is True and "no-chromium" in counts["last_error"]
        with pytest.raises(BrowserStartError, match="fail to start"):
            await asyncio.wait_for(pool.acquire(), 15)
        assert not any(s.state is not State.DEAD for s in pool.slots())
    with pytest.raises(PoolClosed):
        await pool.acquire()


async def test_start_purges_leftovers_and_close_during_starts_leaves_nothing(
        small, profile_dir) -> None:
    """Start-up removes profile folders a dead run left (only lkpool's), the singleton folders
    they link to, and Singleton locks; closing while instances are still starting leaves
    nothing behind."""
    stale = profile_dir / "lkpool-deadbeef"
    (stale / "Default").mkdir(parents=True)
    (stale / "SingletonLock").symlink_to("otherhost-999999")
    singleton = Path(tempfile.mkdtemp(prefix="org.chromium.Chromium."))
    (stale / "SingletonSocket").symlink_to(singleton / "SingletonSocket")
    (profile_dir / "SingletonLock").symlink_to("otherhost-999999")
    foreign = profile_dir / "not-ours"
    foreign.mkdir()
    pool = Pool(small.replace(num_warm=2))
    await pool.start()
    try:
        assert not stale.exists() and not (profile_dir / "SingletonLock").is_symlink()
        assert not singleton.exists()
        assert foreign.exists()
        assert pool.counts()["instances"]["starting"] == 2
    finally:
        await pool.aclose()
        foreign.rmdir()
    assert pool.closed and not pool.slots()


async def test_debugging_ports_from_the_configured_start(small) -> None:
    """DEBUGGING_PORT_START hands each instance the first free port from there, skipping one
    that something else already listens on."""
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        start = squatter.getsockname()[1]
        squatter.listen()
        async with Pool(small.replace(debugging_port_start=start, num_warm=2)) as pool:
            await pool.wait_ready()
            ports = sorted(s.context.remote_debugging_port for s in pool.slots())
            assert len(ports) == 2 and start not in ports and all(p > start for p in ports)
            async with pool.lease(30) as lease:
                assert lease.debugging_port in ports
