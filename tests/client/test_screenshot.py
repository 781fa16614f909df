"""`lkpool screenshot` as a user runs it: a subprocess, against a server or its own pool."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import sys
from pathlib import Path

import pytest

from lkpool.commands.screenshot import file_name
from tests.server.conftest import run_server, wait_until
from tests.support.pages import bind_page_port, serve_pages, solid

pytestmark = pytest.mark.timeout(120)


async def _lkpool(*args: str, env: dict[str, str] | None = None
                  ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkpool.cli", "screenshot", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


async def _hanging_server() -> tuple[asyncio.Server, str]:
    """A server that accepts and never answers: a page using it never finishes loading."""
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    srv = await asyncio.start_server(hang, sock=bind_page_port())
    return srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def test_screenshot_through_a_server(settings, tmp_path: Path) -> None:
    """Good URLs become PNGs, a bad one fails the run, and Ctrl-C leaves no lease behind."""
    small = settings.replace(width=320, height=240, max_instances=1, audio=False,
                             acquire_timeout=20.0)
    out = tmp_path / "shots"
    hang_srv, hang = await _hanging_server()
    pages = {"/red": solid("#ff0000"), "/slow": f"<img src='{hang}/x.png'>"}
    async with hang_srv, serve_pages(pages) as site, run_server(small) as server:
        with socket.socket() as sock:  # a port with nothing listening
            sock.bind(("127.0.0.1", 0))
            bad = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        proc = await _lkpool(site + "/red", bad, "--server", server.base, "--out", str(out),
                             "--concurrency", "1", "--width", "320", "--height", "240",
                             "--timeout", "20")
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
        lines = stdout.decode().splitlines()
        assert proc.returncode == 1, stderr.decode()
        assert lines[0].startswith("ok") and lines[0].endswith(file_name(1, site + "/red"))
        assert lines[1].startswith("FAIL") and "ERR_CONNECTION_REFUSED" in lines[1]
        assert lines[2].startswith("2 URLs: 1 ok, 1 failed")
        assert _png_size(out / file_name(1, site + "/red")) == (320, 240)
        assert server.pool.list() == []

        # Ctrl-C while a page is still loading: the lease is released before the exit
        proc = await _lkpool(site + "/slow", "--server", server.base, "--out", str(out),
                             "--timeout", "60")
        await wait_until(lambda: server.pool.list(), 60, "the command's lease")
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130, stderr.decode()
        assert server.pool.list() == []


async def test_screenshot_with_its_own_pool(profile_dir: Path, tmp_path: Path) -> None:
    """Without --server the command runs a pool of its own and stops it cleanly."""
    out = tmp_path / "shots"
    async with serve_pages({"/blue": solid("#0000ff")}) as site:
        proc = await _lkpool(site + "/blue", "--out", str(out), "--full-page", "--width",
                             "320", "--height", "200",
                             env={"CHROMIUM_PROFILE_BASE_DIR": str(profile_dir)})
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    assert "1 URLs: 1 ok, 0 failed" in stdout.decode()
    width, height = _png_size(out / file_name(1, site + "/blue"))
    assert width == 320 and height >= 200
