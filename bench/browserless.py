"""browserless v2, the peer lkpool is measured against: installed on demand, served on a free
loopback port, stopped with its browsers.

browserless is a Node.js server (npm `@browserless.io/browserless`) that launches one
headless Chromium per WebSocket connection. It is installed as its Docker image does (the
package's own folder with its dependencies, `npm install --omit=dev`) under bench/out/ (git
ignores it), once; it takes Chromium from Playwright's `executablePath`, so the folder given
as `PLAYWRIGHT_BROWSERS_PATH` links Debian's Chromium where Playwright looks, and `ROUTES`
holds only its chromium and management routes (its other browsers are not installed).
Where Node or npm is missing or the install fails, `install` says why instead of raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
from pathlib import Path

import aiohttp
import psutil

from bench.common import tree_pids

VERSION = "2.42.0"
PACKAGE = "@browserless.io/browserless"
OUT = Path(__file__).with_name("out") / "browserless"
INSTALL_TIMEOUT = 900
# Playwright's folder for its Chromium build on this architecture (registry/index.js)
CHROME_DIRS = {"x86_64": "chrome-linux64", "aarch64": "chrome-linux"}


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {' / '.join(tail)}")


def install(out: Path = OUT, version: str = VERSION) -> Path | str:
    """The package folder of browserless `version`, installed under `out` if it is not yet;
    or a sentence saying why it cannot be had here."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "Node.js or npm is not installed (apt-get install nodejs npm)"
    package = out / version / "package"
    done = package / ".installed"
    if done.exists():
        return package
    try:
        shutil.rmtree(out / version, ignore_errors=True)
        (out / version).mkdir(parents=True)
        _run([npm, "pack", "--silent", f"{PACKAGE}@{version}"], out / version)
        tgz = next((out / version).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(out / version, filter="data")
        tgz.unlink()
        # as browserless's Dockerfile: its own dependencies, no install scripts (they fetch
        # browsers, and ours is Debian's)
        _run([npm, "install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
              "--loglevel=error"], package)
    except (OSError, RuntimeError, StopIteration, subprocess.TimeoutExpired,
            tarfile.TarError) as exc:
        return f"installing {PACKAGE}@{version} failed: {exc}"
    done.touch()
    return package


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "none"


def _layout(package: Path, chromium: str) -> tuple[Path, Path]:
    """ROUTES (chromium and management only) and PLAYWRIGHT_BROWSERS_PATH (Debian's
    Chromium where playwright-core looks for its build)."""
    base = package.parent
    routes = base / "routes"
    routes.mkdir(exist_ok=True)
    for name in ("chromium", "management"):
        link = routes / name
        if not link.is_symlink():
            link.symlink_to(package / "build" / "routes" / name)
    browsers = json.loads((package / "node_modules" / "playwright-core" / "browsers.json")
                          .read_text())["browsers"]
    revision = next(b["revision"] for b in browsers if b["name"] == "chromium")
    chrome_dir = CHROME_DIRS.get(platform.machine(), "chrome-linux")
    exe = base / "browsers" / f"chromium-{revision}" / chrome_dir / "chrome"
    exe.parent.mkdir(parents=True, exist_ok=True)
    if exe.is_symlink() and os.readlink(exe) != chromium:
        exe.unlink()
    if not exe.is_symlink():
        exe.symlink_to(chromium)
    return routes, base / "browsers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browserless:
    """browserless served on 127.0.0.1 from `package`, until the block ends; its browsers
    (each a process group of its own, as Playwright launches them) are killed with it."""

    def __init__(self, package: Path, chromium: str, *, concurrent: int = 10) -> None:
        self.package = package
        self.chromium = chromium
        self.concurrent = concurrent
        self.token = secrets.token_hex(8)
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_endpoint(self) -> str:
        """What Playwright's connect_over_cdp takes: each connection launches a browser."""
        return f"ws://127.0.0.1:{self.port}/chromium?token={self.token}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def __aenter__(self) -> Browserless:
        routes, browsers = _layout(self.package, self.chromium)
        self.port = _free_port()
        data = self.package.parent / "data"
        data.mkdir(exist_ok=True)
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "TOKEN": self.token,
               "ROUTES": str(routes), "PLAYWRIGHT_BROWSERS_PATH": str(browsers),
               "CONCURRENT": str(self.concurrent), "QUEUED": "20", "TIMEOUT": "300000",
               "DATA_DIR": str(data), "DEBUG": "-*"}
        self.proc = await asyncio.create_subprocess_exec(
            "node", "build/index.js", cwd=self.package, env=env, start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await self._wait_up()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _wait_up(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"browserless exited with {self.proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/pressure",
                                        params={"token": self.token}) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("browserless did not answer within 60 s")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        pids = tree_pids(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        for pid in pids[1:]:  # browsers it had not closed yet
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
