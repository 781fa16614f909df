"""Allocation throughput: leases started and released per second, 4 at a time, with recycling.

    python -m bench.alloc [--leases 24] [--concurrency 4]

A real `lkpool serve` (subprocess) with NUM_WARM=4. Each of 4 clients loops: POST /browser,
one CDP call through the proxy (Browser.getVersion over ws_url), DELETE. Two policies:
*fresh* (the default: every released instance is stopped and a new one started) and *reuse*
(MAX_REUSABLE=10: a reset between leases, a fresh instance every 10). The baseline is what a
client without a pool does: launch the same Chromium (same flags, headless, fresh profile),
wait for its first CDP answer, kill it, 4 at a time.

On a machine with fewer cores than clients every policy is CPU-bound, so leases/s is the
cores over the CPU one lease costs, and that is printed too (the whole machine's busy CPU
during the run over the leases). The floor beside it: the same Chromium launched the same
way but left to finish its start-up (one second after its first CDP answer) before it is
killed, which a pooled instance always does and the baseline never does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

import aiohttp

from bench.common import Row, table
from bench.pool import CDP, Served, cold_launch
from lkpool.config import Settings

WIDTH, HEIGHT = 800, 600
LINGER = 1.0  # seconds the floor's browser runs on after its first answer


async def _lease_cycle(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(base + "/browser", params={"timeout": 60}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    async with http.ws_connect(body["ws_url"]) as ws:
        reply = await CDP(ws).call("Browser.getVersion")
        assert "result" in reply, reply
    async with http.delete(f"{base}/browser/{body['session_id']}") as resp:
        assert resp.status == 200


def busy_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _rate(total: int, concurrency: int, cycle, cpu: dict[str, float] | None = None,
                name: str = "") -> float:
    """Cycles per second with `concurrency` clients sharing `total` cycles; with `cpu`, the
    machine's busy CPU seconds per cycle go into cpu[name]."""
    left = iter(range(total))

    async def client() -> None:
        for _ in left:
            await cycle()

    busy = busy_cpu()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    rate = total / (time.perf_counter() - started)
    if cpu is not None:
        cpu[name] = (busy_cpu() - busy) / total
    return rate


async def run(leases: int = 24, concurrency: int = 4) -> list[Row]:
    settings = Settings.from_env()
    profiles = tempfile.mkdtemp(prefix="lkpool-bench-alloc-")
    rates: dict[str, float] = {}
    cpu: dict[str, float] = {}
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
                                              lambda: _lease_cycle(http, srv.base), cpu, name)
            rates["cold"] = await _rate(leases, concurrency,
                                        lambda: cold_launch(settings.chromium_path, http),
                                        cpu, "cold")
            # one at a time: its CPU, not its rate, is the figure, less what the machine
            # spends anyway (its other processes) during the second it lingers
            busy = busy_cpu()
            await asyncio.sleep(2)
            background = (busy_cpu() - busy) / 2
            await _rate(max(4, leases // 4), 1,
                        lambda: cold_launch(settings.chromium_path, http, linger=LINGER),
                        cpu, "floor")
            cpu["floor"] -= background * LINGER
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
    base = "a Chromium launched per lease"
    return [
        Row(f"leases/s, {concurrency} clients, fresh instance per lease", rates["fresh"],
            "leases/s", rates["cold"], base, note=f"{leases} leases: POST, CDP call, DELETE"),
        Row(f"leases/s, {concurrency} clients, reuse (MAX_REUSABLE=10)", rates["reuse"],
            "leases/s", rates["cold"], base, note="reset between leases"),
        Row("CPU per lease, fresh instance per lease", cpu["fresh"] * 1e3, "ms",
            cpu["cold"] * 1e3, base, note=f"whole machine, {os.cpu_count()} cores"),
        Row("CPU per lease, reuse (MAX_REUSABLE=10)", cpu["reuse"] * 1e3, "ms",
            cpu["cold"] * 1e3, base),
        Row("floor: that Chromium left to finish its start-up", cpu["floor"] * 1e3, "ms",
            cpu["cold"] * 1e3, base, note=f"killed {LINGER:g} s after its first answer "
            "instead of at it (the machine's own load subtracted): what a pooled fresh "
            "browser costs at least"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leases", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    print(table(asyncio.run(run(args.leases, args.concurrency))))


if __name__ == "__main__":
    main()
