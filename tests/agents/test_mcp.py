"""`lkpool mcp` over stdio, driven by the `mcp` package's own client: it opens a browser on
a real server, navigates, runs computer actions, returns images of the page, and the
leases it opened end when the client goes away."""

from __future__ import annotations

import json
import os
import sys

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from lkpool.config import Settings
from tests.agents.conftest import FORM, image, open_red_then_form
from tests.server.conftest import run_server, wait_until
from tests.support.pages import serve_pages, solid

pytestmark = pytest.mark.timeout(120)


def client_of(base: str) -> Client:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return Client(StdioServerParameters(command=sys.executable,
                                        args=["-m", "lkpool", "mcp", "--server", base],
                                        env=env))


async def test_mcp_tools_drive_a_page_and_leases_end_with_the_client(settings: Settings
                                                                      ) -> None:
    """open_browser, navigate, computer, screenshot and close_browser work over stdio;
    a browser left open is released when the client disconnects."""
    small = settings.replace(width=640, height=480, audio=False, max_instances=2,
                             acquire_timeout=30)
    async with serve_pages({"/form": FORM, "/red": solid("rgb(255,0,0)")}) as site, \
            run_server(small) as server:
        async with client_of(server.base) as client:
            sid = await open_red_then_form(client, site)
            result = await client.call_tool("computer", {"session_id": sid, "actions": [
                {"action": "left_click", "coordinate": [100, 25]},
                {"action": "type", "text": "Hi MCP!"}]})
            assert image(result).shape == (480, 640, 3)
            page = server.pool.get(sid).page
            assert await page.evaluate("document.getElementById('t').value") == "Hi MCP!"
            bad = await client.call_tool("computer", {"session_id": sid, "actions": [
                {"action": "left_click", "coordinate": [5000, 5]}]})
            assert bad.is_error and "actions[0] (left_click): coordinate" in \
                bad.content[0].text
            closed = await client.call_tool("close_browser", {"session_id": sid})
            assert not closed.is_error and not server.pool.list()
            kept = await client.call_tool("open_browser", {"url": f"{site}/red"})
            assert not kept.is_error and len(server.pool.list()) == 1
        await wait_until(lambda: not server.pool.list(), timeout=20,
                         what="the client's lease to end")


async def test_mcp_with_its_own_pool_cleans_up_when_the_client_leaves(profile_dir) -> None:
    """Without --server, `lkpool mcp` runs a pool of its own: a browser opens, its image
    comes back, and once the client is gone no browser, profile or segment is left (the
    shared leak check runs after this test)."""
    env = dict(os.environ, PYTHONPATH=os.getcwd(), NUM_WARM="1", MAX_INSTANCES="1",
               AUDIO="false", CHROMIUM_PROFILE_BASE_DIR=str(profile_dir))
    params = StdioServerParameters(command=sys.executable, args=["-m", "lkpool", "mcp"],
                                   env=env)
    async with serve_pages({"/red": solid("rgb(255,0,0)")}) as site, Client(params) as client:
        opened = await client.call_tool("open_browser", {"url": f"{site}/red", "width": 320,
                                                         "height": 240})
        assert not opened.is_error, opened
        sid = json.loads(opened.content[0].text)["session_id"]
        shot = image(await client.call_tool("screenshot", {"session_id": sid}))
        assert shot.shape == (240, 320, 3) and tuple(shot[120, 160]) == (255, 0, 0)
    await wait_until(lambda: not list(profile_dir.iterdir()), timeout=20,
                     what="the pool's profiles to go")
