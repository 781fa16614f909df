"""Fixtures for the child tests: one instance shared per module (Chromium starts are the
expensive part), its page created before any test so its buffers are not a test's leak."""

from __future__ import annotations

import pytest
import pytest_asyncio

from lkpool.config import Settings
from tests.proc.harness import ChildHarness
from tests.support.pages import ALLOW_HOST_PORTS, ANIMATED, CLICKS, TONE, serve_pages, solid

CURSOR = """<html><body style='margin:0'>
<div style='position:absolute;left:0;top:0;width:100px;height:100px;cursor:pointer'></div>
<div style='position:absolute;left:150px;top:0;width:100px;height:100px;cursor:text'></div>
</body></html>"""
HASH = "<html><body><a id=a href='#part2'>x</a></body></html>"

PAGES = {"/red": solid("rgb(255,0,0)"), "/blue": solid("rgb(0,0,255)"),
         "/green": solid("rgb(0,255,0)"), "/anim": ANIMATED, "/clicks": CLICKS,
         "/tone": TONE, "/cursor": CURSOR, "/hash": HASH}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site():
    async with serve_pages(PAGES) as base:
        yield base


def module_settings(tmp_path_factory: pytest.TempPathFactory, **kw) -> Settings:
    base = tmp_path_factory.mktemp("proc-profiles")
    return Settings(allow_host_ports=ALLOW_HOST_PORTS, chromium_profile_base_dir=str(base), **kw)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def x11(tmp_path_factory, site):
    """One x11 instance with page 1 (320x240 at 30 fps) on the red page."""
    async with ChildHarness(module_settings(tmp_path_factory, capture="x11")) as h:
        await h.new_page(site + "/red", 320, 240, 30)
        yield h


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def screencast(tmp_path_factory, site):
    """One screencast instance (no audio) with page 1 (320x240 at 30 fps) on the blue page."""
    settings = module_settings(tmp_path_factory, capture="screencast", audio=False)
    async with ChildHarness(settings) as h:
        await h.new_page(site + "/blue", 320, 240, 30)
        yield h
