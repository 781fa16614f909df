"""The CEF stand-in fixtures: livekit.browser's own parent and child code with a stand-in
for its native module (tests/cef_standin/lkcef_python.py), shared by every CEF test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from lkpool.config import Settings

STANDIN = Path(__file__).parent.parent / "cef_standin" / "lkcef_python.py"


def _lkcef_shm() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("lkcef_browser_*")}


@pytest.fixture
def no_cef(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache home: livekit.browser finds no CEF binaries."""
    home = tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def cef_standin(no_cef: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in module where livekit.browser expects the CEF binaries, with the marker
    its downloader leaves; yields that folder. Fails the test if livekit.browser's shared
    memory or cache folders outlive it (the shared leak check only knows lkpool's names).
    livekit.browser makes its cache folders with `tempfile.mkdtemp`: they go to a folder
    of this test's own, so other test runs on the machine (with CEF folders of their own
    in /tmp) cannot make it fail."""
    from livekit.browser import __version__
    from livekit.browser.download import _detect_platform

    res = no_cef / "livekit" / "browser" / __version__ / _detect_platform()
    res.mkdir(parents=True)
    (res / ".downloaded").touch()
    shutil.copy(STANDIN, res)
    caches = tmp_path / "tmp"
    caches.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(caches))
    shm_before = _lkcef_shm()
    yield res
    assert _lkcef_shm() - shm_before == set(), "livekit.browser shared memory left behind"
    assert list(caches.glob("lkcef_cache_*")) == [], "livekit.browser cache folders left"


def cef_settings(settings: Settings) -> Settings:
    return settings.replace(engine="cef", start_timeout=20.0, request_timeout=5.0)
