"""lkpool beside browserless v2, under one Playwright client, rounds alternated in one run.

    python -m bench.peers [--quick] [--rounds 2] [--connects 8] [--b2b 15] [--jobs 20]

Both servers run at once on this machine (lkpool as `lkpool serve` with NUM_WARM=4, its
defaults otherwise: x11 capture, audio; browserless as its Docker image starts it, headless,
one Chromium launched per connection). Every figure comes from the same Playwright code,
which only differs in how a browser is had: lkpool's `POST /browser` then
`connect_over_cdp(proxy_url)`, browserless's `connect_over_cdp(ws://.../chromium)`; giving it
back is `browser.close()` (and lkpool's `DELETE`).

- connect: from asking for a browser to a page that answered `evaluate("1")`, the pool at
  rest before each one (p50, p95);
- back-to-back: `--b2b` (15) such connects one right after another, and 4 clients doing the same
  (p95 of every connect): what a pool gives once its warm floor is used up;
- screenshot jobs: `--jobs` jobs (connect, goto a local page, screenshot, close),
  `--concurrency` at a time, wall time; lkpool also with its reuse policy (MAX_REUSABLE);
- round trip: `Runtime.evaluate` over a Playwright CDP session, median of 300 sequential,
  beside the same to lkpool's instance port directly;
- PSS and CPU of each server with all its processes, idle (nothing connected) and busy
  (`--concurrency` sessions holding the bench page).

Each measurement runs once per peer per round, their order swapped every round; the table
gives the best round of each (the machine's other load only ever adds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
from playwright.async_api import Browser, Page, Playwright, async_playwright

from bench import browserless
from bench.common import CpuMeter, Row, pss_kb, table, tree_pids
from bench.pool import PAGE, Served, pct
from lkpool.config import Settings
from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

Connect = Callable[[Playwright], Awaitable[tuple[Browser, Page, Callable[[], Awaitable[None]]]]]


@dataclass
class Peer:
    name: str
    connect: Connect
    pid: int
    at_rest: Callable[[], Awaitable[None]]  # nothing connected, nothing starting
    settled: Callable[[], Awaitable[None]]  # nothing starting (sessions may be held)


def lkpool_peer(name: str, srv: Served, http: aiohttp.ClientSession, floor: int) -> Peer:
    async def connect(pw: Playwright):
        async with http.post(srv.base + "/browser", params={"timeout": 300}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        browser = await pw.chromium.connect_over_cdp(body["proxy_url"])
        page = browser.contexts[0].pages[0]

        async def close() -> None:
            await browser.close()
            async with http.delete(f"{srv.base}/browser/{body['session_id']}"):
                pass
        return browser, page, close

    assert srv.proc is not None
    # lkpool starts a replacement for each lease: settled once the warm floor is back
    return Peer(name, connect, srv.proc.pid, lambda: srv.wait_idle(http, floor),
                lambda: srv.wait_idle(http, floor))


def browserless_peer(bl: browserless.Browserless) -> Peer:
    async def connect(pw: Playwright):
        browser = await pw.chromium.connect_over_cdp(bl.ws_endpoint)
        ctx = browser.contexts[0]
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        return browser, page, browser.close

    async def at_rest() -> None:
        # browserless closes a browser after its socket closed: wait until its tree is
        # only node again, so one measurement's browsers do not run into the next's
        for _ in range(200):
            if len(tree_pids(bl.pid)) <= 1:
                return
            await asyncio.sleep(0.05)
    return Peer("browserless", connect, bl.pid, at_rest, lambda: asyncio.sleep(0))


async def timed_connect(pw: Playwright, peer: Peer) -> float:
    started = time.perf_counter()
    _, page, close = await peer.connect(pw)
    try:
        assert await page.evaluate("1") == 1
        return time.perf_counter() - started
    finally:
        await close()


async def connects_at_rest(pw: Playwright, peer: Peer, n: int) -> list[float]:
    out = []
    for _ in range(n):
        await peer.at_rest()
        out.append(await timed_connect(pw, peer))
    return out


async def back_to_back(pw: Playwright, peer: Peer, n: int, clients: int) -> list[float]:
    await peer.at_rest()
    left = iter(range(n))
    out: list[float] = []

    async def client() -> None:
        for _ in left:
            out.append(await timed_connect(pw, peer))
    await asyncio.gather(*(client() for _ in range(clients)))
    return out


async def screenshot_jobs(pw: Playwright, peer: Peer, url: str, jobs: int,
                          concurrency: int) -> float:
    await peer.at_rest()
    gate = asyncio.Semaphore(concurrency)

    async def job() -> int:
        async with gate:
            _, page, close = await peer.connect(pw)
            try:
                await page.goto(url)
                return len(await page.screenshot())
            finally:
                with contextlib.suppress(Exception):
                    await close()
    started = time.perf_counter()
    sizes = await asyncio.gather(*(job() for _ in range(jobs)), return_exceptions=True)
    failed = [s for s in sizes if not isinstance(s, int) or s <= 1000]
    if failed:  # on a loaded machine a browser may die mid-job: say so, keep the round
        raise JobsFailed(f"{len(failed)} of {jobs} jobs failed: {failed[0]!r}"[:300])
    return time.perf_counter() - started


class JobsFailed(Exception):
    pass


async def cdp_rtt(page: Page, runs: int) -> float:
    cdp = await page.context.new_cdp_session(page)
    for _ in range(20):
        await cdp.send("Runtime.evaluate", {"expression": "1"})
    rtts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await cdp.send("Runtime.evaluate", {"expression": "1"})
        rtts.append(time.perf_counter() - t0)
    await cdp.detach()
    return statistics.median(rtts)


async def rtt_proxied_and_direct(pw: Playwright, peer: Peer, srv: Served | None,
                                 http: aiohttp.ClientSession, runs: int
                                 ) -> tuple[float, float | None]:
    """The round trip through the peer; for lkpool also straight to the instance's port
    (the same page, a second CDP connection)."""
    await peer.at_rest()
    _, page, close = await peer.connect(pw)
    try:
        proxied = await cdp_rtt(page, runs)
        direct = None
        if srv is not None:
            async with http.get(srv.base + "/browsers") as resp:
                ports = [b["debugging_port"] for b in await resp.json() if b["active"]]
            other = await pw.chromium.connect_over_cdp(f"http://127.0.0.1:{ports[0]}")
            try:
                direct = await cdp_rtt(other.contexts[0].pages[0], runs)
            finally:
                await other.close()
        return proxied, direct
    finally:
        await close()


def footprint(pid: int) -> tuple[float, list[psutil.Process]]:
    """PSS (MB) of a server and every process under it, and those processes."""
    procs = []
    for p in tree_pids(pid):
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(p))
    return sum(pss_kb(p.pid) for p in procs) / 1024, procs


async def cpu_of(pid: int, seconds: float) -> float:
    """Share of one core used by a server's tree over `seconds` (processes that start
    meanwhile are not counted: nothing starts in an idle or a steady busy server)."""
    _, procs = footprint(pid)
    meter = CpuMeter({"all": procs})
    meter.start()
    await asyncio.sleep(seconds)
    return meter.stop()["all"]


async def idle_and_busy(pw: Playwright, peer: Peer, url: str, sessions: int,
                        seconds: float) -> dict[str, float]:
    await peer.at_rest()
    await asyncio.sleep(2.0)  # what a connect left behind settles
    out = {"idle_cpu": await cpu_of(peer.pid, seconds), "idle_pss": footprint(peer.pid)[0]}
    held = [await peer.connect(pw) for _ in range(sessions)]
    try:
        for _, page, _ in held:
            await page.goto(url)
        await peer.settled()
        await asyncio.sleep(2.0)
        out["busy_cpu"] = await cpu_of(peer.pid, seconds)
        out["busy_pss"] = footprint(peer.pid)[0]
    finally:
        for _, _, close in held:
            await close()
    return out


# ---- the run ------------------------------------------------------------------------------

def best(rounds: list[dict[str, Any]], key: str, pick=min) -> Any:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return pick(values) if values else None


async def run(rounds: int = 2, connects: int = 8, b2b: int = 15, jobs: int = 20,
              concurrency: int = 4, rtt_runs: int = 300, cpu_seconds: float = 8.0,
              ) -> tuple[list[Row], str]:
    """The rows of the comparison, and a sentence on what could not be measured."""
    settings = Settings.from_env()
    package = await asyncio.to_thread(browserless.install)
    missing = "" if not isinstance(package, str) else f"browserless not measured: {package}"
    profiles = tempfile.mkdtemp(prefix="lkpool-bench-peers-")
    flags = dict(num_warm=concurrency, max_instances=2 * concurrency, acquire_timeout=120,
                 log_level="INFO", allow_host_ports=ALLOW_HOST_PORTS)  # the bench page
    reuse_flags = {**flags, "max_instances": concurrency, "max_reusable": jobs}
    results: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            site = await stack.enter_async_context(serve_pages({"/page": PAGE}))
            url = f"{site}/page"
            http = await stack.enter_async_context(aiohttp.ClientSession())
            pw = await stack.enter_async_context(async_playwright())
            srv = await stack.enter_async_context(Served(profiles, **flags))
            reuse = await stack.enter_async_context(Served(profiles, **reuse_flags))
            peers = [lkpool_peer("lkpool", srv, http, concurrency)]
            if not isinstance(package, str):
                bl = await stack.enter_async_context(
                    browserless.Browserless(package, settings.chromium_path,
                                            concurrent=2 * concurrency))
                peers.append(browserless_peer(bl))
            reuse_peer = lkpool_peer("lkpool reuse", reuse, http, concurrency)
            await srv.wait_idle(http, concurrency)
            await reuse.wait_idle(http, concurrency)
            print(f"peers: load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            def steps_of(peer: Peer) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
                return [
                    ("idle/busy", lambda: idle_and_busy(pw, peer, url, concurrency,
                                                        cpu_seconds)),
                    ("connect", lambda: connects_at_rest(pw, peer, connects)),
                    ("b2b", lambda: back_to_back(pw, peer, b2b, 1)),
                    ("b2b4", lambda: back_to_back(pw, peer, 6 * concurrency, concurrency)),
                    ("jobs", lambda: screenshot_jobs(pw, peer, url, jobs, concurrency)),
                    ("rtt", lambda: rtt_proxied_and_direct(
                        pw, peer, srv if peer.name == "lkpool" else None, http, rtt_runs)),
                ]

            for rnd in range(rounds):
                order = peers if rnd % 2 == 0 else peers[::-1]
                for peer in order:
                    r: dict[str, Any] = {}
                    for step, measure in steps_of(peer):
                        try:
                            found = await measure()
                        except Exception as exc:  # one step's failure loses only its figure
                            failures.append(f"round {rnd + 1}, {peer.name}, {step}: "
                                            f"{type(exc).__name__}: {exc}"[:300])
                            continue
                        if step == "idle/busy":
                            r.update(found)
                        elif step == "connect":
                            r["connect_p50"] = pct(found, 0.5)
                            r["connect_p95"] = pct(found, 0.95)
                        elif step in ("b2b", "b2b4"):
                            r[f"{step}_p95"] = pct(found, 0.95)
                        elif step == "rtt":
                            r["rtt"], r["rtt_direct"] = found
                        else:
                            r[step] = found
                    results.setdefault(peer.name, []).append(r)
                    print(f"peers round {rnd + 1}: {peer.name} done", file=sys.stderr,
                          flush=True)
                try:
                    r = {"jobs": await screenshot_jobs(pw, reuse_peer, url, jobs,
                                                       concurrency)}
                    results.setdefault(reuse_peer.name, []).append(r)
                except Exception as exc:
                    failures.append(f"round {rnd + 1}, lkpool reuse, jobs: {exc}"[:300])
            load = os.getloadavg()[0]
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
    note = missing or f"load {load:.1f} at the end"
    if failures:
        note += "; failed (figure from the other round, or none): " + "; ".join(failures)
    return rows(results, concurrency, jobs, b2b), note


def rows(results: dict[str, list[dict[str, Any]]], concurrency: int, jobs: int,
         b2b: int) -> list[Row]:
    lk, bl = results["lkpool"], results.get("browserless")
    base = "browserless" if bl else ""
    out: list[Row] = []

    def add(name: str, key: str, scale: float, unit: str, pick=min, note: str = "",
            lower_is_better: bool = True) -> None:
        found = best(lk, key, pick)
        if found is None:
            return
        value = found * scale
        peer_found = best(bl, key, pick) if bl else None
        peer = peer_found * scale if peer_found is not None else None
        ratio = None
        if peer:
            ratio = peer / value if lower_is_better else value / peer
        out.append(Row(name, value, unit, peer, base, ratio=ratio, note=note))

    faster = "ratio: browserless / lkpool (above 1: lkpool better)"
    add("connect to a usable page, p50", "connect_p50", 1000, "ms", note=faster)
    add("connect to a usable page, p95", "connect_p95", 1000, "ms", note=faster)
    add(f"{b2b} back-to-back connects, p95", "b2b_p95", 1000, "ms", note=faster)
    add(f"back-to-back connects from {concurrency} clients, p95", "b2b4_p95", 1000, "ms",
        note=faster + "; target >= 2x")
    add(f"{jobs} screenshot jobs, {concurrency} at a time", "jobs", 1, "s", note=faster)
    reuse = best(results.get("lkpool reuse", []), "jobs")
    if reuse is not None:
        peer = best(bl, "jobs") if bl else None
        out.append(Row(f"the same, lkpool with MAX_REUSABLE={jobs}", reuse, "s", peer, base,
                       ratio=(peer / reuse) if peer else None, note=faster))
    rtt, direct = best(lk, "rtt"), best(lk, "rtt_direct")
    if rtt is not None and direct is not None:
        out.append(Row("Runtime.evaluate round trip (Playwright CDP session)", rtt * 1e6, "us",
                       direct * 1e6, "lkpool's instance port, direct",
                       note="ratio: lkpool / direct"))
        peer = best(bl, "rtt") if bl else None
        if peer is not None:
            out.append(Row("the same through browserless", peer * 1e6, "us", direct * 1e6,
                           "lkpool's instance port, direct",
                           note="ratio: browserless / direct"))
    for key, label, unit, scale in (("idle_cpu", "CPU idle (nothing connected)", "% core",
                                     100), ("idle_pss", "PSS idle", "MB", 1)):
        add(label, key, scale, unit, note="all of each server's processes; lkpool keeps "
            f"{concurrency} warm" + ("; ratio: lkpool / browserless" if bl else ""))
        if out and out[-1].baseline and out[-1].name == label:
            out[-1].ratio = out[-1].value / out[-1].baseline
    for key, label, unit, scale in (("busy_cpu", "CPU per busy session", "% core", 100),
                                    ("busy_pss", "PSS per busy session", "MB", 1)):
        add(label, key, scale / concurrency, unit,
            note=f"{concurrency} sessions on the bench page; lkpool's warm floor included"
            + ("; ratio: lkpool / browserless" if bl else ""))
        if out and out[-1].baseline and out[-1].name == label:
            out[-1].ratio = out[-1].value / out[-1].baseline
    return out


FULL: dict[str, Any] = dict(rounds=2, connects=8, b2b=15, jobs=20, rtt_runs=300,
                            cpu_seconds=8.0)
QUICK: dict[str, Any] = dict(rounds=1, connects=3, b2b=6, jobs=8, rtt_runs=100,
                             cpu_seconds=3.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, to check the bench")
    for name, value in FULL.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(value), default=None)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    kw = {k: v if getattr(args, k) is None else getattr(args, k)
          for k, v in (QUICK if args.quick else FULL).items()}
    found, note = asyncio.run(run(concurrency=args.concurrency, **kw))
    print(table(found))
    if note:
        print(note)


if __name__ == "__main__":
    main()
