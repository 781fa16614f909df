"""What the benchmarks share: a figure with its baseline (`Row`), the machine they ran on,
PSS and CPU of processes, and the bare headless Chromium the idle and density figures stand
beside."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psutil

from lkpool import profiles
from lkpool.config import Settings
from lkpool.proc.chromium import launch


@dataclass
class Row:
    """One figure beside its baseline from the same run. `ratio` is value/baseline unless
    given (a bench knows which way round reads naturally, e.g. "x faster")."""
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.value / self.baseline

    def cells(self) -> list[str]:
        base = "-" if self.baseline is None else f"{fmt(self.baseline)} {self.unit}"
        if self.baseline_name:
            base += f" ({self.baseline_name})"
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        return [self.name, f"{fmt(self.value)} {self.unit}", base, ratio, self.note]


def fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def table(rows: list[Row]) -> str:
    """A Markdown table of rows."""
    head = ["figure", "value", "baseline (same run)", "ratio", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def chromium_version(path: str | None = None) -> str:
    path = path or Settings().chromium_path
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"


def machine() -> dict[str, str]:
    """Cores, memory, CPU model, OS and Chromium version: the context every figure needs."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": model or platform.processor(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "chromium": chromium_version(),
        "load average at start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def pss_kb(pid: int) -> int:
    """Proportional set size of one process in kB (0 when it is gone): shared pages are
    split among the processes that map them, so sums over processes do not double count."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (an lkpool child leads its own)."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def tree_pids(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.Error:
        return []


@contextlib.contextmanager
def deployed_main() -> Iterator[None]:
    """Children started inside start as under `lkpool serve`. multiprocessing imports the
    parent's main module in every child (forkserver and spawn alike) unless it is a
    package's `__main__` (as `python -m lkpool` is); a bench's main module (and all it
    imports) would otherwise weigh on each instance's child and skew memory figures."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process so far; 0 for one that is gone."""
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


class CpuMeter:
    """CPU seconds of named process groups between `start` and `stop`."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups
        self._t0: dict[int, float] = {}


    def start(self) -> None:
        self.wall = time.monotonic()
        self._t0 = {p.pid: cpu_seconds(p) for procs in self.groups.values() for p in procs}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        return {name: sum(cpu_seconds(p) - self._t0.get(p.pid, 0.0) for p in procs) / wall
                for name, procs in self.groups.items()}


@contextlib.asynccontextmanager
async def bare_chromium(settings: Settings, settle: float) -> AsyncIterator[list[int]]:
    """A bare headless Chromium with the instances' flags on about:blank, `settle` seconds
    after its start: its processes' pids, killed on the way out."""
    profile = tempfile.mkdtemp(prefix="bench-bare-", dir=settings.chromium_profile_base_dir)
    launched = await launch(settings, profile, 0, "screencast",
                            (settings.width, settings.height), {})
    pids: list[int] = []
    try:
        await asyncio.sleep(settle)
        pids = tree_pids(launched.browser.pid)
        yield pids
    finally:
        pids = pids or tree_pids(launched.browser.pid)
        launched.stop()
        for pid in pids:  # its helpers only: a pool's browsers are our descendants too
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        profiles.remove(profile)  # with Chromium's singleton folder in /tmp
