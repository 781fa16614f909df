"""Frame delivery of one instance: fps, drops, grab->parent latency and CPU per capture mode.

    python -m bench.frames [--seconds 5] [--modes x11,screencast]

For each capture mode, page size and framerate, a real BrowserContext (the parent) shows an
animated page that repaints the whole viewport every animation frame (the worst case for
the capture), and counts what its `paint` callback receives. Beside each mode and size the
*reference*: the same Chromium (+ Xvfb for x11) with the same page and no capture at all,
measured in the same run; "capture" is the CPU above it (child + parent + the extra the
browser and X server spend because we read frames). CPU is psutil cpu_times deltas, in
cores (1.0 = one core busy). Audio is off so both sides compare like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

import psutil

from bench.common import CpuMeter
from lkpool import BrowserContext, profiles
from lkpool.config import Settings
from lkpool.proc.cdp import CDPConnection
from lkpool.proc.chromium import launch
from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

PAGE = """<html><body style='margin:0;overflow:hidden'><canvas id=c></canvas><script>
const c = document.getElementById('c'); c.width = innerWidth; c.height = innerHeight;
const g = c.getContext('2d'); let n = 0;
(function f() { n++; g.fillStyle = `hsl(${n % 360},80%,50%)`;
  g.fillRect(0, 0, c.width, c.height); g.fillStyle = '#fff'; g.font = '48px sans-serif';
  g.fillText(String(n), 40, 80); requestAnimationFrame(f); })();
</script></body></html>"""
SIZES = [(1280, 720), (1920, 1080)]
RATES = [30, 60]
WARMUP = 1.5


def tree(pid: int | None) -> list[psutil.Process]:
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def split_child(child_pid: int, browser_pid: int) -> dict[str, list[psutil.Process]]:
    """The child's descendants sorted into chromium / xvfb; the child itself alone."""
    chromium = tree(browser_pid)
    xvfb = [p for p in tree(child_pid)[1:] if p.name() == "Xvfb"]
    return {"chromium": chromium, "xvfb": xvfb,
            "child": [psutil.Process(child_pid)], "parent": [psutil.Process()]}


async def measure_capture(settings: Settings, url: str, size: tuple[int, int], fps: int,
                          seconds: float) -> dict:
    lat: list[int] = []
    count = 0

    def on_paint(pd) -> None:
        nonlocal count
        count += 1
        lat.append(time.monotonic_ns() - pd.captured_ns)

    async with BrowserContext(settings=settings) as ctx:
        page = await ctx.new_page(url=url, width=size[0], height=size[1], framerate=fps)
        page.on("paint", on_paint)
        await asyncio.sleep(WARMUP)
        meter = CpuMeter(split_child(ctx.pid, ctx.browser_pid))
        count, lat, dropped0 = 0, [], page.dropped
        n0 = await page.evaluate("n")
        meter.start()
        await asyncio.sleep(seconds)
        cpu = meter.stop()
        got, lats, dropped = count, sorted(lat), page.dropped - dropped0
        painted = (await page.evaluate("n") - n0) / seconds
    ms = [x / 1e6 for x in lats] or [float("nan")]
    return {"fps": got / seconds, "page_fps": painted, "dropped": dropped,
            "p50": statistics.median(ms),
            "p95": ms[min(len(ms) - 1, int(len(ms) * 0.95))], "cpu": cpu}


async def measure_reference(settings: Settings, mode: str, url: str, size: tuple[int, int],
                            seconds: float) -> dict:
    """Same browser, same page, nothing reading frames."""
    profile = tempfile.mkdtemp(prefix="bench-ref-", dir=settings.chromium_profile_base_dir)
    launched = await launch(settings, profile, 0, mode, size, {})
    try:
        async with await CDPConnection.connect(launched.ws_url) as cdp:
            targets = (await cdp.send("Target.getTargets"))["targetInfos"]
            target = next(t["targetId"] for t in targets if t["type"] == "page")
            sid = (await cdp.send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True}))["sessionId"]
            if size != launched.window:
                await cdp.send("Emulation.setDeviceMetricsOverride", {
                    "width": size[0], "height": size[1], "deviceScaleFactor": 1,
                    "mobile": False}, session_id=sid)
            await cdp.send("Page.navigate", {"url": url}, session_id=sid)
            await asyncio.sleep(WARMUP)
            meter = CpuMeter({"chromium": tree(launched.browser.pid),
                              "xvfb": tree(launched.xvfb.pid) if launched.xvfb else []})
            meter.start()
            await asyncio.sleep(seconds)
            return {"cpu": meter.stop()}
    finally:
        launched.stop()
        for proc in tree(os.getpid())[1:]:
            if proc.name() in ("chromium", "Xvfb"):
                proc.kill()
        profiles.remove(profile)  # with Chromium's singleton folder in /tmp


def fmt_row(label: str, r: dict, ref: dict | None) -> str:
    c = r["cpu"]
    total = sum(c.values())
    extra = ""
    if ref is not None:
        extra = f"{total - sum(ref['cpu'].values()):+8.2f}"
    if "fps" in r:
        head = (f"{label:<28}{r['page_fps']:6.0f}{r['fps']:7.1f}{r['dropped']:7d}"
                f"{r['p50']:8.2f}{r['p95']:8.2f}")
    else:
        head = f"{label:<28}{'-':>6}{'-':>7}{'-':>7}{'-':>8}{'-':>8}"
    return (head + f"{c.get('chromium', 0):9.2f}{c.get('xvfb', 0):7.2f}"
            f"{c.get('child', 0):7.2f}{c.get('parent', 0):7.2f}{total:7.2f}{extra}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--modes", default="x11,screencast")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="lkpool-bench-")
    async with serve_pages({"/anim": PAGE}) as site:
        await run_all(args, base, f"{site}/anim")


async def run_all(args: argparse.Namespace, base: str, url: str) -> None:
    print(f"{'run':<28}{'page':>6}{'fps':>7}{'drops':>7}{'p50ms':>8}{'p95ms':>8}{'chromium':>9}"
          f"{'xvfb':>7}{'child':>7}{'parent':>7}{'total':>7}{'vs ref':>8}")
    try:
        for mode in args.modes.split(","):
            settings = Settings(chromium_profile_base_dir=base, capture=mode, audio=False,
                                log_level="WARNING", allow_host_ports=ALLOW_HOST_PORTS)
            for size in SIZES:
                ref = await measure_reference(settings, mode, url, size, args.seconds)
                print(fmt_row(f"{mode} {size[0]}x{size[1]} reference", ref, None), flush=True)
                for fps in RATES:
                    r = await measure_capture(settings, url, size, fps, args.seconds)
                    print(fmt_row(f"{mode} {size[0]}x{size[1]}@{fps}", r, ref), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"(cpu in cores over {args.seconds:.0f} s; {psutil.cpu_count()} cores; "
          f"vs ref = total minus the reference's chromium+xvfb; page = rAF frames/s the page "
          f"drew, fps = frames the parent received)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
