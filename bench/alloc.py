"""Allocation throughput: leases started and released per second, 4 at a time, with recycling.

    python -m bench.alloc [--leases 24] [--concurrency 4]

A real `lkpool serve` (subprocess) with NUM_WARM=4. Each of 4 clients loops: POST /browser,
one CDP call through the proxy (Browser.getVersion over ws_url), DELETE. Two policies:
*fresh* (the default: every released instance is stopped and a new one started) and *reuse*
(MAX_REUSABLE=10: a reset between leases, a fresh instance every 10). The baseline is what a
client without a pool does: launch the same Chromium (same flags, headless, fresh profile),
wait for its first CDP answer, kill it, 4 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

import aiohttp

from bench.common import Row, table
from bench.pool import CDP, Served, cold_launch
from lkpool.config import Settings

WIDTH, HEIGHT = 800, 600


async def _lease_cycle(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(base + "/browser", params={"timeout": 60}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    async with http.ws_connect(body["ws_url"]) as ws:
        reply = await CDP(ws).call("Browser.getVersion")
        assert "result" in reply, reply
    async with http.delete(f"{base}/browser/{body['session_id']}") as resp:
        assert resp.status == 200


async def _rate(total: int, concurrency: int, cycle) -> float:
    """Cycles per second with `concurrency` clients sharing `total` cycles."""
    left = iter(range(total))

    async def client() -> None:
        for _ in left:
            await cycle()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def run(leases: int = 24, concurrency: int = 4) -> list[Row]:
    settings = Settings.from_env()
    profiles = tempfile.mkdtemp(prefix="lkpool-bench-alloc-")
    rates: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for name, reuse in (("fresh", 0), ("reuse", 10)):
                # log_level INFO: Served waits for the "listening on" line
                flags = dict(num_warm=concurrency, max_instances=concurrency + 2, width=WIDTH,
                             height=HEIGHT, audio=1, framerate=30, acquire_timeout=120,
                             max_reusable=reuse, log_level="INFO")
                async with Served(profiles, **flags) as srv:
                    await srv.wait_idle(http, concurrency)
                    rates[name] = await _rate(leases, concurrency,
                                              lambda: _lease_cycle(http, srv.base))
            rates["cold"] = await _rate(leases, concurrency,
                                        lambda: cold_launch(settings.chromium_path, http))
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
    base = "a Chromium launched per lease"
    return [
        Row(f"leases/s, {concurrency} clients, fresh instance per lease", rates["fresh"],
            "leases/s", rates["cold"], base, note=f"{leases} leases: POST, CDP call, DELETE"),
        Row(f"leases/s, {concurrency} clients, reuse (MAX_REUSABLE=10)", rates["reuse"],
            "leases/s", rates["cold"], base, note="reset between leases"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leases", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    print(table(asyncio.run(run(args.leases, args.concurrency))))


if __name__ == "__main__":
    main()
