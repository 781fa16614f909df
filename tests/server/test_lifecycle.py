"""Leases ending on their own: at the deadline, and when their Chromium dies."""

from __future__ import annotations

import os
import signal

import aiohttp

from lkpool.pool import State
from tests.server.conftest import run_server, wait_until


def idle_ports(srv) -> set[int]:
    return {s.debugging_port for s in srv.pool.slots() if s.state is State.IDLE}


async def test_lease_expires_and_instance_is_replaced(small) -> None:
    """A 1 s lease ends as `expired` (its WebSocket closed with 4001), and a fresh instance
    takes the place of the old one."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=1)
        sid, port = body["session_id"], body["debugging_port"]
        async with srv.http.ws_connect(body["ws_url"]) as ws:
            closing = await ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, closing.extra) == (4001, "expired")
        status, lease = await srv.json("GET", f"/browser/{sid}")
        assert status == 200 and lease["active"] is False and lease["end_reason"] == "expired"
        status, err = await srv.json("POST", f"/browser/{sid}/timeout", params={"timeout": 5})
        assert status == 404 and "expired" in err["detail"]
        await wait_until(lambda: idle_ports(srv) - {port}, what="a replacement instance")
        await wait_until(lambda: port not in {s.debugging_port for s in srv.pool.slots()},
                         what="the expired instance to stop")


async def test_killed_chromium_ends_lease_as_crashed(small) -> None:
    """SIGKILL of a leased Chromium ends its lease with `crashed`: the proxied WebSocket
    closes with 1011 "crashed", GET /browsers and the proxy say so, and the warm floor
    comes back."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=60)
        sid = body["session_id"]
        browser_pid = srv.pool.get(sid).context.browser_pid
        async with srv.http.ws_connect(body["ws_url"]) as ws:
            os.kill(browser_pid, signal.SIGKILL)
            closing = await ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, closing.extra) == (1011, "crashed")
        assert srv.pool.ended(sid).end_reason == "crashed"

        status, listed = await srv.json("GET", "/browsers")
        crashed = [b for b in listed if b["session_id"] == sid]
        assert status == 200 and crashed and crashed[0]["end_reason"] == "crashed"
        assert crashed[0]["active"] is False
        status, err = await srv.json("GET", f"/session/{sid}/json/version")
        assert status == 403 and "crashed" in err["detail"]

        await wait_until(lambda: idle_ports(srv), what="the warm floor")
        async with srv.http.get(srv.url("/metrics")) as resp:
            text = await resp.text()
        assert "lkpool_crashes_total 1.0" in text and "lkpool_restarts_total 1.0" in text


async def test_crashed_page_ends_lease_as_crashed(small) -> None:
    """A renderer crash of the leased page (the browser lives on) leaves a dead page no one
    can use: the lease ends with `crashed`, its proxied WebSocket closes with 1011, and the
    instance is replaced."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=60)
        sid, port = body["session_id"], body["debugging_port"]
        async with srv.http.get(f"{srv.base}/session/{sid}/json/list") as resp:
            page = next(t for t in await resp.json() if t["type"] == "page")
        async with srv.http.ws_connect(body["ws_url"]) as browser_ws, \
                srv.http.ws_connect(page["webSocketDebuggerUrl"]) as page_ws:
            await page_ws.send_json({"id": 1, "method": "Page.crash"})
            closing = await browser_ws.receive(timeout=30)
        assert (browser_ws.close_code, closing.extra) == (1011, "crashed")
        assert srv.pool.ended(sid).end_reason == "crashed"
        await wait_until(lambda: idle_ports(srv) - {port}, what="a replacement instance")
