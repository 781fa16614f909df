"""The proxy's WebSocket splice: frames pass intact however they are cut, a slow reader gets
everything, and the proxy's own close frame never lands inside one of Chromium's."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from yarl import URL

from lkpool import websocket as ws
from lkpool.server.appkeys import PROXY_SOCKETS
from lkpool.server.splice import WRITE_LIMIT
from tests.server.conftest import run_server, wait_until

BIG = 2_000_000  # characters per reply: every reply spans many socket reads


async def page_socket_url(srv, sid: str) -> str:
    status, targets = await srv.json("GET", f"/session/{sid}/json/list")
    assert status == 200
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")


async def test_slow_reader_gets_every_big_reply_intact(small) -> None:
    """20 replies of 2 MB each, pipelined, read slowly: the splice stops reading Chromium's
    side while the client's buffer is full, and every reply arrives whole and in order."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        url = await page_socket_url(srv, body["session_id"])
        async with srv.http.ws_connect(url, max_msg_size=0) as sock:
            for i in range(20):
                await sock.send_json({"id": i, "method": "Runtime.evaluate", "params": {
                    "expression": f"'{i % 10}'.repeat({BIG})", "returnByValue": True}})
            # nobody reads for a while: Chromium's 40 MB wait in Chromium, not in the server
            await asyncio.sleep(2.0)
            (splice,) = srv.app[PROXY_SOCKETS]
            assert splice.client.get_write_buffer_size() < 4 * WRITE_LIMIT
            for i in range(20):
                reply = json.loads((await sock.receive(timeout=60)).data)
                assert reply["id"] == i
                value = reply["result"]["result"]["value"]
                assert len(value) == BIG and value == str(i % 10) * BIG
                await asyncio.sleep(0.05)


async def test_release_mid_stream_closes_between_frames(small) -> None:
    """Releasing a lease while Chromium is sending big replies: the client reads whole
    messages, then the close frame with 1000 "released", never a broken frame."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        sid = body["session_id"]
        url = await page_socket_url(srv, sid)
        async with srv.http.ws_connect(url, max_msg_size=0) as sock:
            for i in range(10):
                await sock.send_json({"id": i, "method": "Runtime.evaluate", "params": {
                    "expression": f"'x'.repeat({BIG})", "returnByValue": True}})
            first = await sock.receive(timeout=60)
            assert json.loads(first.data)["id"] == 0
            status, _ = await srv.json("DELETE", f"/browser/{sid}")
            assert status == 200
            while True:
                msg = await sock.receive(timeout=30)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                assert len(json.loads(msg.data)["result"]["result"]["value"]) == BIG
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert (sock.close_code, msg.extra) == (1000, "released")


async def test_fragmented_message_cut_into_single_bytes(small) -> None:
    """A raw client sends one CDP command as two fragments, written one byte at a time:
    Chromium gets the message and its answer comes back; the close handshake goes through."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        port = URL(srv.url("/")).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = ws.new_key()
        writer.write(ws.upgrade_request(f"127.0.0.1:{port}", f"/session/{body['session_id']}",
                                        key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 101") and ws.accept_key(key).encode() in head
        assert b"sec-websocket-extensions" not in head.lower()
        command = json.dumps({"id": 7, "method": "Browser.getVersion"}).encode()
        data = (ws.frame(ws.TEXT, command[:10], masked=True, fin=False)
                + ws.frame(ws.CONT, command[10:], masked=True))
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
        first = await asyncio.wait_for(reader.readexactly(2), 30)
        header = ws.parse_header(first + await reader.readexactly(ws.header_size(first[1]) - 2))
        assert header is not None and header.opcode == ws.TEXT and header.mask is None
        reply = json.loads(await reader.readexactly(header.length))
        assert reply["id"] == 7 and "Chrome" in reply["result"]["product"]
        writer.write(ws.frame(ws.CLOSE, ws.close_payload(1000), masked=True))
        # Chromium answers the close handshake through the splice, then both ends close
        closing = await asyncio.wait_for(reader.read(), 30)
        assert closing[:1] == bytes([0x80 | ws.CLOSE])
        writer.close()
        await wait_until(lambda: srv.pool.get(body["session_id"]).active, what="the lease")


async def test_bad_upgrades_are_refused_with_json(small) -> None:
    """An upgrade without a valid key, or of another version, is a 400 saying what is
    wrong, before anything reaches the instance."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=120)
        base = {"Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13"}
        for headers, word in (({}, "Sec-WebSocket-Key"),
                              ({"Sec-WebSocket-Key": ws.new_key(),
                                "Sec-WebSocket-Version": "8"}, "version 13")):
            status, err = await srv.json("GET", f"/session/{body['session_id']}",
                                         headers={**base, **headers})
            assert status == 400 and word in err["detail"], err
