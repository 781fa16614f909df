"""Frames WebSocket and input figures, beside the page's own paint rate in the same run.

    python -m bench.stream [--seconds 6] [--width 1280 --height 720 --fps 30]

One server (pool of one instance) runs in this process with an animated page. For raw and
JPEG, with 1 and 4 viewers, the viewers run in a separate process (so this process's CPU is
the server's) and report frames/s and latency (capture -> receipt, from the header's capture
timestamp). The baseline is the page's `paint` rate over the same window. CPU is given
for the server process ("server cpu": what each viewer adds to the broadcaster) and for
all of lkpool ("lkpool cpu": the server plus the instance's Chromium, Xvfb and child, which
render and capture the page once however many watch). Then the input
round trip: a click sent on the input WebSocket until the page's mousedown handler ran, and
until the server's ack.

Each raw viewer costs the server the kernel's copy of its bytes into the socket (110 MB/s
at 720p30): a figure sets that beside a bare `socket.sendall` of the same frames on a
socket set up as the server sets a local viewer's (not paced: lkpool/server/loopback.py).
A last pair of raw cases runs with the system's own congestion control on the viewers'
sockets, to show what that saves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import psutil

from bench.common import CpuMeter, group_pids

CLICK_PAGE = """<html><body style='margin:0'><canvas id=c></canvas><script>
const c = document.getElementById('c'); c.width = innerWidth; c.height = innerHeight;
const g = c.getContext('2d'); let n = 0;
(function f() {
  n++; g.fillStyle = `hsl(${n % 360},80%,50%)`; g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = '#fff'; g.fillRect((n * 7) % c.width, 0, 40, c.height);
  requestAnimationFrame(f);
})();
window.hits = [];
document.addEventListener('mousedown',
  () => window.hits.push(performance.timeOrigin + performance.now()));
</script></body></html>"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---- the viewer process ----------------------------------------------------------------------

async def viewers(url: str, n: int, seconds: float) -> dict[str, Any]:
    from lkpool.server.header import FrameHeader

    async def one(http: aiohttp.ClientSession) -> dict[str, Any]:
        latencies, frames, skipped, last = [], 0, 0, 0
        async with http.ws_connect(url, max_msg_size=0) as ws:
            await ws.receive()  # the first (current) frame: not part of the window
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    break
                now = time.time_ns()
                header, _ = FrameHeader.unpack(msg.data)
                latencies.append((now - header.captured_ns) / 1e6)
                frames += 1
                if last:
                    skipped += header.sequence - last - 1
                last = header.sequence
        return {"frames": frames, "latencies": latencies, "skipped": skipped}

    proc = psutil.Process()
    cpu0 = proc.cpu_times()
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(one(http) for _ in range(n)))
    cpu1 = proc.cpu_times()
    lat = [x for r in results for x in r["latencies"]]
    return {"fps": [r["frames"] / seconds for r in results],
            "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
            "skipped": [r["skipped"] for r in results],
            "client_cpu": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / seconds}


# ---- the server side ---------------------------------------------------------------------------

async def run_case(base: str, sid: str, page: Any, fmt: str, n: int, seconds: float
                   ) -> dict[str, Any]:
    url = f"{base.replace('http', 'ws')}/session/{sid}/frames?format={fmt}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.stream", "--viewer", url, "--n", str(n),
        "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(1.0)  # viewers connected and past their first frame
    meter = CpuMeter({"server": [psutil.Process()], "instance": [
        psutil.Process(pid) for pid in group_pids(page.context.pid)]})
    frames0, t0 = page.frames, time.monotonic()
    meter.start()
    await asyncio.sleep(seconds - 1.0)
    cpu = meter.stop()
    frames1, t1 = page.frames, time.monotonic()
    out, _ = await proc.communicate()
    result = json.loads(out)
    result["paint_fps"] = (frames1 - frames0) / (t1 - t0)
    result["server_cpu"] = cpu["server"]
    result["lkpool_cpu"] = cpu["server"] + cpu["instance"]
    return result


async def input_round_trip(base: str, sid: str, page: Any, count: int = 40
                           ) -> tuple[float, float]:
    """(p50 ms WS send -> page's mousedown handler, p50 ms WS send -> ack)."""
    handler_ms, ack_ms = [], []
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"{base}/session/{sid}/input") as ws:
        await ws.receive_json()  # state
        for i in range(count):
            sent = time.time_ns()
            await ws.send_json({"type": "mouse", "action": "click", "x": 10 + i, "y": 10,
                                "id": i})
            while (await ws.receive_json())["type"] != "ack":
                pass
            ack_ms.append((time.time_ns() - sent) / 1e6)
            hit = (await page.evaluate("window.hits[window.hits.length - 1]"))
            handler_ms.append(hit - sent / 1e6)
    return statistics.median(handler_ms), statistics.median(ack_ms)


def kernel_floor(nbytes: int, fps: float, seconds: float) -> float:
    """CPU (cores) of a bare `socket.sendall` of `nbytes` at `fps` to a loopback reader in
    another process: what the kernel charges the sender per raw viewer, whoever sends (on a
    socket set up as the server sets a local viewer's: lkpool/server/loopback.py)."""
    from lkpool.server.loopback import unpace

    listener = socket.create_server(("127.0.0.1", 0))
    reader = subprocess.Popen([sys.executable, "-c", SINK, str(listener.getsockname()[1])])
    try:
        conn, _ = listener.accept()
        unpace(conn)
        data = bytearray(nbytes)
        with conn:
            r0, t0, sent = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic(), 0
            while time.monotonic() - t0 < seconds:
                conn.sendall(data)
                sent += 1
                time.sleep(max(0.0, t0 + sent / fps - time.monotonic()))
            r1, wall = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic() - t0
        return (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / wall
    finally:
        listener.close()
        reader.wait(timeout=10)


def _system_congestion_control() -> str:
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            return f.read().strip()
    except OSError:
        return "default"


SYSTEM_CC = _system_congestion_control()

SINK = """import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); b = bytearray(1 << 22)
while s.recv_into(b): pass"""


async def main(args: argparse.Namespace) -> None:
    from lkpool.config import Settings
    from lkpool.server.app import serve_local
    from lkpool.server.appkeys import POOL
    from tests.support.pages import ALLOW_HOST_PORTS, serve_pages

    profiles = tempfile.mkdtemp(prefix="lkbench-")
    settings = Settings(width=args.width, height=args.height, framerate=args.fps, audio=False,
                        num_warm=1, max_instances=1, allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=profiles)
    try:
        async with serve_local(settings) as (base, app):
            async with serve_pages({"/anim": CLICK_PAGE}) as pages:
                pool = app[POOL]
                await pool.wait_ready()
                lease = await pool.acquire(600, url=pages + "/anim")
                page = lease.page
                await asyncio.sleep(2)
                print(f"frames WebSocket, {args.width}x{args.height}@{args.fps}, "
                      f"{args.seconds:g} s per case, viewers in another process; 1 and 4 "
                      f"viewers alternate, {args.repeat} times each; server loop "
                      f"{type(asyncio.get_running_loop()).__module__.split('.')[0]}")
                print(f"{'case':<12}{'paint fps':>10}{'fps/viewer':>12}{'ratio':>7}{'p50 ms':>8}"
                      f"{'p95 ms':>8}{'skipped':>9}{'server cpu':>11}{'lkpool cpu':>11}"
                      f"{'viewer cpu':>11}")
                from lkpool.server import loopback

                cpu: dict[tuple[str, int], list[tuple[float, float]]] = {}
                # the last case is the first with the system's own congestion control on
                # the viewers' sockets (paced, BBR here): what loopback.py saves
                unpaced = loopback.UNPACED
                for case, fmt, cc in (("raw", "raw", unpaced), ("jpeg", "jpeg", unpaced),
                                      (f"raw {SYSTEM_CC}", "raw", SYSTEM_CC.encode())):
                    loopback.UNPACED = cc
                    # alternating keeps the machine's drift out of the 4-vs-1 ratio
                    for n in (1, 4) * args.repeat:
                        r = await run_case(base, lease.session_id, page, fmt, n, args.seconds)
                        fps = statistics.mean(r["fps"])
                        cpu.setdefault((case, n), []).append((r["server_cpu"],
                                                              r["lkpool_cpu"]))
                        print(f"{case + ' x' + str(n):<12}{r['paint_fps']:>10.1f}{fps:>12.1f}"
                              f"{fps / r['paint_fps']:>7.2f}{r['p50']:>8.1f}{r['p95']:>8.1f}"
                              f"{max(r['skipped']):>9}{r['server_cpu']:>10.0%}"
                              f"{r['lkpool_cpu']:>11.0%}{r['client_cpu']:>11.0%}")
                loopback.UNPACED = unpaced
                floor = await asyncio.to_thread(kernel_floor, args.width * args.height * 4,
                                                args.fps, min(args.seconds, 4.0))
                per_viewer = {}
                for case in ("raw", "jpeg", f"raw {SYSTEM_CC}"):
                    one = [statistics.mean(x) for x in zip(*cpu[(case, 1)], strict=False)]
                    four = [statistics.mean(x) for x in zip(*cpu[(case, 4)], strict=False)]
                    if min(one) <= 0:
                        continue
                    per_viewer[case] = (four[0] - one[0]) / 3
                    print(f"{case}: 4 viewers cost x{four[1] / one[1]:.2f} one viewer's CPU of "
                          f"all of lkpool ({four[1]:.0%} vs {one[1]:.0%}; target <= 1.3x), "
                          f"x{four[0] / one[0]:.2f} of the server process ({four[0]:.1%} vs "
                          f"{one[0]:.1%})")
                if "raw" in per_viewer:
                    extra = per_viewer["raw"]
                    print(f"raw: each viewer past the first adds {extra:.1%} of a core to the "
                          f"server; a bare socket.sendall of the same frames to a loopback "
                          f"reader costs {floor:.1%} (x{extra / floor:.2f})")
                if f"raw {SYSTEM_CC}" in per_viewer:
                    print(f"raw {SYSTEM_CC}: with the system's {SYSTEM_CC} on the viewers' "
                          f"sockets each adds {per_viewer[f'raw {SYSTEM_CC}']:.1%}")
                handler, ack = await input_round_trip(base, lease.session_id, page)
                print(f"input round trip (p50 of 40 clicks): WS send -> page mousedown handler "
                      f"{handler:.1f} ms, WS send -> ack {ack:.1f} ms")
                await pool.release(lease.session_id)

    finally:
        shutil.rmtree(profiles, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each case")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"),
                        help="event loop of the server, as `lkpool serve --loop`")
    parser.add_argument("--viewer", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.viewer:
        print(json.dumps(asyncio.run(viewers(args.viewer, args.n, args.seconds))))
    else:
        from lkpool.commands.serve import LOOPS

        asyncio.run(main(args), loop_factory=LOOPS[args.loop]())


if __name__ == "__main__":
    cli()
