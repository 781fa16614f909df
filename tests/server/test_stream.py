"""Frames and input over the network: a real pool, real Chromium, a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
import simplejpeg

from lkpool.config import Settings
from lkpool.pool import Pool
from lkpool.server.header import FrameFormat, FrameHeader
from tests.server.conftest import run_server
from tests.support.pages import CLICKS, serve_pages, solid

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def stream_server(settings: Settings) -> AsyncIterator[tuple[str, Pool]]:
    """The real app (shared helper) over a pool of one small instance."""
    async with run_server(settings.replace(framerate=30, max_instances=1)) as server:
        yield server.base, server.pool


async def _wait_path(page, path: str) -> None:
    """Navigation is asynchronous: waits (bounded) until the page shows `path`."""
    for _ in range(200):
        if await page.evaluate("location.pathname") == path:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"page never reached {path}")


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> tuple[FrameHeader, bytes]:
    msg = await asyncio.wait_for(ws.receive(), 20)
    assert msg.type is aiohttp.WSMsgType.BINARY, msg
    header, payload = FrameHeader.unpack(msg.data)
    return header, bytes(payload)


async def test_frames_raw_and_jpeg_to_two_viewers(small: Settings) -> None:
    """Raw and scaled JPEG viewers of one lease get its pixels with a valid header."""
    async with serve_pages({"/red": solid("#ff0000")}) as site, \
            stream_server(small) as (base, pool), aiohttp.ClientSession() as http:
        lease = await pool.acquire(60, url=site + "/red")
        url = f"{base}/session/{lease.session_id}/frames"
        async with http.ws_connect(url + "?format=raw") as raw, \
                http.ws_connect(url + "?format=jpeg&quality=90&scale=0.5") as jpeg:
            # the page may still show its previous paint for a moment: wait for red
            for _ in range(100):
                h, payload = await _frame(raw)
                px = np.frombuffer(payload, np.uint8).reshape(h.height, h.width, 4)
                if tuple(px[120, 160, :3]) == (0, 0, 255):
                    break
            assert (h.format, h.width, h.height) == (FrameFormat.RAW, 320, 240)
            assert tuple(px[120, 160, :3]) == (0, 0, 255)  # BGRA red
            assert h.ready_ns >= h.captured_ns > 0
            for _ in range(100):
                hj, data = await _frame(jpeg)
                rgb = simplejpeg.decode_jpeg(data)
                if rgb[60, 80, 0] > 230 and rgb[60, 80, 1] < 25:
                    break
            assert (hj.format, hj.width, hj.height) == (FrameFormat.JPEG, 160, 120)
            assert rgb.shape == (120, 160, 3) and rgb[60, 80, 0] > 230
            # a viewer joining a still page gets the newest frame at once, not the next paint
            async with http.ws_connect(url + "?format=raw&max_width=64") as late:
                h2, small_payload = await _frame(late)
            assert h2.sequence >= h.sequence and (h2.width, h2.height) == (64, 48)
            assert len(small_payload) == 64 * 48 * 4

        # bad query and unknown session are JSON errors before any upgrade
        async with http.get(url + "?format=gif") as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["error"] == "invalid_argument" and "'format'" in body["detail"]
        async with http.get(f"{base}/session/nope/frames") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "unknown_session"


async def test_input_socket_and_post(small: Settings) -> None:
    """Input events reach the page, bad ones get an error naming the field, and the lease's
    end is pushed to the input socket and closes the frames socket."""
    async with serve_pages({"/clicks": CLICKS, "/other": solid("#00ff00")}) as site, \
            stream_server(small) as (base, pool), aiohttp.ClientSession() as http:
        lease = await pool.acquire(60, url=site + "/clicks")
        sid = lease.session_id
        await _wait_path(lease.page, "/clicks")
        async with http.ws_connect(f"{base}/session/{sid}/input") as ws, \
                http.ws_connect(f"{base}/session/{sid}/frames?fps=5") as frames:
            state = await ws.receive_json(timeout=10)
            assert state["type"] == "state" and state["width"] == 320
            assert {"url", "title", "cursor", "height", "framerate"} <= set(state)

            await ws.send_json({"type": "mouse", "action": "click", "x": 400, "y": 5, "id": 1})
            err = await ws.receive_json(timeout=10)
            assert (err["type"], err["field"], err["id"]) == ("error", "x", 1)
            await ws.send_str("{not json")
            assert (await ws.receive_json(timeout=10))["type"] == "error"

            await ws.send_json({"type": "mouse", "action": "click", "x": 50, "y": 100, "id": 2})
            assert await ws.receive_json(timeout=10) == {"type": "ack", "id": 2}
            assert await lease.page.evaluate("window.clicks") == [[50, 100]]

            # POST: a bad event in a list stops the whole list before the browser sees any
            bad = [{"type": "mouse", "action": "click", "x": 60, "y": 60},
                   {"type": "key", "key": "Hyper+x"}]
            async with http.post(f"{base}/session/{sid}/input", json=bad) as resp:
                body = await resp.json()
                assert resp.status == 400 and body["field"] == "key" and body["index"] == 1
            assert await lease.page.evaluate("window.clicks.length") == 1
            good = [{"type": "mouse", "action": "click", "x": 20, "y": 20},
                    {"type": "text", "text": "hi"}, {"type": "key", "key": "Shift+a"}]
            async with http.post(f"{base}/session/{sid}/input", json=good) as resp:
                assert resp.status == 200 and (await resp.json())["applied"] == 3
            assert await lease.page.evaluate("document.getElementById('t').value") == "hiA"
            # down and up are sent without waiting for the page; the POST's answer does wait
            raw = [{"type": "mouse", "action": a, "x": 70, "y": 110} for a in ("move", "down",
                                                                               "up")]
            async with http.post(f"{base}/session/{sid}/input", json=raw) as resp:
                assert resp.status == 200
            assert (await lease.page.evaluate("window.clicks"))[-1] == [70, 110]

            await ws.send_json({"type": "navigate", "url": site + "/other"})
            seen = await ws.receive_json(timeout=10)
            while seen["type"] != "url_changed":
                seen = await ws.receive_json(timeout=10)
            assert seen["url"].endswith("/other")

            await pool.release(sid)
            while (msg := await ws.receive_json(timeout=10))["type"] != "closed":
                pass
            assert msg["reason"] == "released"
            assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE,
                                                            aiohttp.WSMsgType.CLOSED)
            while (await frames.receive(timeout=10)).type is aiohttp.WSMsgType.BINARY:
                pass
            assert frames.close_code == 1001

        async with http.post(f"{base}/session/{sid}/input", json={"type": "back"}) as resp:
            assert resp.status == 404


async def test_a_slow_load_does_not_hold_the_input_behind_it(small: Settings) -> None:
    """A navigate on the input socket is sent at once, but its wait for the new page's load
    does not hold the events after it: a click sent behind it is acked first, and the
    navigate's ack follows once the page loaded."""
    slow = "<body>slow<img src='/slow.png'></body>"  # `load` waits for the image
    async with serve_pages({"/clicks": CLICKS, "/slow": slow, "/slow.png": ""},
                           delays={"/slow.png": 3.0}) as site, \
            stream_server(small) as (base, pool), aiohttp.ClientSession() as http:
        lease = await pool.acquire(60, url=site + "/clicks")
        await _wait_path(lease.page, "/clicks")
        async with http.ws_connect(f"{base}/session/{lease.session_id}/input") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "state"
            await ws.send_json({"type": "navigate", "url": site + "/slow", "id": "nav"})
            await ws.send_json({"type": "mouse", "action": "move", "x": 5, "y": 5, "id": "move"})
            acks = []
            while len(acks) < 2:
                msg = await ws.receive_json(timeout=20)
                assert msg["type"] != "error", msg
                if msg["type"] == "ack":
                    acks.append(msg["id"])
            assert acks == ["move", "nav"]
            assert await lease.page.evaluate("document.readyState") == "complete"
            assert await lease.page.evaluate("location.pathname") == "/slow"


DIALOG_PAGE = """<body style='margin:0'><button style='width:200px;height:100px'
 onclick="window.r = confirm('sure?')">go</button></body>"""


async def test_a_dialog_on_the_input_socket(small: Settings) -> None:
    """A dialog the page opens is pushed to the input socket; mouse, key and text input
    are refused with dialog_open until a dialog event answers it."""
    async with serve_pages({"/d": DIALOG_PAGE}) as site, \
            stream_server(small) as (base, pool), aiohttp.ClientSession() as http:
        lease = await pool.acquire(60, url=site + "/d")
        await _wait_path(lease.page, "/d")
        async with http.ws_connect(f"{base}/session/{lease.session_id}/input") as ws:
            assert (await ws.receive_json(timeout=10))["dialog"] is None
            await ws.send_json({"type": "mouse", "action": "click", "x": 50, "y": 50, "id": 1})
            got = {}
            while "dialog_opened" not in got or "ack" not in got:
                msg = await ws.receive_json(timeout=20)
                got[msg["type"]] = msg
            assert got["dialog_opened"] == {"type": "dialog_opened", "kind": "confirm",
                                            "message": "sure?", "default_prompt": ""}
            await ws.send_json({"type": "text", "text": "x", "id": 2})
            err = await ws.receive_json(timeout=10)
            assert (err["type"], err["error"], err["id"]) == ("error", "dialog_open", 2)
            await ws.send_json({"type": "dialog", "action": "maybe", "id": 3})
            err = await ws.receive_json(timeout=10)
            assert (err["error"], err["field"]) == ("invalid_argument", "action")
            await ws.send_json({"type": "dialog", "action": "dismiss", "id": 4})
            got = {}
            while "dialog_closed" not in got or "ack" not in got:
                msg = await ws.receive_json(timeout=20)
                got[msg["type"]] = msg
            assert got["dialog_closed"]["accepted"] is False and got["ack"]["id"] == 4
            assert await lease.page.evaluate("window.r") is False
