"""The pool and the proxy against their baselines, measured in one run.

    python -m bench.pool [--warm-runs 10] [--rtt 500] [--messages 3000] [--jobs 20]

A real `lkpool serve` runs as a subprocess (as deployed: the proxy has its own process and
event loop, the client here has another). Each figure is printed beside its baseline:

(a) warm start: POST /browser until the first CDP answer through the proxy (Browser.getVersion
    over ws_url), p50/p95, beside a cold launch of the same Chromium binary (same base flags,
    headless, fresh profile) until its first CDP answer. Target: warm >= 20x faster.
(b) proxy cost: Runtime.evaluate round trip (sequential) and messages/s (pipelined, 100 in
    flight) over one page WebSocket through the proxy, beside the same against the
    instance's own DevTools port. Targets: rtt <= 1.25x direct, throughput >= 0.8x direct.
(c) 20 screenshot jobs of a local page, 4 at a time: through lkpool (POST /browser with the
    url, then a screenshot over lkpool's CDP client, as `lkpool screenshot` does, or over
    Playwright's connect_over_cdp; DELETE) beside Playwright launching a browser per job.
    Target: >= 3x faster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from lkpool import profiles as profile_folders
from lkpool.client import APIClient
from lkpool.config import Settings
from lkpool.proc.chromium import BASE_FLAGS, NO_SANDBOX
from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

PAGE = ("<html><head><title>bench</title></head><body style='margin:0;font:40px sans-serif;"
        "background:linear-gradient(90deg,#08f,#f80)'><h1>lkpool bench</h1>"
        + "<p>lorem ipsum dolor sit amet</p>" * 30 + "</body></html>")
WIDTH, HEIGHT = 800, 600
# a screenshot job needs no video: like the baseline, it asks for (almost) no frame capture
JOB_FRAMERATE = 1
LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def line(name: str, value: str, baseline: str, ratio: float, target: str, met: bool) -> None:
    print(f"  {name:<34} {value:>14}   baseline {baseline:>14}   ratio {ratio:6.2f}x   "
          f"target {target:<10} {'MET' if met else 'MISSED'}")


class CDP:
    """A minimal CDP client over one aiohttp WebSocket (the bench's own, so both paths of a
    comparison use exactly the same client code)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        msg_id = self.next_id
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads((await self.ws.receive()).data)
            if reply.get("id") == msg_id:
                return reply

    async def pipelined(self, count: int, window: int, method: str, **params: Any) -> float:
        """Seconds to get `count` answers with `window` requests in flight."""
        payload = [json.dumps({"id": 10_000_000 + i, "method": method, "params": params})
                   for i in range(count)]
        sent = received = 0
        started = time.perf_counter()
        while sent < min(window, count):
            await self.ws.send_str(payload[sent])
            sent += 1
        while received < count:
            msg = await self.ws.receive()
            if '"id":' not in msg.data:
                continue
            received += 1
            if sent < count:
                await self.ws.send_str(payload[sent])
                sent += 1
        return time.perf_counter() - started


# ---- the server ---------------------------------------------------------------------------

class Served:
    """`lkpool serve` in a subprocess, stopped with SIGTERM."""

    def __init__(self, profiles: str, **flags: Any) -> None:
        self.profiles = profiles
        self.flags = flags
        self.proc: asyncio.subprocess.Process | None = None
        self.base = ""
        self._drain: asyncio.Task | None = None

    async def __aenter__(self) -> Served:
        args = ["--port", "0", "--chromium-profile-base-dir", self.profiles]
        for k, v in self.flags.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lkpool", "serve", *args, stderr=asyncio.subprocess.PIPE)
        log = b""
        try:
            while not (found := LISTENING.search(log)):
                chunk = await asyncio.wait_for(self.proc.stderr.readline(), 120)
                if not chunk:
                    raise RuntimeError("lkpool serve failed:\n" + log.decode(errors="replace"))
                log += chunk
        except BaseException:
            await self.__aexit__()
            raise
        self.base = found.group(1).decode()
        self._drain = asyncio.create_task(self.proc.stderr.read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 60)
        if self._drain:
            await self._drain

    async def wait_idle(self, http: aiohttp.ClientSession, n: int) -> None:
        """Until `n` instances are idle (between measured runs, not timed)."""
        for _ in range(1200):
            async with http.get(self.base + "/health") as resp:
                if (await resp.json())["pool"]["instances"]["idle"] >= n:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("the warm floor did not come back")


# ---- (a) warm vs cold ---------------------------------------------------------------------

async def warm_start(srv: Served, http: aiohttp.ClientSession, runs: int, floor: int
                     ) -> tuple[list[float], list[float]]:
    """Allocation to first answer, and the floor beside it: on the same lease, after an
    idle gap like the one before the allocation, a WebSocket straight to the instance's
    own DevTools port and the same call (no pool, no proxy: what connecting to a browser
    that is already running costs here)."""
    times, direct = [], []
    for _ in range(runs):
        await srv.wait_idle(http, floor)  # a pool at rest: no replacement starting
        started = time.perf_counter()
        async with http.post(srv.base + "/browser", params={"timeout": 60}) as resp:
            body = await resp.json()
        async with http.ws_connect(body["ws_url"]) as ws:
            await CDP(ws).call("Browser.getVersion")
            times.append(time.perf_counter() - started)
        async with http.get(f"http://127.0.0.1:{body['debugging_port']}/json/version") as resp:
            browser_url = (await resp.json())["webSocketDebuggerUrl"]
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        async with http.ws_connect(browser_url) as ws:
            await CDP(ws).call("Browser.getVersion")
            direct.append(time.perf_counter() - started)
        async with http.delete(f"{srv.base}/browser/{body['session_id']}"):
            pass
    return times, direct


async def cold_launch(chromium: str, http: aiohttp.ClientSession, linger: float = 0.0
                      ) -> float:
    """The baseline: the same Chromium launched headless with a fresh profile, up to its first
    CDP answer (the seconds returned), then killed (`linger` seconds later)."""
    profile = tempfile.mkdtemp(prefix="bench-cold-")
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        # the baseline is a plain launch, as before the sandbox: as root it needs --no-sandbox
        chromium, *BASE_FLAGS, NO_SANDBOX, "--headless=new", f"--window-size={WIDTH},{HEIGHT}",
        "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)  # its group: no helper outlives it writing into the profile
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        while True:
            try:
                with open(port_file) as f:
                    port, path = f.read().split()[:2]
                break
            except (FileNotFoundError, ValueError):
                await asyncio.sleep(0.005)
        async with http.ws_connect(f"ws://127.0.0.1:{port}{path}") as ws:
            await CDP(ws).call("Browser.getVersion")
            took = time.perf_counter() - started
        await asyncio.sleep(linger)
        return took
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        profile_folders.remove(profile)  # with Chromium's singleton folder in /tmp


async def cold_start(settings: Settings, http: aiohttp.ClientSession, runs: int) -> list[float]:
    return [await cold_launch(settings.chromium_path, http) for _ in range(runs)]


# ---- (b) proxy vs direct ------------------------------------------------------------------

async def proxy_cost(srv: Served, http: aiohttp.ClientSession, rtt_runs: int,
                     messages: int) -> dict[str, float]:
    async with http.post(srv.base + "/browser", params={"timeout": 600}) as resp:
        body = await resp.json()
    sid, port = body["session_id"], body["debugging_port"]
    try:
        async with http.get(f"{srv.base}/session/{sid}/json/list") as resp:
            proxied = next(t for t in await resp.json() if t["type"] == "page")
        direct_url = f"ws://127.0.0.1:{port}/devtools/page/{proxied['id']}"
        # a bare relay in a process of its own: what any proxy's second hop costs
        relay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.relay", str(port), stdout=asyncio.subprocess.PIPE)
        assert relay.stdout is not None
        relay_port = int(await relay.stdout.readline())
        urls = {"proxy": proxied["webSocketDebuggerUrl"], "direct": direct_url,
                "relay": f"ws://127.0.0.1:{relay_port}/devtools/page/{proxied['id']}"}
        out: dict[str, float] = {}
        # alternate the order, keep each path's best of four rounds: a round is well under
        # a second, so one burst of the machine's other load can decide a single round
        for rnd in range(4):
            for name in (list(urls) if rnd % 2 == 0 else list(urls)[::-1]):
                async with http.ws_connect(urls[name], max_msg_size=0) as ws:
                    cdp = CDP(ws)
                    for _ in range(20):  # warm-up
                        await cdp.call("Runtime.evaluate", expression="1")
                    rtts = []
                    for _ in range(rtt_runs):
                        t0 = time.perf_counter()
                        await cdp.call("Runtime.evaluate", expression="1")
                        rtts.append(time.perf_counter() - t0)
                    rate = messages / await cdp.pipelined(messages, 100, "Runtime.evaluate",
                                                          expression="1")
                rtt = statistics.median(rtts)
                out[f"{name}_rtt"] = min(out.get(f"{name}_rtt", rtt), rtt)
                out[f"{name}_rate"] = max(out.get(f"{name}_rate", rate), rate)
        relay.kill()
        await relay.wait()
        return out
    finally:
        async with http.delete(f"{srv.base}/browser/{sid}"):
            pass


# ---- (c) screenshot jobs ------------------------------------------------------------------

async def run_jobs(jobs: int, concurrency: int, job: Callable[[], Awaitable[int]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with gate:
            return await job()

    started = time.perf_counter()
    sizes = await asyncio.gather(*(one() for _ in range(jobs)))
    assert all(size > 1000 for size in sizes), sizes
    return time.perf_counter() - started


async def screenshots(srv: Served, http: aiohttp.ClientSession, settings: Settings,
                      url: str, jobs: int, concurrency: int, baseline: bool
                      ) -> tuple[dict[str, float], float]:
    """Wall time of the jobs through lkpool, per client (lkpool's own CDP client, the path of
    `lkpool screenshot`, and Playwright's connect_over_cdp through the proxy), and of the
    baseline when asked."""
    async with async_playwright() as pw:

        async def through_playwright() -> int:
            async with http.post(srv.base + "/browser",
                                 params={"timeout": 120, "url": url, "width": WIDTH,
                                         "height": HEIGHT, "framerate": JOB_FRAMERATE}
                                 ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            try:
                browser = await pw.chromium.connect_over_cdp(body["proxy_url"])
                try:
                    return len(await browser.contexts[0].pages[0].screenshot())
                finally:
                    await browser.close()
            finally:
                async with http.delete(f"{srv.base}/browser/{body['session_id']}"):
                    pass

        async def through_cdp() -> int:
            async with APIClient(srv.base) as client, client.session(
                    120, url=url, width=WIDTH, height=HEIGHT, framerate=JOB_FRAMERATE):
                shot = await client.send_cdp_request("Page.captureScreenshot",
                                                     {"format": "png"})
                return len(base64.b64decode(shot["result"]["data"]))

        async def launch_per_job() -> int:
            browser = await pw.chromium.launch(executable_path=settings.chromium_path,
                                               args=[*BASE_FLAGS, NO_SANDBOX])
            try:
                page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                await page.goto(url)
                return len(await page.screenshot())
            finally:
                await browser.close()

        pooled = {}
        for via, job in (("cdp", through_cdp), ("playwright", through_playwright)):
            await srv.wait_idle(http, concurrency)
            pooled[via] = await run_jobs(jobs, concurrency, job)
        launched = await run_jobs(jobs, concurrency, launch_per_job) if baseline else 0.0
    return pooled, launched


# ---- main ---------------------------------------------------------------------------------

async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    profiles = tempfile.mkdtemp(prefix="lkpool-bench-")
    flags = dict(num_warm=args.concurrency, max_instances=args.concurrency + 2,
                 width=WIDTH, height=HEIGHT, audio=0, framerate=30, acquire_timeout=60,
                 loop=args.loop, allow_host_ports=ALLOW_HOST_PORTS)
    try:
        async with serve_pages({"/page": PAGE}) as site, aiohttp.ClientSession() as http:
            url = f"{site}/page"
            async with Served(profiles, **flags) as srv:
                await srv.wait_idle(http, args.concurrency)
                print(f"lkpool bench: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
                      f"chromium {settings.chromium_path}, pages {WIDTH}x{HEIGHT}, "
                      f"capture {settings.capture}, server loop {args.loop}")

                if "a" in args.parts:
                    await part_a(args, settings, srv, http)
                if "b" in args.parts:
                    await part_b(args, srv, http)
                if "c" in args.parts:
                    fresh, launched = await screenshots(srv, http, settings, url, args.jobs,
                                                        args.concurrency, baseline=True)
            if "c" in args.parts:
                await part_c(args, settings, profiles, flags, http, url, fresh, launched)
    finally:
        shutil.rmtree(profiles, ignore_errors=True)


async def part_a(args: argparse.Namespace, settings: Settings, srv: Served,
                 http: aiohttp.ClientSession) -> None:
    warm, direct = await warm_start(srv, http, args.warm_runs, args.concurrency)
    cold = await cold_start(settings, http, args.cold_runs)
    print("(a) allocation to first CDP answer (Browser.getVersion through the proxy)")
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        w, c = pct(warm, q), pct(cold, q)
        line(f"warm POST /browser {name}", f"{w * 1000:.1f} ms", f"{c * 1000:.0f} ms cold",
             c / w, ">= 20x", c / w >= 20)
    d, c = pct(direct, 0.5), pct(cold, 0.5)
    line("  floor: connect + call, direct, p50", f"{d * 1000:.1f} ms", f"{c * 1000:.0f} ms cold",
         c / d, "-", True)
    print("    baseline: the same Chromium launched headless with a fresh profile; floor: a")
    print("    WebSocket straight to a running instance's port and the same call, no pool")


async def part_b(args: argparse.Namespace, srv: Served, http: aiohttp.ClientSession) -> None:
    await srv.wait_idle(http, args.concurrency)
    cost = await proxy_cost(srv, http, args.rtt, args.messages)
    print("(b) one page WebSocket, Runtime.evaluate('1'): proxy vs the instance's port")
    r = cost["proxy_rtt"] / cost["direct_rtt"]
    line("round trip (median)", f"{cost['proxy_rtt'] * 1e6:.0f} us",
         f"{cost['direct_rtt'] * 1e6:.0f} us", r, "<= 1.25x", r <= 1.25)
    r = cost["relay_rtt"] / cost["direct_rtt"]
    line("  a bare relay (any proxy's floor)", f"{cost['relay_rtt'] * 1e6:.0f} us",
         f"{cost['direct_rtt'] * 1e6:.0f} us", r, "-", True)
    r = cost["proxy_rtt"] / cost["relay_rtt"]
    line("  proxy / bare relay", f"{cost['proxy_rtt'] * 1e6:.0f} us",
         f"{cost['relay_rtt'] * 1e6:.0f} us", r, "-", True)
    r = cost["proxy_rate"] / cost["direct_rate"]
    line("throughput (100 in flight)", f"{cost['proxy_rate']:.0f} msg/s",
         f"{cost['direct_rate']:.0f} msg/s", r, ">= 0.8x", r >= 0.8)


async def part_c(args: argparse.Namespace, settings: Settings, profiles: str,
                 flags: dict[str, Any], http: aiohttp.ClientSession, url: str,
                 fresh: dict[str, float],
                 launched: float) -> None:
    # the same jobs with the opt-in reuse policy: instances reset, not restarted. A farm of
    # `concurrency` workers runs that many instances: NUM_WARM idle ones on top of the busy
    # ones (the warm floor) would only start browsers that the resets make needless
    reuse_flags = {**flags, "max_instances": args.concurrency, "max_reusable": args.jobs}
    async with Served(profiles, **reuse_flags) as srv:
        reused, _ = await screenshots(srv, http, settings, url, args.jobs, args.concurrency,
                                      baseline=False)
    print(f"(c) {args.jobs} screenshot jobs, {args.concurrency} at a time (wall time); "
          f"MAX_INSTANCES {flags['max_instances']} fresh, {args.concurrency} with reuse")
    for policy, times in (("MAX_REUSABLE (reset)", reused), ("fresh instance per job", fresh)):
        for via, label in (("cdp", "lkpool's CDP client"), ("playwright", "Playwright")):
            line(f"{policy}, {label}", f"{times[via]:.2f} s", f"{launched:.2f} s",
                 launched / times[via], ">= 3x", launched / times[via] >= 3)
    print("    baseline: Playwright launching a browser per job")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--rtt", type=int, default=500, help="sequential round trips")
    parser.add_argument("--messages", type=int, default=3000, help="pipelined messages")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--parts", default="abc", help="which figures: a, b and/or c")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"),
                        help="event loop of the served pool")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
