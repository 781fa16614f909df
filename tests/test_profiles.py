"""Profile folders of servers sharing CHROMIUM_PROFILE_BASE_DIR: each start purges only
what its own previous run left, never a live server's fresh profiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lkpool import profiles

MAKER = ("import sys, time; from lkpool import profiles; "
         "print(profiles.create(sys.argv[1]), flush=True); time.sleep(60)")


def start_server_like(base: Path) -> tuple[subprocess.Popen, Path]:
    """Another process that has just made a profile and not yet started its browser."""
    proc = subprocess.Popen([sys.executable, "-c", MAKER, str(base)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_start_never_purges_another_servers_fresh_profile(profile_dir: Path) -> None:
    """Server B starting while server A has a fresh profile (no browser on it yet) leaves
    it alone; A's leftovers go only when A's own next run starts, not at B's."""
    proc, fresh = start_server_like(profile_dir)
    try:
        ledger = profiles._ledger(str(profile_dir), "a-1")  # A's run, as A's start wrote it
        ledger.parent.mkdir()
        ledger.write_text(str(proc.pid))
        assert profiles.purge_leftovers(str(profile_dir), "b-1") == []
        assert fresh.is_dir()
    finally:
        proc.kill()
        proc.wait()
    # A died: B's next start still leaves A's folder to A
    profiles.forget_owner(str(profile_dir), "b-1")
    assert profiles.purge_leftovers(str(profile_dir), "b-1") == []
    assert fresh.is_dir()
    # A starts again: what its previous run left goes
    assert profiles.purge_leftovers(str(profile_dir), "a-1") == [str(fresh)]
    assert not fresh.exists()
    for owner in ("a-1", "b-1"):
        profiles.forget_owner(str(profile_dir), owner)
    assert list(profile_dir.iterdir()) == [] and not ledger.parent.exists()
