"""What a test may not leave behind: processes, shared memory, profile folders, open file
descriptors, PulseAudio sinks, X display sockets.

pytest makes itself a child subreaper, so anything our children orphan (Chromium's helpers,
Xvfb, a daemonised reader) is re-parented to it and shows up among its descendants: the check
sees exactly our processes, even when other suites run on the same machine.

File descriptors are compared by (number, target) with the snapshot taken before the test,
so a socket closed and another opened under the same number still counts. Some are not a
test's to close: multiprocessing's resource tracker pipe and its forkserver's "parent alive"
pipe (opened by the first child, kept for the life of the process), the self-pipe of an
event loop still open (pytest-asyncio opens a module-scoped loop inside the module's first
test and closes it after the last), connections accepted by a server that was already
listening before the test (a module-scoped page server that a module-scoped browser keeps
talking to), and `anon_inode:` handles (epoll, eventfd, timerfd) that native runtimes such
as livekit's FFI open once and keep. livekit's FFI also opens a Unix socketpair when it
starts (once per process, kept): in the test where it starts, new Unix sockets are not
counted. Sockets, pipes and files all count otherwise.

A null sink is a module of the shared PulseAudio daemon named `lkpool_<pid>_<n>` after the
child that loaded it: one that appeared during the test and whose child is ours or dead is a
leak (another team's live child's sink is not ours to judge). Each instance now has a
PulseAudio daemon of its own, a process like any other: one left running is a leak.

An X display's socket in /tmp/.X11-unix that appeared during the test is a leak when the
Xvfb named in its lock file is ours, a zombie of ours included: a killed Xvfb leaves both
behind, and one killed with its child's group is re-parented to us and waits as a zombie
until the check reaps it. (An Xvfb already reaped cannot say whose it was, and other runs
share the machine: such sockets are not judged.)
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PR_SET_CHILD_SUBREAPER = 36
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "lkpool_"
# shared services that outlive any one test by design (none: the shared PulseAudio daemon
# is started before we become a subreaper, so it is no descendant of ours)
EXEMPT_NAMES: set[str] = set()
X11_DIR = Path("/tmp/.X11-unix")
# pids of processes started by tests (servers) whose shm segments count as ours
spawned_pids: set[int] = set()
SINK_RE = re.compile(r"sink_name=(lkpool_(\d+)_\d+)")
# fd targets that native runtimes open lazily and keep for the life of the process
LONG_LIVED_TARGETS = ("anon_inode:",)


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
    # multiprocessing's resource tracker and the forkserver that forks every instance's child
    # live as long as the test process, by design (by pid: the children the forkserver forks
    # carry its command line, and they are what this check is for)
    return "resource_tracker" in cmd or proc.pid == _forkserver_pid()


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver
    return getattr(forkserver._forkserver, "_forkserver_pid", None)


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


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each points at."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the fd listdir itself used, or one closed meanwhile
    return out


def _long_lived_fds() -> set[int]:
    """fds that stay open by design once some library opened them."""
    keep = set()
    try:
        from multiprocessing import resource_tracker
        fd = getattr(resource_tracker._resource_tracker, "_fd", None)
        if fd is not None:
            keep.add(fd)
        from multiprocessing import forkserver  # its "parent alive" pipe
        fd = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)
        if fd is not None:
            keep.add(fd)
    except Exception:
        pass
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.BaseEventLoop) and not obj.is_closed():
            for sock in (getattr(obj, "_ssock", None), getattr(obj, "_csock", None)):
                if sock is not None and sock.fileno() >= 0:
                    keep.add(sock.fileno())
    return keep


def _connections() -> dict[int, psutil._common.pconn]:
    try:
        return {c.fd: c for c in psutil.Process().net_connections(kind="inet")}
    except psutil.Error:
        return {}


def listening() -> set[tuple[str, int]]:
    return {tuple(c.laddr) for c in _connections().values() if c.status == psutil.CONN_LISTEN}


def livekit_ffi_started() -> bool:
    """True once livekit's FFI runtime runs in this process (it never stops)."""
    module = sys.modules.get("livekit.rtc._ffi_client")
    return module is not None and getattr(module.FfiClient, "_instance", None) is not None


def new_fds(before: Snapshot) -> dict[int, str]:
    fresh = {fd: target for fd, target in open_fds().items()
             if before.fds.get(fd) != target and not target.startswith(LONG_LIVED_TARGETS)}
    if fresh:  # the scans below are only paid when something is suspect
        for fd in _long_lived_fds():
            fresh.pop(fd, None)
        conns = _connections()
        for fd, conn in conns.items():
            if fd in fresh and conn.laddr and tuple(conn.laddr) in before.listening \
                    and conn.status != psutil.CONN_LISTEN:
                fresh.pop(fd)
        if not before.ffi and livekit_ffi_started():
            fresh = {fd: t for fd, t in fresh.items()
                     if not t.startswith("socket:") or fd in conns}
    return fresh


def _describe_fds(fds: dict[int, str]) -> list[str]:
    """fd->target, with a socket's addresses, so the message says whose it is."""
    conns = _connections()
    out = []
    for fd, target in sorted(fds.items()):
        c = conns.get(fd)
        where = f"({c.laddr}->{c.raddr or '-'} {c.status})" if c is not None else ""
        out.append(f"{fd}->{target}{where}")
    return out


def pulse_sinks() -> dict[str, tuple[int, int]]:
    """Our null sinks loaded in PulseAudio: sink name -> (module index, pid in the name)."""
    if shutil.which("pactl") is None:
        return {}
    try:
        res = subprocess.run(["pactl", "list", "short", "modules"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in res.stdout.splitlines():
        if (m := SINK_RE.search(line)) is not None:
            out[m.group(1)] = (int(line.split()[0]), int(m.group(2)))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def x_sockets() -> set[str]:
    try:
        return {p.name for p in X11_DIR.iterdir()}
    except OSError:
        return set()


def _x_socket_owner(name: str) -> int | None:
    """The pid in the display's lock file (None when there is none)."""
    try:
        return int(Path(f"/tmp/.{name}-lock").read_text().strip())
    except (OSError, ValueError):
        return None


def _ours(pid: int) -> bool:
    """`pid` is a descendant of ours, a zombie included (an Xvfb killed after its parent
    died is re-parented to us, the subreaper, and waits there until `reap_zombies`)."""
    try:
        parents = psutil.Process(pid).parents()
    except psutil.Error:
        return False
    return any(p.pid == os.getpid() for p in parents)


def _owned_x_sockets(names: set[str], pids: set[int]) -> set[str]:
    return {name for name in names
            if (owner := _x_socket_owner(name)) is not None and (owner in pids or _ours(owner))}


@dataclass
class Snapshot:
    procs: set[int] = field(default_factory=set)
    shm: set[str] = field(default_factory=set)
    fds: dict[int, str] = field(default_factory=dict)
    sinks: set[str] = field(default_factory=set)
    listening: set[tuple[str, int]] = field(default_factory=set)
    ffi: bool = False
    x_sockets: set[str] = field(default_factory=set)

    @classmethod
    def take(cls) -> Snapshot:
        return cls(set(descendants()), shm_names(), open_fds(), set(pulse_sinks()),
                   listening(), livekit_ffi_started(), x_sockets())


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
        fds = new_fds(before)
        mine = {os.getpid(), *seen_pids, *spawned_pids}
        # instances no longer load sinks into the shared daemon: one there is a leak only when
        # its child is ours (another run's, dead or alive, is not ours to judge)
        sinks = {name: module for name, (module, pid) in pulse_sinks().items()
                 if name not in before.sinks and pid in mine}
        xs = _owned_x_sockets(x_sockets() - before.x_sockets, seen_pids)
        if not (procs or shm or profiles or fds or sinks or xs) or time.monotonic() > deadline:
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
    if fds:
        problems.append("file descriptors left open: " + " ".join(
            _describe_fds(fds)))
    if sinks:
        problems.append("PulseAudio sinks left: " + " ".join(sorted(sinks)))
        for module in sinks.values():
            subprocess.run(["pactl", "unload-module", str(module)], capture_output=True,
                           timeout=5, check=False)
    if xs:
        problems.append("X display sockets left: " + " ".join(sorted(xs)))
        for name in xs:
            (X11_DIR / name).unlink(missing_ok=True)
            Path(f"/tmp/.{name}-lock").unlink(missing_ok=True)
    reap_zombies()
    return problems
