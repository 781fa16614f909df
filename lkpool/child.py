"""The child process of one instance, seen from the parent: how it is started, how its whole
process group is ended, and the PulseAudio sinks it could not unload itself.

Children are forked by multiprocessing's forkserver, not spawned one by one: the forkserver
is a fresh single-threaded interpreter (started once, from this process, with its
environment) that has imported the child's code, so each child is as clean as a spawned
one (none of the server's threads, loop or sockets) yet starts 150 ms sooner and shares
the interpreter's pages with the others: 8 MB less per instance (bench/density.py).

A child never imports the parent's `__main__`, which multiprocessing does for every child
it starts: a script that uses lkpool needs no `if __name__ == "__main__"` guard (as with
livekit.browser, whose engine is a separate executable), and each child is spared the
script's imports and side effects (an agent importing torch would load it into every
instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import multiprocessing.spawn
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from .config import Settings

CHILD_NAME = "lkpool-instance-"  # multiprocessing's name of a child process, then its id


def _without_main(get_preparation_data: Callable[[str], dict[str, Any]]
                  ) -> Callable[[str], dict[str, Any]]:
    """multiprocessing tells each child which `__main__` to import before it runs; for our
    children that is dropped (the module docstring says why). Other processes are left
    as multiprocessing makes them."""
    @functools.wraps(get_preparation_data)
    def preparation_data(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if name.startswith(CHILD_NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation_data.lkpool_without_main = True  # type: ignore[attr-defined]
    return preparation_data


def _processes() -> multiprocessing.context.ForkServerContext:
    """Where children come from (see the module docstring)."""
    spawn = multiprocessing.spawn
    if not getattr(spawn.get_preparation_data, "lkpool_without_main", False):
        spawn.get_preparation_data = _without_main(  # type: ignore[assignment]
            spawn.get_preparation_data)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lkpool.proc.main"])  # read when the forkserver starts
    return ctx


class ChildProcess:
    """One instance's child: started once, stopped with its whole process group."""

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._starting: asyncio.Future | None = None
        self.pid: int | None = None  # still readable after the child ended
        self.started_at = 0.0

    @property
    def exitcode(self) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.exitcode
        except ValueError:  # closed: it had ended
            return None

    async def start(self, settings: Settings, profile_dir: str, port: int) -> socket.socket:
        """Forks the child and returns the parent's end of the duplex."""
        from .proc import main as child_main

        parent_sock, child_sock = socket.socketpair()
        try:
            self._proc = _processes().Process(
                target=child_main.run, name=f"{CHILD_NAME}{self.instance_id}",
                args=(child_sock, settings, profile_dir, port, os.getpid()))
            self.started_at = time.monotonic()
            # the fork/exec goes on in its thread even if we are cancelled (stop waits for
            # it), and it needs the child's end of the socketpair open until it is done
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._proc.start))
            self._starting.add_done_callback(lambda _: child_sock.close())
            await asyncio.shield(self._starting)
            self.pid = self._proc.pid
        except BaseException:
            if self._starting is None:
                child_sock.close()
            parent_sock.close()
            raise
        return parent_sock

    async def stop(self) -> None:
        """Ends the child's process group (Chromium, Xvfb, audio reader), then the child:
        TERM, then KILL, each with a grace period. Safe to call twice."""
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting  # a start still under way: let it finish, then stop it
            self.pid = self._proc.pid if self._proc else None
        proc = self._proc
        if proc is None or proc.pid is None:
            return
        pgid = proc.pid  # the child leads its own process group
        await asyncio.to_thread(proc.join, 2.0)
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            if proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            await asyncio.to_thread(proc.join, grace)
            if proc.exitcode is not None and not _group_alive(pgid):
                break
        with contextlib.suppress(ValueError):
            proc.close()

    async def exit_code(self) -> int | None:
        if self._proc is None:
            return None
        with contextlib.suppress(ValueError):  # closed already
            await asyncio.to_thread(self._proc.join, 2.0)
            return self._proc.exitcode
        return None

    async def remove_leftovers(self, display: str) -> None:
        """What a child that was killed could not remove itself: its Xvfb's socket and lock
        in /tmp/.X11-unix (only when that Xvfb is gone). Idempotent."""
        if display:
            from .proc.display import remove_display_files

            await asyncio.to_thread(remove_display_files, display)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
