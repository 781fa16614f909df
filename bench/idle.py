"""Idle cost: the share of a core that warm instances and the server use with nothing leased.

    python -m bench.idle [--warm 4] [--seconds 20] [--rounds 2]

A real `lkpool serve` (subprocess, the default settings: x11 capture, audio) keeps `--warm`
instances idle on about:blank; once they are all up and settled, the CPU time of every
process under the server is read over `--seconds` and split by role: the server (its event
loop: health checks, lease and scale-down passes) and, per instance, its child, Xvfb, the
audio reader (parec), its PulseAudio daemon and Chromium (all its processes). A shared
PulseAudio daemon (as before the sandbox) is shown apart.
The baseline is a bare headless Chromium on about:blank (same binary and flags), measured
over the same seconds in the same rounds. Targets: <= 0.3% of a core per idle instance,
<= 0.5% for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections import defaultdict

import aiohttp
import psutil

from bench.common import Row, bare_chromium, cpu_seconds, table, tree_pids
from bench.pool import Served
from lkpool.config import Settings

INSTANCE_TARGET = 0.3
SERVER_TARGET = 0.5


def _roles(server_pid: int) -> dict[int, str]:
    """Each process under the server by role. An instance's child leads its process group
    (Chromium, Xvfb and parec are in it); the forkserver is the server's."""
    out: dict[int, str] = {}
    for pid in tree_pids(server_pid):
        try:
            proc = psutil.Process(pid)
            name, pgid = proc.name(), os.getpgid(pid)
        except (psutil.Error, ProcessLookupError):
            continue
        if pid == server_pid:
            out[pid] = "server"
        elif pgid == server_pid:
            out[pid] = "forkserver"
        elif pid == pgid:
            out[pid] = "child"
        elif name == "Xvfb":
            out[pid] = "xvfb"
        elif name == "parec":
            out[pid] = "audio reader"
        elif name == "pulseaudio":  # one daemon per instance, in its group (the sandbox)
            out[pid] = "audio daemon"
        else:
            out[pid] = "chromium"
    return out


def _pulseaudio() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name", "uids"])
            if p.info["name"] == "pulseaudio" and p.info["uids"].real == os.getuid()]


async def measure(server_pid: int, seconds: float) -> dict[str, float]:
    """Share of a core (%) by role over `seconds`."""
    roles = _roles(server_pid)
    procs = {pid: psutil.Process(pid) for pid in roles}
    pulse = _pulseaudio()
    before = {pid: cpu_seconds(p) for pid, p in procs.items()}
    pulse_before = {p.pid: cpu_seconds(p) for p in pulse}
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(seconds)
    wall = loop.time() - started
    out: dict[str, float] = defaultdict(float)
    for pid, proc in procs.items():
        out[roles[pid]] += (cpu_seconds(proc) - before[pid]) / wall * 100
    # a daemon that exited meanwhile (another user's restarted it) counts for nothing
    out["pulseaudio"] = sum(max(0.0, cpu_seconds(p) - pulse_before[p.pid]) for p in pulse
                            if p.is_running()) / wall * 100
    return out


async def bare_cpu(settings: Settings, seconds: float) -> float:
    """% of a core of a bare headless Chromium on about:blank, after it settled."""
    async with bare_chromium(settings, 3.0) as pids:
        procs = [psutil.Process(p) for p in pids]
        before = sum(cpu_seconds(p) for p in procs)
        await asyncio.sleep(seconds)
        return (sum(cpu_seconds(p) for p in procs) - before) / seconds * 100


async def run(warm: int = 4, seconds: float = 20.0, rounds: int = 2) -> list[Row]:
    base = tempfile.mkdtemp(prefix="lkpool-idle-")
    settings = Settings.from_env(chromium_profile_base_dir=base)
    found: list[dict[str, float]] = []
    bare: list[float] = []
    try:
        async with aiohttp.ClientSession() as http, Served(
                base, num_warm=warm, max_instances=warm, log_level="INFO") as srv:
            await srv.wait_idle(http, warm)
            await asyncio.sleep(5.0)  # start-up work (first paints, caches) settles
            assert srv.proc is not None
            for _ in range(rounds):
                found.append(await measure(srv.proc.pid, seconds))
                bare.append(await bare_cpu(settings, seconds))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    # the quietest round of each: the machine's other load only ever adds
    by_role = {role: min(r.get(role, 0.0) for r in found) for r in found for role in r}
    baseline = min(bare)
    per = {role: by_role.get(role, 0.0) / warm
           for role in ("child", "xvfb", "audio reader", "audio daemon", "chromium")}
    instance = sum(per.values())
    server = by_role.get("server", 0.0) + by_role.get("forkserver", 0.0)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in per.items())
    met = "met" if instance <= INSTANCE_TARGET else "missed"
    return [
        Row(f"CPU per idle warm instance, {warm} warm", instance, "% core", baseline,
            "bare headless Chromium", note=f"{parts}; target <= {INSTANCE_TARGET}%: {met}"),
        Row("CPU of the server, nothing leased", server, "% core",
            note=f"forkserver {by_role.get('forkserver', 0.0):.2f} included; target <= "
                 f"{SERVER_TARGET}%: {'met' if server <= SERVER_TARGET else 'missed'}"),
        Row("CPU of the shared PulseAudio daemon", by_role.get("pulseaudio", 0.0), "% core",
            note="every user's sinks on this machine, not only ours"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(table(asyncio.run(run(args.warm, args.seconds, args.rounds))))
    print(f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
