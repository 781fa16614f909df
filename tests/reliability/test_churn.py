"""Churn: many allocate, CDP, release cycles through the real server, then nothing is left
beyond the warm floor's and the server's memory has not crept up.

CHURN_CYCLES (default 300) sets the count. Fresh instances cost a Chromium start each
(seconds on a busy 2-core machine), so the pool reuses an instance for CHURN_REUSE leases
(default 10, reset in between) and replaces it after that: 300 cycles are 30 fresh instances
and 270 resets, which fits the suite's budget and still runs both paths of recycling
(measured here: 300 cycles in 16 s with CHURN_REUSE=25, 70 s with 5; every lease a fresh
instance would be 300 Chromium starts, minutes on this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tempfile
import time

import psutil
from yarl import URL

from lkpool.pool import State
from lkpool.profiles import SINGLETON_FOLDER_PREFIX
from tests.reliability.conftest import CDP, page_ws_url
from tests.server.conftest import run_server, wait_until
from tests.support import leaks

CYCLES = int(os.environ.get("CHURN_CYCLES", "300"))
REUSE = int(os.environ.get("CHURN_REUSE", "10"))
WORKERS = 3
WARM_UP = 30  # cycles before the memory and fd baseline: imports, caches, first pools


async def _cycle(srv, n: int) -> None:
    body = await srv.allocate(timeout=60)
    async with srv.http.ws_connect(await page_ws_url(srv.http, body["proxy_url"])) as ws:
        result = await CDP(ws).call("Runtime.evaluate", expression=f"{n} + 1",
                                    returnByValue=True)
        assert result["result"]["value"] == n + 1
    status, released = await srv.json("DELETE", f"/browser/{body['session_id']}")
    assert status == 200 and released["released"] is True


async def _settled(srv, floor: int) -> int:
    """Waits until nothing is leased, starting or stopping; returns the idle count (the
    floor, or more when the pool grew and has not scaled down yet)."""
    def idle() -> int | None:
        n = srv.pool.counts()["instances"]
        quiet = n["starting"] == n["leased"] == n["stopping"] == 0 and n["idle"] >= floor
        return n["idle"] if quiet else None
    return await wait_until(idle, timeout=120, what="the pool to settle")


def _instance_pids(srv) -> set[int]:
    """Each instance's processes: its child's group, and its child's descendants (a sandboxed
    Chromium runs in a session of its own, outside the group)."""
    pids = set()
    for slot in srv.pool.slots():
        if slot.context is not None and slot.context.pid:
            pids |= {p.pid for p in leaks.descendants().values()
                     if _pgid(p.pid) == slot.context.pid}
            with contextlib.suppress(psutil.Error):
                pids |= {p.pid for p in
                         psutil.Process(slot.context.pid).children(recursive=True)}
    return pids


def _describe(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out.append(f"{pid} pgid {_pgid(pid)} ppid {proc.ppid()} {proc.name()} "
                       f"{' '.join(proc.cmdline())[:150]}")
        except psutil.Error:
            out.append(f"{pid} gone")
    return out


def _fds(srv) -> set[int]:
    """Our open fds, less keep-alive connections (the test client's to the server, and the
    proxy's to a live instance), which come and go with timing; a socket to a stopped
    instance, or any other fd, is counted."""
    live = {URL(srv.base).port} | {s.debugging_port for s in srv.pool.slots()}
    pooled = {c.fd for c in psutil.Process().net_connections("tcp")
              if c.raddr and (c.raddr.port in live or c.laddr.port in live)}
    return set(leaks.open_fds()) - pooled


def _singleton_folder(profile: str) -> str | None:
    try:
        return os.path.dirname(os.readlink(os.path.join(profile, "SingletonSocket")))
    except OSError:
        return None


def _singleton_folders(since: float) -> set[str]:
    """Chromium's process-singleton folders in the temp dir made after `since`."""
    base = tempfile.gettempdir()
    found = set()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        with contextlib.suppress(OSError):
            if name.startswith(SINGLETON_FOLDER_PREFIX) and os.stat(path).st_mtime >= since:
                found.add(path)
    return found


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


async def test_churn_leaves_only_the_warm_floor(small) -> None:
    """CHURN_CYCLES cycles (allocate, a CDP call through the proxy, release) by 3 workers:
    afterwards only the warm floor's processes, shm, profiles and Chromium singleton folders
    exist, no fd beyond the floor's stays open, and the server's RSS grew by less than 10%
    after the warm-up."""
    floor = WORKERS  # and no more: fd and memory figures compare like with like
    settings = small.replace(num_warm=floor, max_instances=floor, max_reusable=REUSE,
                             acquire_timeout=60.0)
    async with run_server(settings) as srv:
        counter = iter(range(CYCLES))

        async def worker() -> None:
            for n in counter:
                await _cycle(srv, n)

        warm = iter(range(WARM_UP))
        await asyncio.gather(*(_cycle(srv, n) for n in [next(warm) for _ in range(WORKERS)]))
        for n in warm:
            await _cycle(srv, n)
        assert await _settled(srv, floor) == floor
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        fds_before = _fds(srv)
        started = time.time()

        await asyncio.gather(*(worker() for _ in range(WORKERS)))

        idle = await _settled(srv, floor)
        gc.collect()
        rss_after = psutil.Process().memory_info().rss
        fds_after = _fds(srv)
        assert not srv.pool.list()
        assert len(srv.pool.ended_leases()) == min(CYCLES + WARM_UP, 1000)
        # only the floor's instances run: every process of ours belongs to one of them
        ours = set(leaks.descendants()) - {p.pid for p in leaks.descendants().values()
                                           if leaks._exempt(p)}
        extra = ours - _instance_pids(srv) - {s.context.pid for s in srv.pool.slots()}
        assert not extra, _describe(extra)  # crash handlers included: we start none
        assert len([s for s in srv.pool.slots() if s.state is State.IDLE]) == idle
        owned_shm = leaks._owned_shm(leaks.shm_names(), set())
        assert len(owned_shm) == 2 * idle, owned_shm  # two frame buffers per warm page
        profiles = [name for name in os.listdir(settings.chromium_profile_base_dir)
                    if not name.startswith(".owner-")]  # the base folder's owner record
        assert len(profiles) == idle, profiles
        # each killed browser's singleton folder in /tmp went with its profile: what is new
        # there since the churn began is the floor's (made after the start, so another
        # suite's older folders do not count)
        linked = {_singleton_folder(os.path.join(settings.chromium_profile_base_dir, name))
                  for name in profiles}
        if settings.sandbox:  # a sandboxed Chromium's singleton folder is in its own /tmp
            assert not {folder for folder in linked if folder and os.path.exists(folder)}
        else:
            left = _singleton_folders(since=started) - linked
            assert not left, sorted(left)
        assert len(fds_after) <= len(fds_before), {
            fd: target for fd, target in leaks.open_fds().items() if fd in fds_after - fds_before}
        assert rss_after < rss_before * 1.10, (rss_before, rss_after)
