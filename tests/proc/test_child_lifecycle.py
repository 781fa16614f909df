"""How a child ends: start failure, browser crash, parent gone; and instances side by side."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import psutil
import pytest

from lkpool.proc import protocol as p
from tests.proc.harness import ChildHarness


def _group(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def _sinks() -> str:
    return subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True,
                          text=True).stdout


async def test_missing_chromium_sends_fatal_naming_the_fix(settings):
    """A wrong CHROMIUM_PATH gives Fatal(browser_start_failed) naming the binary and the
    install command; the child exits non-zero and unloads its sink."""
    h = ChildHarness(settings.replace(chromium_path="/nonexistent/chromium"))
    with pytest.raises(RuntimeError):
        await h.__aenter__()
    assert h.fatal is not None and h.fatal.reason == "browser_start_failed"
    assert "/nonexistent/chromium" in h.fatal.detail
    assert "apt-get install chromium" in h.fatal.detail
    assert h.exitcode not in (0, None)
    assert f"lkpool_{h.pid}_" not in _sinks()


async def test_two_instances_side_by_side_and_how_they_end(settings):
    """Two instances get different displays, sinks and profiles; SIGKILL of one's Chromium
    makes that child send Fatal(crashed) and exit; closing the other's duplex makes that
    child kill its whole group and exit."""
    async with ChildHarness(settings.replace(capture="x11")) as a, \
            ChildHarness(settings.replace(capture="x11")) as b:
        assert a.ready.display != b.ready.display
        assert a.ready.audio_sink != b.ready.audio_sink
        assert a.profile_dir != b.profile_dir
        assert a.ready.debugging_port != b.ready.debugging_port

        # browser crash -> Fatal, exit, nothing of the group left, sink unloaded
        os.kill(a.ready.browser_pid, signal.SIGKILL)
        fatal = await a.wait_for(lambda m: isinstance(m, p.Fatal), 15)
        assert fatal.reason == "crashed"
        assert await a.wait_exit(15) not in (0, None)
        assert _group(a.pid) == []
        assert a.ready.audio_sink not in _sinks()

        # parent gone (duplex closed, no Shutdown) -> the child kills its group and exits
        group_before = _group(b.pid)
        assert b.ready.browser_pid in group_before
        b.channel.close()
        assert await b.wait_exit(15) is not None
        for _ in range(50):
            if not _group(b.pid):
                break
            await asyncio.sleep(0.1)
        assert _group(b.pid) == []
        assert b.ready.audio_sink not in _sinks()


async def test_sigterm_is_a_clean_exit(settings):
    """SIGTERM to the child: exit code 0, its group gone (screencast, no audio)."""
    async with ChildHarness(settings.replace(capture="screencast", audio=False)) as h:
        assert (await h.request(p.Ping)).value.startswith("Chrome/")
        os.kill(h.pid, signal.SIGTERM)
        assert await h.wait_exit(15) == 0
        assert _group(h.pid) == []
