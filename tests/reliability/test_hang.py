"""Hang faults: a page stuck in `while(true){}` and a child stopped with SIGSTOP.

Neither dies, so only the health check can tell: it must end the lease (`crashed`) within
HEALTH_CHECK_INTERVAL plus a bounded timeout and bring the floor back, while another lease
of the same pool keeps answering CDP the whole time. No timed assertion: the proof that the
other lease is not held up is that it answered while the stuck one was still being noticed.
"""

from __future__ import annotations

import asyncio
import os
import signal

from lkpool.pool import Lease
from tests.reliability.conftest import CDP, Remains, page_ws_url
from tests.server.conftest import run_server, wait_until

SPIN = "setTimeout(() => { while (true) {} }, 0); 'spinning'"


async def _other_lease_answers_until(srv, other: dict, stuck: Lease) -> int:
    """CDP round trips on `other` while `stuck` is still active; returns how many."""
    answered = 0
    async with srv.http.ws_connect(await page_ws_url(srv.http, other["proxy_url"])) as ws:
        cdp = CDP(ws)
        while stuck.active:
            result = await cdp.call("Runtime.evaluate", expression="6 * 7",
                                    returnByValue=True)
            assert result["result"]["value"] == 42
            answered += 1
            await asyncio.sleep(0.05)
    return answered


async def _check_replaced(srv, stuck: Lease, remains: Remains, crashes: list[str],
                          answered: int) -> None:
    # bounded: the interval, the check's own timeout, and room for the stop on a busy machine
    bound = srv.pool.settings.health_check_interval + srv.pool.settings.health_check_timeout
    assert await asyncio.wait_for(stuck.wait_ended(), bound + 30) == "crashed"
    assert any("health check failed" in why for why in crashes), crashes
    assert answered >= 1, "the other lease answered CDP while the stuck one was noticed"
    await wait_until(lambda: srv.pool.counts()["instances"]["idle"] >= 1, timeout=90,
                     what="the warm floor")
    await wait_until(lambda: not remains.left(), timeout=30,
                     what=f"the stuck instance's leftovers to go: {remains.left()}")


async def test_stuck_page_is_replaced(small) -> None:
    """A leased page spinning in `while(true){}` is found by the health check (the browser
    process still answers; its renderer does not) and its lease ends `crashed`, while another
    lease keeps answering CDP."""
    settings = small.replace(num_warm=1, max_instances=3, acquire_timeout=60.0)
    async with run_server(settings) as srv:
        stuck_body, other = await srv.allocate(timeout=120), await srv.allocate(timeout=120)
        stuck = srv.pool.get(stuck_body["session_id"])
        remains = Remains.of(stuck.context)
        crashes: list[str] = []
        srv.pool.on("crashed", lambda slot_id, why: crashes.append(why))
        async with srv.http.ws_connect(await page_ws_url(srv.http,
                                                         stuck_body["proxy_url"])) as ws:
            spun = await CDP(ws).call("Runtime.evaluate", expression=SPIN, returnByValue=True)
            assert spun["result"]["value"] == "spinning"
            answered = await _other_lease_answers_until(srv, other, stuck)
        await _check_replaced(srv, stuck, remains, crashes, answered)
        assert srv.pool.get(other["session_id"]).active


async def test_stopped_child_is_replaced(small) -> None:
    """A leased instance whose child is stopped (SIGSTOP) stops answering pings: its lease
    ends `crashed`, the stopped child and its whole group are killed (sink included), while
    another lease keeps answering CDP."""
    settings = small.replace(num_warm=1, max_instances=3, audio=True, acquire_timeout=60.0)
    async with run_server(settings) as srv:
        stuck_body, other = await srv.allocate(timeout=120), await srv.allocate(timeout=120)
        stuck = srv.pool.get(stuck_body["session_id"])
        remains = Remains.of(stuck.context)
        assert remains.sink
        crashes: list[str] = []
        srv.pool.on("crashed", lambda slot_id, why: crashes.append(why))
        os.kill(stuck.context.pid, signal.SIGSTOP)
        try:
            answered = await _other_lease_answers_until(srv, other, stuck)
            await _check_replaced(srv, stuck, remains, crashes, answered)
        finally:
            if stuck.context.pid and stuck.context.closed_reason is None:
                os.kill(stuck.context.pid, signal.SIGCONT)
        assert srv.pool.get(other["session_id"]).active


async def test_page_waiting_on_a_dialog_is_not_stuck(small) -> None:
    """A page showing alert() cannot run scripts, yet it is waiting for its user, not hung:
    health checks keep passing and the lease lives on; answering the dialog frees the page."""
    settings = small.replace(num_warm=1, max_instances=2, health_check_interval=0.2,
                             health_check_timeout=0.5)
    async with run_server(settings) as srv:
        body = await srv.allocate(timeout=120)
        lease = srv.pool.get(body["session_id"])
        checks = 0

        async with srv.http.ws_connect(await page_ws_url(srv.http, body["proxy_url"])) as ws:
            cdp = CDP(ws)
            await cdp.call("Page.enable")
            await cdp.call("Runtime.evaluate", expression="setTimeout(() => alert('hi'), 0)")
            await wait_until(lambda: lease.context.alive, what="the instance")
            for _ in range(8):  # several health intervals, each with a probe of the page
                await lease.context.ping(timeout=2.0)
                checks += 1
                await asyncio.sleep(settings.health_check_interval)
            assert lease.active and lease.end_reason is None
            await cdp.call("Page.handleJavaScriptDialog", accept=True)
            result = await cdp.call("Runtime.evaluate", expression="6 * 7", returnByValue=True)
            assert result["result"]["value"] == 42
        assert checks == 8 and lease.active
