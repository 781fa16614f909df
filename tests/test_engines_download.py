"""scripts/download_cef.py as a user runs it. The network is cut on purpose (HTTPS_PROXY at a
closed local port), so the offline path is tested the same way on any machine and nothing is
ever fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "download_cef.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:1", https_proxy="http://127.0.0.1:1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_offline_download_exits_1_with_a_clear_message_and_leaves_nothing(tmp_path):
    """Offline: status 1, the URL and what to do instead, and no half-made folder."""
    dest = tmp_path / "cef"
    result = run("--dest", str(dest), "--timeout", "5")
    assert result.returncode == 1, result.stderr
    assert "cannot download https://github.com/livekit/" in result.stderr
    assert "Check the network" in result.stderr and ".downloaded" in result.stderr
    assert not dest.exists()


def test_already_downloaded_is_a_quick_success(tmp_path):
    """With the marker livekit.browser's download leaves, it says so and exits 0."""
    (tmp_path / ".downloaded").touch()
    result = run("--dest", str(tmp_path))
    assert result.returncode == 0 and "already in" in result.stdout, result.stderr
