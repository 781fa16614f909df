"""The engine table and the cef engine, driven through livekit.browser's own code.

This machine has no CEF binaries (and no internet to fetch them), so the cef tests put a
stand-in for the native `lkcef_python` module (tests/cef_standin/) where livekit.browser looks
for the binaries. Everything else is real: livekit.browser's parent (proc.py) spawns its child
(proc_main.py) with the spawn start method, they talk over a real socketpair with its protocol
(proto.py), and paints travel through real shared memory.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from lkpool import engines, errors
from lkpool.config import Engine
from tests.support.cef import cef_settings


async def next_paint(page, predicate, timeout: float = 10.0):
    """The first paint whose BGRA pixel at (0, 0) satisfies `predicate`, copied."""
    fut = asyncio.get_running_loop().create_future()

    def on_paint(data):
        px = tuple(np.frombuffer(data.frame.data, np.uint8, count=4))
        if not fut.done() and predicate(px):
            fut.set_result((px, data.width, data.height))

    cb = page.on("paint", on_paint)
    try:
        return await asyncio.wait_for(fut, timeout)
    finally:
        page.off(cb)


def read_inputs(res: Path) -> list[list]:
    log = res / "input.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_engine_table_matches_the_settings_choices():
    """Every ENGINE value Settings accepts has an entry in the table, and nothing else."""
    assert set(engines.ENGINES) == set(get_args(Engine)) == set(engines.CHECKS)


def test_cef_without_binaries_fails_at_start_up_naming_the_script(no_cef, settings):
    """ENGINE=cef with no binaries raises EngineError that says to run download_cef.py."""
    with pytest.raises(errors.EngineError, match=r"scripts/download_cef\.py"):
        engines.check(cef_settings(settings))
    with pytest.raises(errors.EngineError, match="binaries are missing"):
        engines.create_context(cef_settings(settings))


async def test_cef_engine_paints_navigates_and_takes_input(cef_standin, settings):
    """Through engines.create_context: livekit.browser's child paints a known colour into
    shared memory, navigation, input and a resize cross the socket, aclose leaves nothing."""
    ctx = engines.create_context(cef_settings(settings))
    closed = []
    ctx.on("closed", closed.append)
    await ctx.initialize()
    assert ctx.alive and ctx.remote_debugging_port > 0 and ctx.pid
    await ctx.ping()
    page = await ctx.new_page(url="about:blank#ff0000", width=160, height=120, framerate=30)
    px, w, h = await next_paint(page, lambda px: True)
    assert (px, w, h) == ((0, 0, 255, 255), 160, 120)  # red in BGRA

    urls = []
    page.on("url_changed", urls.append)
    await page.navigate("about:blank#00ff00")
    px, _, _ = await next_paint(page, lambda px: px == (0, 255, 0, 255))
    assert urls == ["about:blank#00ff00"] and page.url == "about:blank#00ff00"

    await page.click(5, 6, button="right")
    await page.type("a")
    await ctx.ping()  # the socket is ordered: input sent before now has been handled soon
    for _ in range(50):
        if len(read_inputs(cef_standin)) >= 5:
            break
        await asyncio.sleep(0.1)
    inputs = read_inputs(cef_standin)
    assert inputs[:3] == [["mouse_move", 5, 6, False], ["mouse_click", 5, 6, 2, False, 1],
                          ["mouse_click", 5, 6, 2, True, 1]]
    assert ["key", 3, 0, 65, 0, ord("a")] in inputs  # the CHAR event that types 'a'

    # livekit.browser cannot resize: the adapter makes a new page at the size, same URL
    await page.resize(320, 240)
    # a new listener gets the current frame first (livekit's consumers rely on it), and
    # the adapter's new page may not have painted yet: wait for the new size
    for _ in range(50):
        px, w, h = await next_paint(page, lambda px: True)
        if w == 320:
            break
        await asyncio.sleep(0.1)
    assert (px, w, h, page.width) == ((0, 255, 0, 255), 320, 240, 320)
    with pytest.raises(errors.InvalidArgument):
        await page.resize(0, 240)

    await ctx.aclose()
    await ctx.aclose()  # idempotent
    assert not ctx.alive and ctx.closed_reason == "closed" and closed == ["closed"]
    assert page.closed
    with pytest.raises(errors.ClosedError):
        await page.navigate("about:blank")


async def test_cef_child_death_ends_the_instance_as_crashed(cef_standin, settings):
    """Killing livekit.browser's child emits closed("crashed"); ping fails; aclose cleans up."""
    ctx = engines.create_context(cef_settings(settings))
    await ctx.initialize()
    page = await ctx.new_page(url="about:blank", width=64, height=64, framerate=10)
    os.kill(ctx.pid, 9)
    assert await ctx.wait_closed(timeout=10) == "crashed"
    assert page.closed and page.close_reason == "crashed"
    with pytest.raises(errors.InstanceCrashed):
        await ctx.ping()
    await ctx.aclose()


async def test_pool_leases_cef_pages_at_any_size(cef_standin, settings):
    """lkpool's Pool on ENGINE=cef: a lease asking for another size and a URL gets a page
    painting that URL's colour at that size; closing the pool leaves nothing behind."""
    from lkpool.pool import Pool

    s = cef_settings(settings).replace(num_warm=1, max_instances=1, width=160, height=120)
    async with Pool(s) as pool:
        await pool.wait_ready()
        async with pool.lease(30, url="about:blank#0000ff", width=200, height=100) as lease:
            px, w, h = await next_paint(lease.page, lambda px: px == (255, 0, 0, 255))
            assert (w, h) == (200, 100) and lease.context.capture == "cef"


async def test_cef_context_closed_while_starting_leaves_nothing(cef_standin, settings):
    """aclose during initialize (the pool shutting down under a starting instance) ends the
    start at once: initialize raises, closed is reported, and nothing is left running."""
    ctx = engines.create_context(cef_settings(settings))
    starting = asyncio.ensure_future(ctx.initialize())
    while ctx._proc is None:  # the child is spawned: the start is under way
        await asyncio.sleep(0.01)
    await ctx.aclose()
    with pytest.raises((errors.BrowserStartError, asyncio.CancelledError)):
        await starting
    assert not ctx.alive and ctx.closed_reason == "closed"
    assert await ctx.wait_closed(timeout=1) == "closed"
