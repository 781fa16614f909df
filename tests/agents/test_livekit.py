"""lkpool.livekit: the plugin's BrowserAgent gets its page from a Pool (a lease) instead of
starting CEF, and BrowserSession runs on a leased page. No LiveKit server is needed to
check where the page comes from."""

from __future__ import annotations

import asyncio

from livekit.plugins.browser import browser_agent

from lkpool.livekit import LeasedContext, PooledBrowserAgent
from lkpool.pool import Pool
from tests.support.pages import serve_pages, solid


async def test_agent_context_is_a_lease_only_inside_its_start(settings) -> None:
    """Inside PooledBrowserAgent.start the plugin's `BrowserContext(dev_mode=False)` is a
    LeasedContext whose new_page is a lease of the pool (released by aclose); elsewhere
    it is still livekit.browser's own class."""
    async with serve_pages({"/red": solid("rgb(255,0,0)")}) as site, \
            Pool(settings.replace(audio=False, max_instances=1, acquire_timeout=30)) as pool:
        await pool.wait_ready()
        agent = PooledBrowserAgent(pool=pool, llm=None, url=f"{site}/red", width=320,
                                   height=240)
        seen = {}

        async def fake_start(self, *, room) -> None:
            ctx = browser_agent.BrowserContext(dev_mode=False)  # what start() does first
            await ctx.initialize()
            seen["page"] = await ctx.new_page(url=self._url, width=self._width,
                                              height=self._height, framerate=30)
            seen["ctx"] = ctx

        original = browser_agent.BrowserAgent.start
        browser_agent.BrowserAgent.start = fake_start  # the plugin's start needs a room
        try:
            await agent.start(room=None)
        finally:
            browser_agent.BrowserAgent.start = original
        ctx, page = seen["ctx"], seen["page"]
        assert isinstance(ctx, LeasedContext) and len(pool.list()) == 1
        assert pool.list()[0].page is page and (page.width, page.height) == (320, 240)
        for _ in range(100):
            if page.last_frame is not None:
                break
            await asyncio.sleep(0.05)
        assert page.last_frame is not None
        await ctx.aclose()
        assert not pool.list()
        outside = browser_agent.BrowserContext(dev_mode=False)
        assert not isinstance(outside, LeasedContext)
