"""Fixtures of the agent tests: one real instance per module, and the pages they drive.

livekit-plugins-browser imports `livekit.browser` (the CEF bindings, from PyPI) at import
time; importing it needs no CEF binaries (they are only looked for when a CEF context
starts), so the plugin's PageActions, BrowserSession and the Anthropic ComputerTool run
here against lkpool pages as they are, with no stand-in.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest_asyncio
from PIL import Image

from lkpool import BrowserContext, Settings
from tests.support.pages import ALLOW_HOST_PORTS, ANIMATED, serve_pages, solid

FORM = """<html><body style='margin:0;height:3000px;background:rgb(0,0,255)'>
<input id=t style='position:absolute;left:10px;top:10px;width:300px;height:30px'>
<script>window.keys = [];
document.addEventListener('keydown', e => window.keys.push(e.key));</script></body></html>"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site():
    async with serve_pages({"/form": FORM, "/blue": solid("rgb(0,0,255)"),
                            "/animated": ANIMATED}) as base:
        yield base


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory):
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path_factory.mktemp("profiles")))
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        yield ctx


def image(result: Any) -> np.ndarray:
    """The RGB pixels of an MCP tool result's PNG image."""
    assert not result.is_error, result
    block = result.content[0]
    assert block.type == "image" and block.mime_type == "image/png", block
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(block.data))).convert("RGB"))


async def open_red_then_form(client: Any, site: str) -> str:
    """Through an MCP client: the tools are listed, open_browser at a red page shows red,
    navigate to FORM shows its blue; the session id of the browser."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert names >= {"open_browser", "navigate", "computer", "screenshot", "close_browser"}
    opened = await client.call_tool("open_browser", {"url": f"{site}/red"})
    assert not opened.is_error, opened
    sid: str = json.loads(opened.content[0].text)["session_id"]
    assert tuple(image(await client.call_tool("screenshot", {"session_id": sid}))[240, 320]) \
        == (255, 0, 0)
    shot = image(await client.call_tool("navigate", {"session_id": sid, "url": f"{site}/form"}))
    assert tuple(shot[240, 320]) == (0, 0, 255)
    return sid
