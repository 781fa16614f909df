"""Density: memory (PSS) per idle warm instance, for 1, 4 and 8 warm instances, beside a bare
headless Chromium with the same flags.

    python -m bench.density [--counts 1,4,8] [--settle 4]

PSS (proportional set size, from /proc/<pid>/smaps_rollup) splits each shared page among the
processes that map it, so summing it over an instance's processes (child, Chromium and its
helpers, Xvfb, parec: one process group) counts every page once across the machine; the
forkserver the children are forked from is shared by all and counted in equal parts.
Instances run with the default settings (x11 capture, audio on, 1280x720 at 30 fps on an X
screen that can grow to 1920x1080) on about:blank, as the pool keeps them warm, and once
more with the screen fitted to the page (SCREEN_WIDTH=SCREEN_HEIGHT=0) at the largest count.
The baseline is Chromium alone: the same binary and flags, headless, no child, no X server,
no audio, no capture, started beside the warm instances of each count, so that it shares the
binary's pages with as many browsers as they do (PSS alone on an empty machine would
charge it every page of the binary).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections import defaultdict

import psutil

from bench.common import (
    Row,
    bare_chromium,
    deployed_main,
    group_pids,
    pss_kb,
    table,
    tree_pids,
)
from lkpool.config import Settings
from lkpool.pool import Pool

TARGET_MB = 150.0


def _role(pid: int, browser_pid: int | None, child_pid: int) -> str:
    if pid == child_pid:
        return "child"
    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        return "gone"
    if name == "Xvfb":
        return "xvfb"
    if name in ("parec", "pulseaudio"):
        return name
    if name in ("bwrap", "pasta", "passt.avx2", "passt"):
        return "sandbox"
    return "chromium"


async def measure_pool(settings: Settings, count: int, settle: float
                       ) -> tuple[dict[str, float], float]:
    """Average PSS (MB) per idle instance by role with `count` warm instances, and the PSS
    of a bare Chromium started beside them."""
    pool_settings = settings.replace(num_warm=count, max_instances=count,
                                     start_timeout=max(settings.start_timeout, 60.0))
    with deployed_main():
        async with Pool(pool_settings) as pool:
            await pool.wait_ready(timeout=60.0 + 20.0 * count)
            bare = await measure_bare(settings, settle)  # also the instances' settling time
            totals: dict[str, float] = defaultdict(float)
            for slot in pool.slots():
                ctx = slot.context
                # the tree too: a sandboxed Chromium runs in a session of its own (bwrap
                # --new-session), outside the child's process group
                for pid in sorted(set(group_pids(ctx.pid)) | set(tree_pids(ctx.pid))):
                    totals[_role(pid, ctx.browser_pid, ctx.pid)] += pss_kb(pid) / 1024
            n = len(pool.slots())
            # the forkserver that forks every child exists for the instances: its share too
            from multiprocessing import forkserver
            server_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
            if server_pid:
                totals["forkserver"] += pss_kb(server_pid) / 1024
    return {role: mb / n for role, mb in totals.items()}, bare


async def measure_bare(settings: Settings, settle: float) -> float:
    """PSS (MB) of a bare headless Chromium with the same flags, on about:blank."""
    async with bare_chromium(settings, settle) as pids:
        return sum(pss_kb(pid) for pid in pids) / 1024


async def run(counts: tuple[int, ...] = (1, 4, 8), settle: float = 4.0) -> list[Row]:
    base = tempfile.mkdtemp(prefix="lkpool-density-")
    settings = Settings.from_env(chromium_profile_base_dir=base)
    # by default the X screen can grow to 1080p, so pages do without leaving x11 capture;
    # Xvfb's framebuffer is allocated for that size, and SCREEN_WIDTH=SCREEN_HEIGHT=0 saves it
    fitted = settings.replace(screen_width=0, screen_height=0)
    cases = [(settings, f"{count} warm", count) for count in counts]
    cases.append((fitted, f"{max(counts)} warm, SCREEN_WIDTH=SCREEN_HEIGHT=0", max(counts)))
    try:
        rows = []
        for case_settings, label, count in cases:
            roles, bare = await measure_pool(case_settings, count, settle)
            total = sum(roles.values())
            parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(roles.items(), key=lambda x: -x[1]))
            met = "met" if total <= TARGET_MB else "missed"
            rows.append(Row(f"PSS per idle instance, {label}", total, "MB", bare,
                            "bare headless Chromium beside them",
                            note=f"{parts}; target <= {TARGET_MB:.0f} MB: {met}"))
        return rows
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="1,4,8")
    ap.add_argument("--settle", type=float, default=4.0)
    args = ap.parse_args()
    counts = tuple(int(x) for x in args.counts.split(","))
    print(table(asyncio.run(run(counts, args.settle))))
    print(f"({os.cpu_count()} cores; PSS in MB from /proc/*/smaps_rollup)")


if __name__ == "__main__":
    main()
