"""What the sandbox of each instance costs: the same figures with SANDBOX=false (the baseline,
the code as it ran before) and SANDBOX=true, in the same run, alternating.

    python -m bench.sandbox [--starts 5] [--leases 16] [--seconds 5]

- start of an instance (x11, audio on, as the pool keeps them): BrowserContext ready, median;
- PSS per idle instance with 8 warm (bench/density.py's measure, the sandbox's processes
  counted: bwrap, pasta, the instance's PulseAudio daemon);
- fresh leases/s, 4 clients (bench/alloc.py's cycle: POST, one CDP call, DELETE);
- x11 capture at 1920x1080@60 of an animated page: CPU of the whole instance (bench/frames.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time

import aiohttp

from bench.alloc import _lease_cycle, _rate
from bench.common import Row, table
from bench.density import measure_pool
from bench.frames import PAGE, measure_capture
from bench.pool import Served
from lkpool import BrowserContext
from lkpool.config import Settings
from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

MODES = {"off": False, "on": True}


async def start_time(settings: Settings) -> float:
    started = time.perf_counter()
    async with BrowserContext(settings=settings):
        took = time.perf_counter() - started
    return took


async def leases_per_s(profiles: str, sandbox: bool, leases: int, clients: int = 4) -> float:
    flags = dict(num_warm=clients, max_instances=clients + 2, width=800, height=600, audio=1,
                 framerate=30, acquire_timeout=120, sandbox=int(sandbox), log_level="INFO")
    async with aiohttp.ClientSession() as http, Served(profiles, **flags) as srv:
        await srv.wait_idle(http, clients)
        return await _rate(leases, clients, lambda: _lease_cycle(http, srv.base))


async def run(starts: int, leases: int, seconds: float) -> list[Row]:
    base = tempfile.mkdtemp(prefix="lkpool-bench-sandbox-")
    settings = Settings(chromium_profile_base_dir=base, allow_host_ports=ALLOW_HOST_PORTS,
                        log_level="WARNING")
    got: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}

    def note(mode: str, key: str, value: float) -> None:
        got[mode].setdefault(key, []).append(value)
        print(f"  {key} sandbox={mode}: {value:.3f}", flush=True)

    try:
        for _ in range(starts):
            for mode, on in MODES.items():
                note(mode, "start", await start_time(settings.replace(sandbox=on)))
        for mode, on in MODES.items():
            roles, _bare = await measure_pool(settings.replace(sandbox=on), 8, 4.0)
            note(mode, "pss", sum(roles.values()))
        for mode, on in MODES.items():
            note(mode, "leases", await leases_per_s(base, on, leases))
        async with serve_pages({"/anim": PAGE}) as site:
            for mode, on in MODES.items():
                r = await measure_capture(settings.replace(sandbox=on, capture="x11",
                                                           audio=False),
                                          f"{site}/anim", (1920, 1080), 60, seconds)
                note(mode, "capture", sum(r["cpu"].values()))
                note(mode, "capture_fps", r["fps"])
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(got[mode][key])

    off = "SANDBOX=false"
    return [
        Row("instance start, x11 + audio (median)", med("on", "start") * 1000, "ms",
            med("off", "start") * 1000, off, note=f"{starts} starts each"),
        Row("PSS per idle instance, 8 warm", med("on", "pss"), "MB", med("off", "pss"), off),
        Row("fresh leases/s, 4 clients", med("on", "leases"), "leases/s",
            med("off", "leases"), off, note=f"{leases} leases"),
        Row("x11 capture 1920x1080@60: CPU of the instance", med("on", "capture"), "cores",
            med("off", "capture"), off,
            note=f"{med('on', 'capture_fps'):.1f} / {med('off', 'capture_fps'):.1f} fps"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--leases", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    rows = asyncio.run(run(args.starts, args.leases, args.seconds))
    print(table(rows))
    print(f"({os.cpu_count()} cores; figure / baseline as the ratio)")


if __name__ == "__main__":
    main()
