"""Which capture mode the child picks for settings.capture on this machine (no Chromium)."""

from __future__ import annotations

import logging
import os

import pytest

from lkpool.proc.main import resolve_capture


def test_auto_and_x11_use_xvfb_when_installed():
    """With Xvfb on PATH, auto and x11 both mean x11; screencast stays screencast."""
    if not any(os.access(os.path.join(d, "Xvfb"), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("Xvfb not installed")
    assert resolve_capture("auto") == "x11"
    assert resolve_capture("x11") == "x11"
    assert resolve_capture("screencast") == "screencast"


def test_without_xvfb_x11_falls_back_to_screencast_with_a_warning(monkeypatch, tmp_path,
                                                                   caplog):
    """With no Xvfb on PATH, x11 falls back to screencast and says how to get x11."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="lkpool.proc"):
        assert resolve_capture("x11") == "screencast"
        assert resolve_capture("auto") == "screencast"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "apt-get install xvfb" in warnings[0].getMessage()
