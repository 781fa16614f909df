"""Shared fixtures: every test fails if it leaks a process, a shm segment or a profile."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lkpool.config import Settings
from tests.support import leaks
from tests.support.pages import ALLOW_HOST_PORTS

pytest_plugins = ["tests.support.cef",  # the CEF stand-in fixtures
                  "tests.security.sandbox_support"]  # the sandbox attacks' fixtures


def pytest_configure(config: pytest.Config) -> None:
    # PulseAudio is a shared service: start it before we become a subreaper, so its daemon
    # is not one of ours.
    if shutil.which("pulseaudio"):
        subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    leaks.become_subreaper()
    # servers the tests start as processes read it from the environment
    os.environ["ALLOW_HOST_PORTS"] = ALLOW_HOST_PORTS


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    return d


@pytest.fixture
def settings(profile_dir: Path) -> Settings:
    """Settings for tests: a private profile folder, quick health checks."""
    return Settings(allow_host_ports=ALLOW_HOST_PORTS, chromium_profile_base_dir=str(profile_dir),
                    health_check_interval=0.5, num_warm=1, max_instances=3, acquire_timeout=2.0)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, tmp_path: Path):
    """Fails the test when it leaves a process, shm segment or profile folder of ours."""
    before = leaks.Snapshot.take()
    yield
    problems = leaks.check(before, [tmp_path / "profiles"])
    if problems:
        pytest.fail("leak after test: " + "; ".join(problems), pytrace=False)
