"""Crash faults: SIGKILL of each process of an instance, leased and idle at once.

For each role (the child, Chromium, Xvfb, the PulseAudio reader, which runs while someone
listens to the audio) one leased and one idle instance get the signal together: the lease
ends `crashed`, the idle instance is replaced, the warm floor comes back, and neither leaves
a process, profile folder or sink behind (the suite's leak fixture checks shm and the rest
once the server is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import psutil
import pytest

from lkpool.pool import State
from tests.reliability.conftest import ROLES, Remains, group
from tests.server.conftest import run_server, wait_until


def _readers(ctx) -> list[int]:
    """The pids of an instance's audio readers (parec)."""
    out = []
    for proc in group(ctx):
        with contextlib.suppress(psutil.Error):
            if proc.name() == "parec":
                out.append(proc.pid)
    return out


@pytest.mark.parametrize("role", list(ROLES))
async def test_sigkill_ends_lease_and_replaces_idle(small, role: str) -> None:
    """SIGKILL of an instance's {role}: the leased one's lease ends `crashed` (and the proxy
    says so), the idle one is replaced, the floor of two idle instances comes back, and both
    instances' processes, profiles and sinks are gone."""
    settings = small.replace(num_warm=2, max_instances=3, audio=True)
    async with run_server(settings) as srv:
        body = await srv.allocate(timeout=120)
        sid = body["session_id"]
        lease = srv.pool.get(sid)
        idle = next(s for s in srv.pool.slots() if s.state is State.IDLE)
        victims = [lease.context, idle.context]
        remains = [Remains.of(ctx) for ctx in victims]
        crashed: set[int] = set()
        srv.pool.on("crashed", lambda slot_id, why: crashed.add(slot_id))
        assert all(r.sink for r in remains), "audio is on: each instance has a sink"
        if role == "parec":  # the reader runs only while someone listens to the audio
            for page in (lease.page, idle.page):
                page.on("audio", lambda _: None)
            await wait_until(lambda: all(_readers(ctx) for ctx in victims), timeout=30,
                             what="each instance's audio reader")

        for ctx in victims:
            os.kill(ROLES[role](ctx), signal.SIGKILL)

        assert await asyncio.wait_for(lease.wait_ended(), 60) == "crashed"
        status, err = await srv.json("GET", f"/session/{sid}/json/version")
        assert status == 403 and "crashed" in err["detail"]
        status, described = await srv.json("GET", f"/browser/{sid}")
        assert status == 200 and described["end_reason"] == "crashed"
        await wait_until(lambda: crashed == {lease.slot_id, idle.id}, timeout=60,
                         what="both instances to be seen as crashed")
        await wait_until(lambda: not {id(s.context) for s in srv.pool.slots()}
                         & {id(ctx) for ctx in victims}, timeout=60,
                         what="the dead instances to leave the pool")
        await wait_until(lambda: srv.pool.counts()["instances"]["idle"] == 2, timeout=90,
                         what="the warm floor of two")
        await wait_until(lambda: not any(r.left() for r in remains), timeout=30,
                         what=f"the killed instances' leftovers to go: "
                              f"{[r.left() for r in remains]}")
        async with srv.http.get(srv.url("/metrics")) as resp:
            text = await resp.text()
        assert "lkpool_crashes_total 2.0" in text
        assert 'lkpool_leases_ended_total{reason="crashed"} 1.0' in text
        # the replacements work: a new lease gets an instance that answers CDP
        again = await srv.allocate(timeout=30)
        status, version = await srv.json("GET", f"/session/{again['session_id']}/json/version")
        assert status == 200 and "Browser" in version
