"""What the edge checks (Host allow-list, Origin, sockets per session; lkpool/server/edge.py)
cost on the proxy's round trips: the same app with and without its edge middleware, on one
pool and one leased browser, in the same run.

    python -m bench.edge [--rounds 6] [--requests 300] [--upgrades 60]

Three figures, each with-edge over without-edge (1.00x = no cost):
- HTTP through the proxy: GET /session/{id}/json/version (every request passes the checks);
- WebSocket upgrade through the proxy with an Origin (the check on each new socket), plus
  one CDP round trip on it;
- a CDP round trip on an open proxied socket (the checks never see it: a control).
Rounds alternate the two apps; each keeps its best median (the machine has other load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bench.common import Row, table
from lkpool.config import Settings
from lkpool.pool import Pool
from lkpool.server.app import create_app
from lkpool.server.edge import Policy, check, make_runner


@contextlib.asynccontextmanager
async def serve(app: web.Application, settings: Settings) -> AsyncIterator[str]:
    runner = make_runner(app, settings)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def without_edge(app: web.Application) -> web.Application:
    """The same app minus its edge middleware (before the app is frozen by its runner)."""
    kept = [m for m in app.middlewares if getattr(m, "__name__", "") != "edge_middleware"]
    assert len(kept) == len(app.middlewares) - 1
    app._middlewares = type(app.middlewares)(kept)  # noqa: SLF001 (a bench's A/B switch)
    return app


async def http_rtt(http: aiohttp.ClientSession, base: str, sid: str, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.get(f"{base}/session/{sid}/json/version") as resp:
            await resp.read()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def upgrade_rtt(http: aiohttp.ClientSession, base: str, sid: str, n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        async with http.ws_connect(f"{base}/session/{sid}", origin=base) as ws:
            await ws.send_json({"id": i, "method": "Browser.getVersion"})
            await ws.receive()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def cdp_rtt(http: aiohttp.ClientSession, base: str, sid: str, n: int) -> float:
    async with http.ws_connect(f"{base}/session/{sid}") as ws:
        times = []
        for i in range(n + 20):
            t0 = time.perf_counter()
            await ws.send_json({"id": i, "method": "Browser.getVersion"})
            await ws.receive()
            if i >= 20:  # after a warm-up
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_cost(n: int = 100_000) -> float:
    """Seconds per edge.check on a request with a Host and an Origin (no I/O)."""
    from aiohttp.test_utils import make_mocked_request

    policy = Policy.from_settings(Settings(allowed_hosts="lk.example.com"))
    req = make_mocked_request("POST", "/browser", headers={
        "Host": "127.0.0.1:8888", "Origin": "http://127.0.0.1:8888"})
    t0 = time.perf_counter()
    for _ in range(n):
        check(policy, req)
    return (time.perf_counter() - t0) / n


async def main(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="lkpool-bench-edge-") as profiles:
        settings = Settings(num_warm=1, max_instances=1, width=320, height=240, framerate=10,
                            audio=False, chromium_profile_base_dir=profiles)
        async with Pool(settings) as pool:
            await pool.wait_ready()
            lease = await pool.acquire(600)
            apps = {"edge": create_app(settings, pool),
                    "none": without_edge(create_app(settings, pool))}
            best: dict[str, float] = {}
            async with serve(apps["edge"], settings) as with_base, \
                    serve(apps["none"], settings) as without_base, \
                    aiohttp.ClientSession() as http:
                bases = {"edge": with_base, "none": without_base}
                for rnd in range(args.rounds):
                    for name in (("edge", "none") if rnd % 2 == 0 else ("none", "edge")):
                        base = bases[name]
                        for what, fn, n in (("http", http_rtt, args.requests),
                                            ("upgrade", upgrade_rtt, args.upgrades),
                                            ("cdp", cdp_rtt, args.requests)):
                            value = await fn(http, base, lease.session_id, n)
                            key = f"{what}_{name}"
                            best[key] = min(best.get(key, value), value)
            await pool.release(lease.session_id)
    per_check = check_cost()
    rows = [Row(f"{label}: with edge checks", best[f"{what}_edge"] * 1e6, "us",
                best[f"{what}_none"] * 1e6, "same app without them")
            for what, label in (("http", "proxy HTTP GET /json/version"),
                                ("upgrade", "proxy WebSocket upgrade + 1 CDP call"),
                                ("cdp", "CDP round trip on an open socket (control)"))]
    rows.append(Row("edge.check per request (no I/O)", per_check * 1e6, "us",
                    note="Host + Origin of a POST"))
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--upgrades", type=int, default=60)
    return parser.parse_args()


if __name__ == "__main__":
    print(table(asyncio.run(main(parse_args()))))
