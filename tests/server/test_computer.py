"""POST /session/{id}/computer and GET /session/{id}/screenshot on the real server: actions in
Anthropic's computer-use vocabulary drive a real page, the answer is an image of it, and a
bad batch is a 400 that names the action and field with nothing of it applied."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from lkpool.config import Settings
from tests.agents.conftest import FORM
from tests.server.conftest import run_server
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(120)

BUTTON = """<html><body style='margin:0;background:rgb(255,255,255)'>
<button id=b style='position:absolute;left:0;top:0;width:100px;height:100px;border:0;
background:rgb(255,0,0)' onclick="this.style.background='rgb(0,255,0)'">b</button>
</body></html>"""


def pixels(shot: dict) -> np.ndarray:
    img = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    assert img.size == (shot["width"], shot["height"])
    return np.asarray(img)


async def test_click_type_key_scroll_and_the_answer_image(settings: Settings) -> None:
    """A batch clicks the input, types, selects all and types over it, scrolls; the answer
    is a PNG of the page as it settled, JPEG and scaled on request."""
    small = settings.replace(width=640, height=480, framerate=30, audio=False, max_instances=1,
                             acquire_timeout=30)
    async with serve_pages({"/form": FORM, "/button": BUTTON}) as site, \
            run_server(small) as server:
        sid = (await server.allocate(url=f"{site}/button"))["session_id"]
        path = f"/session/{sid}/computer"
        status, body = await server.json("POST", path, json={
            "actions": [{"action": "left_click", "coordinate": [50, 50]}]})
        assert status == 200, body
        shot = body["screenshot"]
        assert shot["media_type"] == "image/png" and (shot["width"], shot["height"]) == (640, 480)
        assert tuple(pixels(shot)[50, 50]) == (0, 255, 0)  # the click's effect is in it
        assert tuple(pixels(shot)[300, 300]) == (255, 255, 255)
        assert body["cursor"] == [50, 50] and body["applied"] == 1

        page = server.pool.get(sid).page
        await page.navigate(f"{site}/form")
        status, body = await server.json("POST", path, json={"actions": [
            {"action": "left_click", "coordinate": [100, 25]},
            {"action": "type", "text": "Hello, World! ~{}"},
            {"action": "key", "text": "ctrl+a"},
            {"action": "type", "text": "Over"},
            {"action": "key", "text": "shift+Home BackSpace"},
            {"action": "type", "text": 'A "quote"'},
            {"action": "scroll", "coordinate": [300, 300], "scroll_direction": "down",
             "scroll_amount": 2},
        ], "screenshot": "jpeg", "scale": 0.5})
        assert status == 200, body
        assert await page.evaluate("document.getElementById('t').value") == 'A "quote"'
        assert await page.evaluate("scrollY") > 0
        shot = body["screenshot"]
        assert shot["media_type"] == "image/jpeg" and (shot["width"], shot["height"]) == (320, 240)
        assert np.abs(pixels(shot)[200, 160].astype(int) - (0, 0, 255)).max() < 40  # blue

        status, body = await server.json("GET", f"/session/{sid}/screenshot?scale=0.25")
        assert status == 200 and (body["screenshot"]["width"], body["screenshot"]["height"]) \
            == (160, 120)


@pytest.mark.parametrize(("actions", "named"), [
    ([{"action": "left_click", "coordinate": [10, 10]}, {"action": "fly"}], "actions[1]"),
    ([{"action": "type", "text": "x"}, {"action": "left_click", "coordinate": [9999, 1]}],
     "actions[1] (left_click): coordinate"),
    ([{"action": "type", "text": "x"}, {"action": "key", "text": "ctrl+nosuchkey"}],
     "actions[1] (key): text"),
    ([{"action": "type", "text": "x"}, {"action": "scroll", "coordinate": [1, 1],
                                          "scroll_direction": "sideways"}],
     "actions[1] (scroll): scroll_direction"),
    ([{"action": "type", "text": "x"}, {"action": "type", "text": "y", "colour": 1}],
     "actions[1] (type): colour"),
    ([{"action": "type", "text": "x"}, {"action": "wait", "duration": 99}],
     "actions[1] (wait): duration"),
])
async def test_a_bad_action_is_a_400_and_nothing_runs(settings: Settings, actions,
                                                      named) -> None:
    """The batch is checked whole: the 400 names the bad action and field, and the good
    action before it was not applied (the input stays empty)."""
    small = settings.replace(width=640, height=480, audio=False, max_instances=1,
                             acquire_timeout=30)
    async with serve_pages({"/form": FORM}) as site, run_server(small) as server:
        sid = (await server.allocate(url=f"{site}/form"))["session_id"]
        page = server.pool.get(sid).page
        await page.click(100, 25)
        status, body = await server.json("POST", f"/session/{sid}/computer",
                                         json={"actions": actions})
        assert status == 400 and body["error"] == "invalid_argument", body
        assert named in body["detail"], body
        assert await page.evaluate("document.getElementById('t').value") == ""
        status, body = await server.json("POST", f"/session/{sid}/computer",
                                         json={"actions": [], "screenshot": "gif"})
        assert status == 400 and "screenshot" in body["detail"]
        status, _ = await server.json("POST", "/session/nope/computer", json={"actions": []})
        assert status == 404
