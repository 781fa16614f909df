"""The cluster's costs: what going through a node that does not own the lease adds, and the
placement path alone at a scale this machine cannot run browsers for.

    python -m bench.cluster [--allocs 30] [--evals 300] [--nodes 100] [--slots 50]

1. Allocation through a non-owner vs the owner (p50): two real nodes and a real
   redis-server on loopback. Node A has room; node B (capacity 1) holds a lease, so
   POST /browser on B places on A and B sends the acquire to A over its channel. The
   baseline is POST /browser on A itself. Every allocation gets a warm instance (the next
   waits for A's warm floor to refill), and both nodes were last called equally long ago
   (so the entry node of either kind is as warm as the other).
2. Runtime.evaluate round trip on A's lease through B (spliced twice: B to A, A to
   Chromium) vs through A.
3. Placement alone: the real Lua scripts on the real Redis with `--nodes` simulated nodes x
   `--slots` slots, no browsers: placements per second (8 clients), p99 of one place call,
   and the spread (slots used per node when the cluster is half full): entry nodes drawn at
   random, each preferring itself (the called node first, then the least loaded), and with
   no node preferred (the least loaded alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Row, table
from lkpool.cluster import ids
from lkpool.cluster.internal import SECRET_HEADER
from lkpool.cluster.store import Store
from tests.cluster.conftest import NODE_ENV, SECRET, LocalCluster, Redis, free_port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def _ready(http: aiohttp.ClientSession, cluster: LocalCluster, idle: int, used: int
                 ) -> None:
    """Until A has `idle` warm instances, none starting or stopping (their CPU would land
    on whichever allocation comes next), and the cluster `used` slots taken. Each round asks
    both nodes, so whichever is called next was last called as long ago as the other."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    async with asyncio.timeout(60):
        while True:
            async with http.get(a.base + "/health") as resp:
                h = await resp.json()
            async with http.get(b.base + "/health") as resp:
                await resp.read()
            counts = h["pool"]["instances"]
            if (counts["idle"] >= idle and counts["starting"] == counts["stopping"] == 0
                    and h["cluster"]["used"] == used):
                await asyncio.sleep(0.2)  # the stopped browser's processes exit
                return
            await asyncio.sleep(0.05)


async def _allocations(cluster: LocalCluster, n: int) -> tuple[list[float], list[float]]:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    owner: list[float] = []
    remote: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(b.base + "/browser", params={"timeout": 600}) as resp:
            held = (await resp.json())["session_id"]  # fills B: its allocations go to A
        for i in range(2 * n):
            entry, out = (a, owner) if i % 2 == 0 else (b, remote)
            await _ready(http, cluster, 1, 1)
            t0 = time.perf_counter()
            async with http.post(entry.base + "/browser", params={"timeout": 60}) as resp:
                body = await resp.json()
            out.append(time.perf_counter() - t0)
            assert resp.status == 200 and body["session_id"].startswith("a."), body
            async with http.delete(f"{a.base}/browser/{body['session_id']}") as resp:
                assert resp.status == 200
        async with http.delete(f"{b.base}/browser/{held}"):
            pass
    return owner, remote


async def _hops(cluster: LocalCluster, n: int) -> list[float]:
    """What one node-to-node call costs after the same idle gap as an allocation: the floor
    of the extra hop a non-owner adds (an acquire with no session over a channel to A: its
    400, through the same code as a real one)."""
    a = cluster.nodes["a"]
    times: list[float] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
            a.base + "/_cluster/channel", headers={SECRET_HEADER: SECRET}) as ws:
        for i in range(n):
            await _ready(http, cluster, 1, 0)
            t0 = time.perf_counter()
            await ws.send_str(json.dumps({"id": i, "op": "acquire", "body": {}}))
            answer = json.loads((await ws.receive()).data)
            times.append(time.perf_counter() - t0)
            assert answer["status"] == 400, answer
    return times


async def _evaluations(cluster: LocalCluster, n: int) -> tuple[list[float], list[float]]:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    async with aiohttp.ClientSession() as http:
        await _ready(http, cluster, 1, 0)
        async with http.post(a.base + "/browser", params={"timeout": 600}) as resp:
            sid = (await resp.json())["session_id"]
        results = []
        for entry in (a, b):
            async with http.get(f"{entry.base}/session/{sid}/json/list") as resp:
                page = next(t for t in await resp.json() if t["type"] == "page")
            times: list[float] = []
            async with http.ws_connect(page["webSocketDebuggerUrl"]) as ws:
                for i in range(n + 20):
                    t0 = time.perf_counter()
                    await ws.send_json({"id": i, "method": "Runtime.evaluate",
                                        "params": {"expression": "1 + 1"}})
                    reply = await ws.receive_json()
                    assert reply["result"]["result"]["value"] == 2, reply
                    if i >= 20:  # the first round trips warm both paths up
                        times.append(time.perf_counter() - t0)
            results.append(times)
        async with http.delete(f"{a.base}/browser/{sid}"):
            pass
    return results[0], results[1]


async def _placement(redis_url: str, nodes: int, slots: int, prefer: bool = True
                     ) -> dict[str, float]:
    store = Store(redis_url, prefix="lkbench:")
    try:
        await store.client.flushdb()
        nids = [ids.new_nid(f"sim{i}") for i in range(nodes)]
        timeout_ms = 600_000  # the simulated nodes do not heartbeat during the run
        for nid in nids:
            await store.run("heartbeat", nid, "http://x", "http://x", slots, "up", "bench",
                            timeout_ms, 60_000, 60_000, 60_000, 0, 0)
        total = nodes * slots
        latencies: list[float] = []
        rng = random.Random(14)

        async def client(left) -> None:
            for _ in left:
                t0 = time.perf_counter()
                result = await store.run("place", rng.choice(nids) if prefer else "",
                                         ids.new_random(),
                                         600_000, timeout_ms, "", 60_000)
                latencies.append(time.perf_counter() - t0)
                assert result[0] == "placed", result

        elapsed = 0.0
        spread: list[int] = []
        for part in (range(total // 2), range(total // 2, total)):
            left = iter(part)
            t0 = time.perf_counter()
            await asyncio.gather(*(client(left) for _ in range(8)))
            elapsed += time.perf_counter() - t0
            if not spread:  # half full: how evenly are the leases spread?
                spread = [await store.client.scard(f"lkbench:node:{n}:sess") for n in nids]
        full = await store.run("place", nids[0], ids.new_random(), 600_000, timeout_ms, "",
                               60_000)
        assert full == ["full"], full
        await store.client.flushdb()
        return {"rate": total / elapsed, "p50": statistics.median(latencies),
                "p99": pct(latencies, 0.99), "min": min(spread), "max": max(spread),
                "mean": statistics.mean(spread), "stdev": statistics.pstdev(spread)}
    finally:
        await store.aclose()


def _start(tmp: Path) -> LocalCluster:
    redis = Redis(free_port())
    redis.start()
    (tmp / "profiles").mkdir()
    (tmp / "logs").mkdir()
    cluster = LocalCluster(redis, tmp / "profiles", tmp / "logs", tracked=False)
    try:
        cluster.start_node("a", MAX_INSTANCES="2", NUM_WARM="1")
        cluster.start_node("b", MAX_INSTANCES="1", NUM_WARM="0")
    except BaseException:
        cluster.close()
        raise
    return cluster


async def run(allocs: int = 30, evals: int = 300, nodes: int = 100, slots: int = 50
              ) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lkpool-bench-cluster-") as tmp:
        NODE_ENV.update({"CLUSTER_HEARTBEAT": "1", "CLUSTER_NODE_TIMEOUT": "5",
                         "LOG_LEVEL": "WARNING", "HEALTH_CHECK_INTERVAL": "2"})
        cluster = _start(Path(tmp))
        try:
            owner, remote = await _allocations(cluster, allocs)
            hops = await _hops(cluster, allocs)
            local_eval, proxied_eval = await _evaluations(cluster, evals)
            placement = await _placement(cluster.redis.url, nodes, slots)
            unpreferred = await _placement(cluster.redis.url, nodes, slots, prefer=False)
        finally:
            cluster.close()
    p50 = statistics.median
    rows.append(Row("POST /browser through a non-owner (p50)", p50(remote) * 1e3, "ms",
                    p50(owner) * 1e3, "on the owner", note=f"{allocs} each, warm instance; "
                    f"p95 {pct(remote, .95) * 1e3:.1f} vs {pct(owner, .95) * 1e3:.1f} ms"))
    rows.append(Row("the extra: non-owner minus owner (p50)",
                    (p50(remote) - p50(owner)) * 1e3, "ms", p50(hops) * 1e3,
                    "one node-to-node call", note="both after the same idle gap: "
                    "each process on the way wakes cold"))
    rows.append(Row("Runtime.evaluate through a non-owner (p50)", p50(proxied_eval) * 1e3,
                    "ms", p50(local_eval) * 1e3, "through the owner",
                    note=f"{evals} round trips each; p99 {pct(proxied_eval, .99) * 1e3:.2f} "
                    f"vs {pct(local_eval, .99) * 1e3:.2f} ms"))
    rows.append(Row(f"placements/s, {nodes} nodes x {slots} slots, 8 clients",
                    placement["rate"], "/s", note="place.lua on redis-server, no browsers"))
    rows.append(Row("one place call (p99)", placement["p99"] * 1e3, "ms",
                    placement["p50"] * 1e3, "p50"))
    rows.append(Row("slots used per node at half full (max)", placement["max"], "",
                    placement["mean"], "mean",
                    note=f"min {placement['min']:.0f}, stdev {placement['stdev']:.2f}; "
                    "random entry nodes, each preferred"))
    rows.append(Row("the same, no node preferred (max)", unpreferred["max"], "",
                    unpreferred["mean"], "mean",
                    note=f"min {unpreferred['min']:.0f}, stdev {unpreferred['stdev']:.2f}; "
                    f"least loaded alone, {unpreferred['rate']:.0f} placements/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allocs", type=int, default=30)
    parser.add_argument("--evals", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--slots", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    rows = asyncio.run(run(args.allocs, args.evals, args.nodes, args.slots))
    print(table(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
