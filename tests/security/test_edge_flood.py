"""A page floods the input socket (history.replaceState with 1 MB URLs) while the socket's
reader reads nothing: the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os

import aiohttp
import pytest

from tests.security.conftest import host_of
from tests.server.conftest import run_server, wait_until
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(180)

FLOOD = """<html><body><script>
const big = "x".repeat(1 << 20);
let n = 0;
// Chromium allows about 200 history updates per 10 s; each one here is a 1 MB URL
setInterval(() => { try { history.replaceState(null, "", "/flood?" + (n++) + big); }
                    catch (e) {} }, 50);
</script></body></html>"""
FLOOD_SECONDS = 20.0
MAX_GROWTH = 32 << 20


def rss() -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def _silent_socket(base: str, path: str) -> asyncio.StreamWriter:
    """A WebSocket client written by hand that never reads (its kernel buffer fills)."""
    host, port = host_of(base).split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return writer


async def test_a_url_flood_to_a_silent_reader_keeps_memory_bounded(edge) -> None:
    """URLs cut in the child, state messages coalesced: RSS grows by far less than the
    flood sent, nothing 1 MB long reaches the server, and the lease still answers.

    Chromium itself slows such a page down (its browser process handles each 1 MB URL), so
    the flood reaches lkpool at about one URL a second here; the health check is off so the
    bogged-down browser is not replaced meanwhile."""
    settings = edge.replace(health_check_interval=60.0, acquire_timeout=30.0)
    async with serve_pages({"/flood": FLOOD}) as site, run_server(settings) as srv:
        lease = await srv.pool.acquire(120, url=site + "/flood")
        sid = lease.session_id
        urls: list[int] = []
        lease.page.on("url_changed", lambda url: urls.append(len(url)))
        silent = [await _silent_socket(srv.base, f"/session/{sid}/input") for _ in range(4)]
        try:
            await wait_until(lambda: urls, what="the flood to start")
            before = rss()
            loop = asyncio.get_running_loop()
            end = loop.time() + FLOOD_SECONDS
            peak = before
            while loop.time() < end:
                await asyncio.sleep(0.5)
                peak = max(peak, rss())
            assert len(urls) >= 5, urls  # the page did flood the server
            assert max(urls) <= 16 * 1024, max(urls)  # cut in the child
            assert peak - before < MAX_GROWTH, (peak - before) >> 20
            status, _ = await srv.json("GET", f"/browser/{sid}")
            assert status == 200
        finally:
            for w in silent:
                w.close()


async def test_a_client_that_sends_but_never_reads_is_closed(edge) -> None:
    """20,000 bad events, each answered with a 2 KB error, to an input socket whose client
    does not read: the server closes it with 1008 (or drops it, when even the close frame
    cannot get through) instead of queueing 40 MB of answers, and frees its socket slot."""
    async with run_server(edge.replace(max_session_sockets=1)) as srv:
        lease = await srv.pool.acquire(60)
        url = "ws://" + host_of(srv.base) + f"/session/{lease.session_id}/input"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            bad = '{"type": "' + "x" * 2000 + '", "id": %d}'

            async def send_all() -> None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    for i in range(20_000):
                        await ws.send_str(bad % i)

            # the server stops reading once it gave up on the client, so the last sends wait
            # until this bound (our own client never learns of the drop while it writes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(send_all(), 20)
            answers = 0
            with contextlib.suppress(ConnectionError):
                while (await ws.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
                    answers += 1
            assert ws.closed and answers < 20_000, (ws.close_code, answers)
            assert ws.close_code in (1008, 1006, None), ws.close_code
            # its slot is free again: the one socket this session may have opens
            async with http.ws_connect(url) as again:
                assert (await again.receive_json(timeout=30))["type"] == "state"
        assert srv.pool.get(lease.session_id).active  # the lease itself goes on
