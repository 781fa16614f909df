"""Viewers that each ask for a slightly different JPEG cannot make the server encode every
frame once per viewer: qualities and widths are quantised, encodes share one fixed pool."""

from __future__ import annotations

import aiohttp
import pytest

from lkpool.server.appkeys import BROADCASTERS
from lkpool.server.header import FrameHeader
from tests.security.conftest import host_of
from tests.server.conftest import run_server
from tests.support.pages import ANIMATED, serve_pages

pytestmark = pytest.mark.timeout(120)


async def test_near_identical_viewers_share_one_encoding(edge) -> None:
    """Eight viewers with qualities 66..73 and widths 290..297 all get one 70/288 encoding."""
    async with serve_pages({"/anim": ANIMATED}) as site, run_server(edge) as srv, \
            aiohttp.ClientSession() as http:
        lease = await srv.pool.acquire(60, url=site + "/anim")
        url = "ws://" + host_of(srv.base) + f"/session/{lease.session_id}/frames"
        sockets = [await http.ws_connect(f"{url}?format=jpeg&quality={66 + i}"
                                         f"&max_width={290 + i}") for i in range(8)]
        try:
            widths = set()
            for ws in sockets:
                for _ in range(3):
                    msg = await ws.receive(timeout=20)
                    widths.add(FrameHeader.unpack(msg.data)[0].width)
            assert widths == {288}, widths
            latest = srv.app[BROADCASTERS].get(lease.session_id).latest
            assert latest is not None and len(latest.encoded) <= 1, latest.encoded.keys()
        finally:
            for ws in sockets:
                await ws.close()
