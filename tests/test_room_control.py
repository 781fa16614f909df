"""PagePublisher speaks livekit-plugins-browser's room protocol too: the plugin front end's
`browser-input` packets and `browser/*` RPCs drive a real page, and one focus decides
whose input counts, shared with the live view and an agent (the computer endpoint). No
LiveKit server: packets and RPCs are handed to the publisher as the room would."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import aiohttp
import pytest
from livekit import rtc

from lkpool.focus import AGENT, Focus
from lkpool.publish import PagePublisher
from tests.agents.conftest import FORM
from tests.server.conftest import run_server, wait_until
from tests.support.pages import serve_pages, solid

pytestmark = pytest.mark.timeout(120)


def packet(identity: str, events: list, topic: str = "browser-input") -> rtc.DataPacket:
    return rtc.DataPacket(data=json.dumps(events).encode(), kind=1,
                          participant=SimpleNamespace(identity=identity), topic=topic)


TYPE_HI = [{"type": "mousemove", "x": 100, "y": 25},
           {"type": "mousedown", "x": 100, "y": 25, "button": 0},
           {"type": "mouseup", "x": 100, "y": 25, "button": 0},
           {"type": "keydown", "keyCode": 72, "modifiers": 2},
           {"type": "char", "keyCode": 72, "charCode": 72, "modifiers": 2},
           {"type": "keyup", "keyCode": 72, "modifiers": 2},
           {"type": "char", "keyCode": 105, "charCode": 105}]


async def value(page) -> str:
    return await page.evaluate("document.getElementById('t').value")


async def test_plugin_protocol_focus_input_and_rpcs(settings) -> None:
    """Only an allowed participant gets the focus; only the holder's browser-input counts;
    a person takes the focus from the agent (agent_interrupted) but not from another
    person; browser/navigate loads the page; leaving the room releases the focus."""
    async with serve_pages({"/form": FORM, "/red": solid("red")}) as site, \
            run_server(settings.replace(width=640, height=480, audio=False, acquire_timeout=30,
                                        max_instances=1)) as server:
        lease = await server.pool.acquire(60, url=f"{site}/form")
        page = lease.page
        async with PagePublisher(page, allowed_identities={"alice", "bob"}) as pub:
            control, focus = pub.control, Focus.of(page)
            assert pub.focus is focus
            assert json.loads(await control.call("browser/request-focus", "mallory")) == {
                "granted": False, "holder": None}
            pub._on_data(packet("bob", TYPE_HI))  # allowed, but without the focus
            assert focus.take_for_agent() and focus.holder == AGENT
            assert json.loads(await control.call("browser/request-focus", "alice")) == {
                "granted": True}
            assert focus.agent_interrupted.is_set() and focus.holder == "alice"
            assert not focus.take_for_agent()  # the agent never takes it from a person
            reply = json.loads(await control.call("browser/request-focus", "bob"))
            assert reply == {"granted": False, "holder": "alice"}
            pub._on_data(packet("alice", [{"type": "mousemove", "x": 99999, "y": 1}]))
            pub._on_data(packet("alice", TYPE_HI))
            await wait_until(lambda: pub.inputs_applied == len(TYPE_HI), what="input")
            assert await value(page) == "Hi" and pub.inputs_rejected == 2
            await control.call("browser/navigate", "alice", json.dumps({"url": f"{site}/red"}))
            for _ in range(100):
                if (await page.evaluate("location.pathname")) == "/red":
                    break
                await asyncio.sleep(0.05)
            assert await page.evaluate("location.pathname") == "/red"
            assert json.loads(await control.call("browser/release-focus", "bob")) == {
                "released": False}
            control._on_left(SimpleNamespace(identity="alice"))
            assert focus.holder is None
        await server.pool.release(lease.session_id)


async def test_live_view_and_agent_share_the_focus(settings) -> None:
    """The live view's input takes the focus; while it is open the computer endpoint (the
    agent) gets 409 focus_held; once it closes the agent acts again."""
    async with serve_pages({"/form": FORM}) as site, \
            run_server(settings.replace(width=640, height=480, audio=False, acquire_timeout=30,
                                        max_instances=1)) as server:
        sid = (await server.allocate(url=f"{site}/form"))["session_id"]
        page = server.pool.get(sid).page
        click = {"actions": [{"action": "left_click", "coordinate": [100, 25]}]}
        status, _ = await server.json("POST", f"/session/{sid}/computer", json=click)
        assert status == 200 and Focus.of(page).holder == AGENT
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(server.url(f"/session/{sid}/input")) as ws:
            await ws.send_json({"type": "text", "text": "x", "id": 1})
            while (msg := await ws.receive_json(timeout=20))["type"] != "ack":
                assert msg["type"] != "error", msg
            assert Focus.of(page).holder.startswith("view:")
            assert Focus.of(page).agent_interrupted.is_set()
            status, body = await server.json("POST", f"/session/{sid}/computer", json=click)
            assert status == 409 and body["error"] == "focus_held", body
        await wait_until(lambda: Focus.of(page).holder is None, what="the view's release")
        status, _ = await server.json("POST", f"/session/{sid}/computer", json=click)
        assert status == 200
