"""Agent figures: computer use over REST beside Playwright, and two pages of one instance.

    python -m bench.agents [--rounds 40] [--seconds 5]

1. A click and the screenshot after it, as an agent's step: `POST /session/{id}/computer`
   (left_click, answered with a PNG of the page's own frame once it settled) beside the
   same through Playwright over the server's DevTools proxy (`page.mouse.click` +
   `page.screenshot()`, PNG), on the same lease of one real server, alternating, with the
   page idle for 0.2 s before each (a model thinks between two actions). p50 and p95 of
   the round trip; the target is at most 0.5x Playwright's p50.
2. Two animated 1280x720 pages of one instance at 30 fps (x11 capture): the fps each
   delivers and the CPU of the capture (the instance's child process, which grabs every
   page's frames, and Xvfb) beside the same instance showing one such page.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time

import aiohttp
import psutil

from bench.common import CpuMeter, Row, deployed_main, machine, table
from lkpool import BrowserContext
from lkpool.config import Settings
from lkpool.server.app import serve_local
from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

BUTTON = """<html><body style='margin:0;background:#fff'>
<button id=b style='position:absolute;left:0;top:0;width:200px;height:100px;border:0;
background:#f00' onclick="this.style.background = this.style.background === 'rgb(0, 255, 0)'
 ? '#f00' : '#0f0'">b</button><p style='margin-top:120px;font:20px sans-serif'>
An agent clicks, then looks.</p></body></html>"""
ANIMATED = """<html><body style='margin:0;overflow:hidden'><canvas id=c></canvas><script>
const c = document.getElementById('c'); c.width = innerWidth; c.height = innerHeight;
const g = c.getContext('2d'); let n = 0;
(function f() { n++; g.fillStyle = `hsl(${n % 360},80%,50%)`;
  g.fillRect(0, 0, c.width, c.height); requestAnimationFrame(f); })();
</script></body></html>"""


IDLE = 0.2  # seconds between steps, both ways: an agent's model thinks between two actions


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


async def computer_vs_playwright(rounds: int, base_dir: str, site: str) -> list[Row]:
    settings = Settings(chromium_profile_base_dir=base_dir, allow_host_ports=ALLOW_HOST_PORTS,
                        width=1280, height=720,
                        framerate=30, audio=False, num_warm=1, max_instances=1,
                        log_level="WARNING", host="127.0.0.1", port=0, token="")
    from playwright.async_api import async_playwright

    async with serve_local(settings) as (base, _app), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/browser", json={"url": f"{site}/button",
                                                      "timeout": 600}) as resp:
            lease = await resp.json()
        sid = lease["session_id"]
        click = {"actions": [{"action": "left_click", "coordinate": [100, 50]}],
                 "screenshot": "png"}
        rest: list[float] = []
        pw: list[float] = []
        async with async_playwright() as p:
            browser = await p.chromium.connect_over_cdp(lease["proxy_url"])
            page = browser.contexts[0].pages[0]
            for i in range(rounds + 3):  # 3 rounds of warm-up each, alternating
                await asyncio.sleep(IDLE)
                t = time.perf_counter()
                async with http.post(f"{base}/session/{sid}/computer", json=click) as resp:
                    body = await resp.json()
                assert resp.status == 200, body
                base64.b64decode(body["screenshot"]["data"])  # what an agent does with it
                if i >= 3:
                    rest.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(IDLE)
                t = time.perf_counter()
                await page.mouse.click(100, 50)
                await page.screenshot(type="png")
                if i >= 3:
                    pw.append((time.perf_counter() - t) * 1000)
            await browser.close()
        async with http.delete(f"{base}/browser/{sid}"):
            pass
    p50, pw50 = statistics.median(rest), statistics.median(pw)
    return [
        Row("click + screenshot, POST /computer p50", p50, "ms", pw50,
            "Playwright over the proxy p50", note="target <= 0.5x"),
        Row("click + screenshot, POST /computer p95", pct(rest, 0.95), "ms", pct(pw, 0.95),
            "Playwright p95"),
    ]


def capture_procs(ctx: BrowserContext) -> dict[str, list[psutil.Process]]:
    child = psutil.Process(ctx.pid)
    xvfb = [p for p in child.children(recursive=True) if p.name() == "Xvfb"]
    return {"child": [child], "xvfb": xvfb}


async def pages_of_one_instance(n: int, seconds: float, base_dir: str, url: str
                                ) -> tuple[list[float], float]:
    settings = Settings(chromium_profile_base_dir=base_dir, allow_host_ports=ALLOW_HOST_PORTS,
                        audio=False, log_level="WARNING")
    async with BrowserContext(settings=settings) as ctx:
        pages = [await ctx.new_page(url=url, width=1280, height=720, framerate=30)
                 for _ in range(n)]
        await asyncio.sleep(1.5)
        meter = CpuMeter(capture_procs(ctx))
        counts = [p.frames for p in pages]
        meter.start()
        t = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t
        cpu = meter.stop()
        fps = [(p.frames - c) / elapsed for p, c in zip(pages, counts, strict=True)]
        return fps, cpu["child"] + cpu["xvfb"]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    for k, v in machine().items():
        print(f"{k}: {v}")
    base_dir = tempfile.mkdtemp(prefix="lkpool-bench-")
    rows: list[Row] = []
    with deployed_main():
        async with serve_pages({"/button": BUTTON, "/anim": ANIMATED}) as site:
            rows += await computer_vs_playwright(args.rounds, base_dir, site)
            one_fps, one_cpu = await pages_of_one_instance(1, args.seconds, base_dir,
                                                           f"{site}/anim")
            two_fps, two_cpu = await pages_of_one_instance(2, args.seconds, base_dir,
                                                           f"{site}/anim")
    for i, fps in enumerate(two_fps, 1):
        rows.append(Row(f"2 pages 720p30, page {i} fps", fps, "fps", one_fps[0],
                        "1 page's fps"))
    rows.append(Row("2 pages 720p30, capture CPU (child + Xvfb)", two_cpu, "cores", one_cpu,
                    "1 page's"))
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
