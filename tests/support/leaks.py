"""What a test may not leave behind: processes, shared memory, profile folders, fds.

pytest makes itself a child subreaper, so anything our children orphan (Chromium's helpers,
Xvfb, a daemonised reader) is re-parented to it and shows up among its descendants: the check
sees exactly our processes, even when other suites run on the same machine.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PR_SET_CHILD_SUBREAPER = 36
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "lkpool_"
# shared services that outlive any one test by design
EXEMPT_NAMES = {"pulseaudio"}
# pids of processes started by tests (servers) whose shm segments count as ours
spawned_pids: set[int] = set()


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _exempt(proc: psutil.Process) -> bool:
    try:
        if proc.name() in EXEMPT_NAMES:
            return True
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    # multiprocessing's resource tracker lives as long as the test process, by design
    return "resource_tracker" in cmd


def descendants() -> dict[int, psutil.Process]:
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        out[p.pid] = p
    return out


def shm_names() -> set[str]:
    return {p.name for p in SHM_DIR.glob(SHM_PREFIX + "*")}


def _owned_shm(names: set[str], pids: set[int]) -> set[str]:
    mine = {os.getpid(), *pids, *spawned_pids}
    out = set()
    for name in names:
        try:
            pid = int(name[len(SHM_PREFIX):].split("_", 1)[0])
        except ValueError:
            continue
        if pid in mine:
            out.add(name)
    return out


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@dataclass
class Snapshot:
    procs: set[int] = field(default_factory=set)
    shm: set[str] = field(default_factory=set)
    fds: int = 0

    @classmethod
    def take(cls) -> Snapshot:
        return cls(set(descendants()), shm_names(), len(os.listdir("/proc/self/fd")))


def _born_of(proc: psutil.Process, owners: set[int]) -> bool:
    """True when an ancestor of `proc` (below us) is one of `owners`: a renderer that a
    browser started before the test spawned is that browser's, not the test's."""
    me = os.getpid()
    try:
        for parent in proc.parents():
            if parent.pid == me:
                return False
            if parent.pid in owners:
                return True
    except psutil.Error:
        return True
    return False


def check(before: Snapshot, profile_dirs: list[Path], wait: float = 10.0) -> list[str]:
    """Waits up to `wait` seconds for things to go away, then names what is left (and kills
    leftover processes so one leak does not cascade into the next test)."""
    deadline = time.monotonic() + wait
    seen_pids: set[int] = set()
    while True:
        procs = {pid: p for pid, p in descendants().items()
                 if pid not in before.procs and not _exempt(p)
                 and not _born_of(p, before.procs)}
        seen_pids |= set(procs)
        shm = _owned_shm(shm_names() - before.shm, seen_pids)
        profiles = [str(c) for d in profile_dirs if d.exists() for c in d.iterdir()]
        if not (procs or shm or profiles) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    problems = []
    if procs:
        names = []
        for p in procs.values():
            try:
                names.append(f"{p.pid}({p.name()})")
                p.kill()
            except psutil.Error:
                pass
        problems.append("processes left: " + " ".join(sorted(names)))
    if shm:
        problems.append("shared memory left: " + " ".join(sorted(shm)))
        for name in shm:
            (SHM_DIR / name).unlink(missing_ok=True)
    if profiles:
        problems.append("profile folders left: " + " ".join(profiles))
    reap_zombies()
    return problems
