"""Fixtures of the agent tests: one real instance per module, and the pages they drive.

livekit-plugins-browser imports `livekit.browser` (the CEF bindings, from PyPI) at import
time; importing it needs no CEF binaries (they are only looked for when a CEF context
starts), so the plugin's PageActions, BrowserSession and the Anthropic ComputerTool run
here against lkpool pages as they are, with no stand-in.
"""

from __future__ import annotations

import pytest_asyncio

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
