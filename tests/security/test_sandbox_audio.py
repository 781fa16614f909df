"""A lease records no other lease's audio: every instance has a PulseAudio daemon of its own,
whose socket only its own sandbox sees. Played as an attacker who already owns lease A's
browser process (a renderer exploit, say): a PulseAudio client run inside A's namespaces
lists A's own sink monitor, and cannot reach B's daemon at all."""

from __future__ import annotations

import asyncio
import os
import subprocess

from tests.security.sandbox_support import instance_of, lease, run_server, tree


def _browser_in(child_pid: int) -> int:
    """A Chromium process of the instance (inside its sandbox)."""
    return next(p.pid for p in tree(child_pid) if p.name() == "chromium")


async def _sources_seen_from(pid: int, server: str) -> tuple[int, str]:
    """`pactl list short sources` against `server`, run in the namespaces of `pid`."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", "-t", str(pid), "-U", "-m", "-n", "-p", "-S", "1000", "-G", "1000", "--",
        "pactl", "-s", server,
        "list", "short", "sources", env={"PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(errors="replace")


def _shared_daemon() -> list[str]:
    """The socket of the host's shared PulseAudio daemon, when one runs."""
    try:
        out = subprocess.run(["pactl", "info"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split(":", 1)[1].strip().removeprefix("unix:") for line in out.splitlines()
            if line.startswith("Server String:")]


async def test_a_lease_cannot_open_another_leases_monitor(sandboxed) -> None:
    """From inside A's sandbox, A's daemon lists A's monitor and nothing of B's; B's daemon
    (and the shared one) cannot be reached."""
    settings = sandboxed.replace(audio=True, capture="x11")
    async with run_server(settings) as srv, lease(srv) as a, lease(srv) as b:
        ctx_a, ctx_b = instance_of(srv.pool, a.id), instance_of(srv.pool, b.id)
        attacker = _browser_in(ctx_a.pid)
        own = f"unix:{os.path.join(ctx_a.profile_dir, 'pulse', 'native')}"
        other = f"unix:{os.path.join(ctx_b.profile_dir, 'pulse', 'native')}"
        code, listed = await _sources_seen_from(attacker, own)
        assert code == 0 and f"{ctx_a.audio_sink}.monitor" in listed, listed
        assert ctx_b.audio_sink not in listed
        code, listed = await _sources_seen_from(attacker, other)
        assert code != 0 and ctx_b.audio_sink not in listed, listed
        for shared in {*_shared_daemon(), f"/run/user/{os.getuid()}/pulse/native"}:
            code, listed = await _sources_seen_from(attacker, f"unix:{shared}")
            assert code != 0 and ctx_b.audio_sink not in listed, (shared, listed)
