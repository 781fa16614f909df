"""The cluster when parts of it fail: a node killed, restarted, drained; Redis restarted
empty. Each test gets three fresh nodes."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.cluster.conftest import LocalCluster
from tests.cluster.test_cluster import allocate, figures, node_of, wait_used

pytestmark = pytest.mark.timeout(180)


async def status_of(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, {}


async def wait_gone(http: aiohttp.ClientSession, url: str, within: float) -> dict:
    """The body of the first 410 `url` answers within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        status, body = await status_of(http, url)
        if status == 410:
            return body
        assert time.monotonic() < deadline, f"{url} still answers {status}: {body}"
        await asyncio.sleep(0.1)


async def test_killed_node_sessions_are_410_everywhere_and_stay_so(
        cluster: LocalCluster) -> None:
    """SIGKILL bravo: within 5 s its sessions answer 410 node_lost on the other nodes and a
    socket proxied to it closes; bravo restarted under its name is a new incarnation whose
    old ids stay 410, and its capacity is counted once."""
    alpha, bravo, charlie = (cluster.nodes[n] for n in ("alpha", "bravo", "charlie"))
    async with aiohttp.ClientSession() as http:
        sid = (await allocate(http, bravo.base))["session_id"]
        assert node_of(sid) == "bravo"
        async with http.get(f"{alpha.base}/session/{sid}/json/list") as resp:
            page = next(t for t in await resp.json() if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"]) as ws:
            cluster.stop_node("bravo", signal.SIGKILL)
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        for node in (alpha, charlie):
            body = await wait_gone(http, f"{node.base}/session/{sid}/json/version", 5.0)
            assert body["error"] == "node_lost", body
            status, body = await status_of(http, f"{node.base}/browser/{sid}")
            assert status == 410 and body["error"] == "node_lost"
        async with asyncio.timeout(10):
            while (await figures(http, alpha.base))["nodes_up"] != 2:
                await asyncio.sleep(0.1)

        cluster.start_node("bravo")
        async with asyncio.timeout(10):
            while (f := await figures(http, alpha.base))["nodes_up"] != 3:
                await asyncio.sleep(0.1)
        assert f["capacity"] == 6, f
        for node in (alpha, bravo, charlie):
            status, body = await status_of(http, f"{node.base}/session/{sid}/json/version")
            assert status == 410 and body["error"] == "node_lost", (node.name, status, body)
        # the new bravo takes leases again, under a new incarnation
        fresh = (await allocate(http, bravo.base))["session_id"]
        assert node_of(fresh) == "bravo" and fresh.split(".")[1] != sid.split(".")[1]
        async with http.delete(f"{charlie.base}/browser/{fresh}") as resp:
            assert resp.status == 200


async def test_a_placement_on_a_killed_node_fails_cleanly(cluster: LocalCluster) -> None:
    """bravo killed while its heartbeat is still fresh, every other slot taken: the lease
    placed on bravo answers 502 node_unreachable (not a hang, not a 500), and its slot is
    given back, so the cluster counts only the four live leases."""
    alpha, charlie = cluster.nodes["alpha"], cluster.nodes["charlie"]
    async with aiohttp.ClientSession() as http:
        sids = [(await allocate(http, node.base))["session_id"]
                for node in (alpha, alpha, charlie, charlie)]
        assert sorted(map(node_of, sids)) == ["alpha", "alpha", "charlie", "charlie"]
        cluster.stop_node("bravo", signal.SIGKILL)
        async with http.post(f"{alpha.base}/browser", params={"timeout": 60}) as resp:
            body = await resp.json()
            assert resp.status == 502 and body["error"] == "node_unreachable", body
            assert "bravo" in body["detail"], body
        async with asyncio.timeout(10):  # bravo reaped: two nodes, four leases, no claim
            while (f := await figures(http, alpha.base))["nodes_up"] != 2:
                await asyncio.sleep(0.1)
        assert f["used"] == 4, f
        for s in sids:
            async with http.delete(f"{alpha.base}/browser/{s}") as resp:
                assert resp.status == 200
    cluster.start_node("bravo")  # which purges what its killed run left


async def test_sigterm_drains(cluster: LocalCluster) -> None:
    """SIGTERM charlie: its lease ends `shutdown` (410 on the other nodes), it deregisters
    and exits 0, and new leases go to the others."""
    alpha, charlie = cluster.nodes["alpha"], cluster.nodes["charlie"]
    async with aiohttp.ClientSession() as http:
        sid = (await allocate(http, charlie.base))["session_id"]
        assert node_of(sid) == "charlie"
        assert cluster.stop_node("charlie", signal.SIGTERM) == 0
        status, body = await status_of(http, f"{alpha.base}/session/{sid}/json/version")
        assert status == 410 and body["error"] == "session_gone", body
        assert "shutdown" in body["detail"]
        async with asyncio.timeout(10):
            while (f := await figures(http, alpha.base))["nodes_up"] != 2:
                await asyncio.sleep(0.1)
        assert f["capacity"] == 4 and f["used"] == 0, f
        sids = [(await allocate(http, alpha.base))["session_id"] for _ in range(4)]
        assert sorted(map(node_of, sids)) == ["alpha", "alpha", "bravo", "bravo"]
        for s in sids:
            async with http.delete(f"{alpha.base}/browser/{s}") as resp:
                assert resp.status == 200


async def test_redis_restarting_empty_loses_nothing(cluster: LocalCluster) -> None:
    """Redis killed: a lease keeps working through a non-owner, allocation answers 503
    saying why. Redis back, empty: without restarting a node the cluster knows its nodes and
    that lease again, and allocation works."""
    alpha, bravo = cluster.nodes["alpha"], cluster.nodes["bravo"]
    async with aiohttp.ClientSession() as http:
        sid = (await allocate(http, bravo.base))["session_id"]
        cluster.redis.kill()
        await asyncio.sleep(0.5)
        status, version = await status_of(http, f"{alpha.base}/session/{sid}/json/version")
        assert status == 200 and f":{alpha.port}/session/{sid}/" in version[
            "webSocketDebuggerUrl"]
        async with http.post(f"{alpha.base}/browser") as resp:
            body = await resp.json()
            assert resp.status == 503 and body["error"] == "cluster_unavailable", body
        async with asyncio.timeout(10):
            while (f := await figures(http, alpha.base))["store"] == "ok":
                await asyncio.sleep(0.1)
        # what the cluster looks like is unknown now, and /health says so
        assert f["nodes_up"] is f["used"] is f["capacity"] is None, f

        cluster.redis.start()
        async with asyncio.timeout(10):
            while (f := await figures(http, alpha.base))["store"] != "ok" or f["nodes_up"] != 3 \
                    or f["used"] != 1:
                await asyncio.sleep(0.1)
        assert f["capacity"] == 6, f
        other = (await allocate(http, alpha.base))["session_id"]
        for s in (sid, other):
            async with http.delete(f"{alpha.base}/browser/{s}") as resp:
                assert resp.status == 200
        await wait_used(http, alpha.base, 0)
