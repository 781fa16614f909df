"""A local viewer's frames socket is not paced (lkpool/server/loopback.py), a remote one is
left with the system's congestion control: checked on real sockets, and with `ss` on the
server's side of a real frames WebSocket."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from urllib.parse import urlsplit

import aiohttp
import pytest

from lkpool.config import Settings
from lkpool.server import loopback
from tests.server.conftest import run_server

pytestmark = pytest.mark.timeout(120)


def _congestion(sock: socket.socket) -> str:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()


def _pair(host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, 0), family=family)
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    return listener, client, server


def _outward_address() -> str | None:
    """An address of this machine that is not loopback (a connection to it stays on this
    machine, but its peer is not a loopback address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_loopback_peer_is_unpaced(host: str) -> None:
    try:
        sockets = _pair(host)
    except OSError:
        pytest.skip(f"no {host} here")
    with sockets[0], sockets[1], sockets[2] as server:
        assert loopback.is_local(server)
        assert loopback.unpace(server)
        assert _congestion(server) == "reno"


def test_a_remote_peer_keeps_the_systems_choice() -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("no address but loopback")
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        default = f.read().strip()
    listener, client, server = _pair(address)
    with listener, client, server:
        assert not loopback.is_local(server)
        assert not loopback.unpace(server)
        assert _congestion(server) == default
    with socket.socket(socket.AF_UNIX) as unix:
        assert not loopback.unpace(unix)
    assert not loopback.unpace(None)


async def test_the_frames_socket_of_a_local_viewer_is_unpaced(settings: Settings) -> None:
    """What the server set shows in `ss` on its side of the connection."""
    small = settings.replace(width=320, height=240, framerate=10, audio=False,
                             max_instances=1)
    async with run_server(small) as server, aiohttp.ClientSession() as http:
        lease = await server.pool.acquire(60)
        port = urlsplit(server.base).port
        async with http.ws_connect(f"{server.base}/session/{lease.session_id}/frames"
                                   "?format=raw") as ws:
            await asyncio.wait_for(ws.receive(), 20)
            out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                                 capture_output=True, text=True, check=True).stdout
        assert " reno " in f" {out} ", out
