"""BrowserContext / BrowserPage, the public API, on a real Chromium through a real child."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import numpy as np
import psutil
import pytest
import pytest_asyncio

from lkpool import BrowserContext, PaintData, Settings
from lkpool.errors import (
    BrowserStartError,
    ClosedError,
    InstanceCrashed,
    InvalidArgument,
    NavigationError,
    PageError,
    RequestTimeout,
)
from tests.support.pages import ALLOW_HOST_PORTS, CLICKS, serve_pages, solid

pytestmark = pytest.mark.asyncio(loop_scope="module")


BROWSER_UI = """<body style='margin:0;background:rgb(0,0,255)'>
<input id=f type=file style='position:absolute;left:0;top:0;width:100px;height:40px'></body>"""
OPENER = """<body style='margin:0;background:rgb(0,255,0)'>
<button style='position:absolute;left:0;top:0;width:100px;height:50px'
 onclick="window.popup = window.open('/popup', '_blank')">open</button></body>"""
DIALOGS = """<body style='margin:0'>
<button style='position:absolute;left:0;top:0;width:100px;height:50px'
 onclick="window.r = confirm('sure?')">c</button>
<button style='position:absolute;left:0;top:60px;width:100px;height:50px'
 onclick="window.r = prompt('name?', 'x')">p</button></body>"""
MOVES = """<body style='margin:0'><script>window.log = [];
addEventListener('mousemove', e => log.push(e.clientX));
addEventListener('mousedown', e => log.push('down'));</script></body>"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site():
    async with serve_pages({"/clicks": CLICKS, "/green": solid("rgb(0,255,0)"),
                            "/titled": "<title>hi there</title><body>x</body>",
                            "/moves": MOVES, "/dialogs": DIALOGS, "/opener": OPENER,
                            "/popup": solid("rgb(255,0,0)"), "/chrome": BROWSER_UI}) as base:
        yield base


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory):
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path_factory.mktemp("profiles")))
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        yield ctx


async def next_paint(page, timeout: float = 15.0) -> PaintData:
    fut = asyncio.get_running_loop().create_future()
    page.on("paint", lambda d: fut.done() or fut.set_result(
        (d, np.frombuffer(bytes(d.frame.data), np.uint8).reshape(d.height, d.width, 4))),
        temporary=True)
    return await asyncio.wait_for(fut, timeout)


async def test_known_colour_frame_at_page_size(ctx, site) -> None:
    """A green page paints BGRA frames of that green at the page's size; a still page paints
    no more, so its current image is `last_frame`."""
    page = await ctx.new_page(url=f"{site}/green", width=320, height=240, framerate=30)
    try:
        for _ in range(50):
            frame = page.last_frame
            if frame is not None:
                pixels = np.frombuffer(bytes(frame.data), np.uint8).reshape(240, 320, 4)
                if pixels[120, 160].tolist() == [0, 255, 0, 255]:
                    break
            await asyncio.sleep(0.1)
        assert frame.width == 320 and frame.height == 240
        assert pixels[120, 160].tolist() == [0, 255, 0, 255]
        assert page.frames > 0
        await page.evaluate("document.body.style.background = 'rgb(0,0,255)'")
        for _ in range(30):
            data, pixels = await next_paint(page)
            if pixels[120, 160].tolist() == [255, 0, 0, 255]:
                break
        assert (data.width, data.height) == (320, 240)
        assert pixels[120, 160].tolist() == [255, 0, 0, 255]  # blue, in BGRA
    finally:
        await page.aclose()


async def test_click_type_and_press(ctx, site) -> None:
    """A click lands at (x, y), typed text lands in the input, Control+a selects it."""
    page = await ctx.new_page(url=f"{site}/clicks", width=320, height=240)
    try:
        await page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                            "addEventListener('load', r))")
        await page.click(150, 160)
        assert await page.evaluate("window.clicks") == [[150, 160]]
        await page.click(20, 15)
        await page.type("Hello, World!")
        assert await page.evaluate("document.getElementById('t').value") == "Hello, World!"
        await page.press("Control+a")
        await page.press("Backspace")
        assert await page.evaluate("document.getElementById('t').value") == ""
    finally:
        await page.aclose()


async def test_input_is_posted_in_order_with_back_pressure(ctx, site, monkeypatch) -> None:
    """An input call returns once its event is on its way, not once the page handled it
    (livekit.browser's calls do the same): while the page's main thread is busy, moves are
    sent and wait in Chromium, beyond MAX_POSTED the next one waits, and the page then
    handles them in order, the click that followed last. `click` returns once handled."""
    from lkpool import connection

    monkeypatch.setattr(connection, "MAX_POSTED", 4)
    page = await ctx.new_page(url=f"{site}/moves", width=320, height=240)
    try:
        await page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                            "addEventListener('load', r))")
        await page.evaluate("setTimeout(() => { const t = Date.now(); "
                            "while (Date.now() - t < 3000); }, 0)")
        await asyncio.sleep(0.2)  # the page is now busy for the next three seconds
        for x in (10, 20, 30, 40):
            await page.send_mouse_move(x, 50)
        assert len(ctx._connection.posted) == 4  # sent, and none handled yet
        with pytest.raises(RequestTimeout):
            await page.input_handled(timeout=0.2)
        fifth = asyncio.ensure_future(page.send_mouse_move(50, 50))
        await asyncio.sleep(0.3)
        assert not fifth.done()  # back-pressure: it waits for the oldest to be handled
        await page.click(100, 60)
        await page.input_handled()
        assert fifth.done() and not ctx._connection.posted
        log = await page.evaluate("window.log")
        moves = [x for x in log if x != "down"]
        assert log[-1] == "down" and moves[-1] == 100
        assert moves == sorted(moves) and set(moves) <= {10, 20, 30, 40, 50, 100}
    finally:
        await page.aclose()


async def test_screencast_of_a_page_made_at_about_blank(tmp_path) -> None:
    """The pool makes its warm pages at about:blank. In screencast mode, Chromium refuses a
    screencast while the fresh tab still commits its start-up about:blank; the capture
    retries, so the page paints once its content changes."""
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"), audio=False,
                        capture="screencast")
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        page = await ctx.new_page(url="about:blank", width=320, height=240)
        assert ctx.capture == "screencast"
        await page.evaluate("document.body.style.background = 'rgb(0,0,255)'")
        pixel = None
        for _ in range(100):  # a still page paints once: its image is then last_frame
            frame = page.last_frame
            if frame is not None:
                pixels = np.frombuffer(bytes(frame.data), np.uint8).reshape(240, 320, 4)
                pixel = pixels[120, 160].tolist()[:3]
                if _near(pixel, [255, 0, 0]):  # BGRA: blue, through JPEG
                    break
            await asyncio.sleep(0.1)
        assert pixel is not None and _near(pixel, [255, 0, 0]), (pixel, page.frames)


def _near(got: list[int], want: list[int], tolerance: int = 4) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=False))


async def test_javascript_dialogs(ctx, site) -> None:
    """A click that opens a dialog returns once it opened (the page's scripts are paused,
    so it would otherwise wait until someone answers); the dialog is an event and
    `page.dialog`, answered with handle_dialog; answering none is a PageError."""
    page = await ctx.new_page(url=f"{site}/dialogs", width=320, height=240)
    try:
        seen = []
        page.on("dialog_opened", seen.append)
        page.on("dialog_closed", lambda accepted: seen.append(("closed", accepted)))
        await page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                            "addEventListener('load', r))")
        await page.click(50, 25)
        assert page.dialog is not None
        assert (page.dialog.kind, page.dialog.message) == ("confirm", "sure?")
        await page.handle_dialog(accept=False)
        assert page.dialog is None and await page.evaluate("window.r") is False
        await page.click(50, 85)
        assert page.dialog.default_prompt == "x"
        await page.handle_dialog(accept=True, prompt_text="Ada")
        assert await page.evaluate("window.r") == "Ada"
        assert [d.kind for d in seen if not isinstance(d, tuple)] == ["confirm", "prompt"]
        for _ in range(50):  # Chromium's closing event may trail the answer a little
            if ("closed", True) in seen:
                break
            await asyncio.sleep(0.05)
        assert ("closed", False) in seen and ("closed", True) in seen
        with pytest.raises(PageError):
            await page.handle_dialog()
    finally:
        await page.aclose()


async def test_a_popup_does_not_take_the_screen(ctx, site) -> None:
    """A page the leased page opens (window.open) comes up over it on the X screen; the
    leased page is brought back in front, so the frames show the page input goes to."""
    if ctx.capture != "x11":
        pytest.skip("only the x11 capture shows a screen that a popup can cover")
    page = await ctx.new_page(url=f"{site}/opener", width=320, height=240)
    try:
        await page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                            "addEventListener('load', r))")
        before = page.frames
        await page.click(50, 25)
        assert await page.evaluate("!!window.popup && !window.popup.closed")
        pixel = None
        for _ in range(60):
            await asyncio.sleep(0.1)
            frame = page.last_frame
            if page.frames > before and frame is not None:
                pixels = np.frombuffer(bytes(frame.data), np.uint8).reshape(240, 320, 4)
                pixel = pixels[200, 250].tolist()[:3]
                if pixel == [0, 255, 0] and page.frames > before + 1:
                    break
        assert pixel == [0, 255, 0], (pixel, page.frames - before)  # green, not the red popup
        await page.evaluate("window.popup.close()")
    finally:
        await page.aclose()


async def test_browser_ui_never_covers_the_page_or_waits(ctx, site) -> None:
    """What Chromium would show as its own UI, which CDP input cannot reach, does not stop
    the page: a permission prompt is denied, window.print() returns, and a file input opens
    no chooser over the page (it would show the host's folders to whoever watches)."""
    page = await ctx.new_page(url=f"{site}/chrome", width=320, height=240)
    try:
        await page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : "
                            "addEventListener('load', r))")
        assert await page.evaluate("Notification.requestPermission()", timeout=10) == "denied"
        assert await page.evaluate("window.print(); 'printed'", timeout=10) == "printed"
        await page.click(50, 20)  # the file input
        await asyncio.sleep(1.0)  # a chooser would be on the screen by now
        frame = page.last_frame
        pixels = np.frombuffer(bytes(frame.data), np.uint8).reshape(240, 320, 4)
        assert pixels[180, 250].tolist()[:3] == [255, 0, 0]  # the page's blue, in BGRA
        assert await page.evaluate("document.getElementById('f').files.length", timeout=10) == 0
    finally:
        await page.aclose()


async def test_navigation_events_and_errors(ctx, site) -> None:
    """url_changed and title_changed fire on navigation; an unreachable URL raises."""
    page = await ctx.new_page(url="about:blank", width=320, height=240)
    try:
        urls, titles = [], []
        page.on("url_changed", urls.append)
        page.on("title_changed", titles.append)
        await page.navigate(f"{site}/titled")
        for _ in range(100):
            if "hi there" in titles and urls:
                break
            await asyncio.sleep(0.05)
        assert f"{site}/titled" in urls
        assert "hi there" in titles and page.title == "hi there"
        with pytest.raises(NavigationError):
            await page.navigate("http://127.0.0.1:1/")
    finally:
        await page.aclose()


async def test_resize_changes_frame_size(ctx, site) -> None:
    """After resize, paints arrive at the new size."""
    page = await ctx.new_page(url=f"{site}/green", width=320, height=240)
    try:
        await page.resize(400, 300)
        for _ in range(30):
            data, _ = await next_paint(page)
            if (data.width, data.height) == (400, 300):
                break
        assert (data.width, data.height) == (400, 300)
        assert (page.width, page.height) == (400, 300)
    finally:
        await page.aclose()


async def test_bad_arguments_raise(ctx) -> None:
    """Sizes, framerates and buttons out of range are InvalidArgument before reaching Chromium."""
    with pytest.raises(InvalidArgument, match="width"):
        await ctx.new_page(url="about:blank", width=5000, height=100)
    with pytest.raises(InvalidArgument, match="framerate"):
        await ctx.new_page(url="about:blank", width=100, height=100, framerate=0)
    page = await ctx.new_page(url="about:blank", width=100, height=100)
    try:
        with pytest.raises(InvalidArgument):
            await page.send_mouse_click(1, 1, button=7)
        with pytest.raises(InvalidArgument):
            await page.press("NoSuchKey")
        with pytest.raises(InvalidArgument):
            await page.set_framerate(61)
    finally:
        await page.aclose()
    with pytest.raises(ClosedError):
        await page.navigate("about:blank")


async def test_playwright_sees_the_same_page(ctx, site) -> None:
    """playwright() connects over CDP and evaluates in the page we render."""
    page = await ctx.new_page(url=f"{site}/titled", width=320, height=240)
    try:
        await page.evaluate("window.marker = 42")
        async with ctx.playwright() as browser:
            pw_pages = [pg for c in browser.contexts for pg in c.pages]
            values = [await pg.evaluate("window.marker || null") for pg in pw_pages]
            assert 42 in values
    finally:
        await page.aclose()


async def test_sigkill_of_chromium_fails_pending_calls(tmp_path, site) -> None:
    """Killing Chromium fails a pending call with InstanceCrashed and the context cleans up."""
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"))
    ctx = BrowserContext(dev_mode=False, settings=settings)
    await ctx.initialize()
    try:
        page = await ctx.new_page(url=f"{site}/green", width=200, height=200)
        reasons = []
        ctx.on("closed", reasons.append)
        pending = asyncio.create_task(page.evaluate("new Promise(() => {})", timeout=60))
        await asyncio.sleep(0.3)
        os.kill(ctx.browser_pid, signal.SIGKILL)
        with pytest.raises(InstanceCrashed):
            await asyncio.wait_for(pending, 30)
        assert await ctx.wait_closed(30) == "crashed"
        assert reasons == ["crashed"] and page.closed and not ctx.alive
        with pytest.raises(InstanceCrashed):
            await page.navigate("about:blank") if not page.closed else await ctx.ping()
    finally:
        await ctx.aclose()
        await ctx.aclose()


async def test_missing_chromium_is_a_clear_error(tmp_path) -> None:
    """A missing binary names itself and what to install; nothing is left behind."""
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"),
                        chromium_path="/nonexistent/chromium")
    ctx = BrowserContext(dev_mode=False, settings=settings)
    with pytest.raises(BrowserStartError, match="apt-get install"):
        await ctx.initialize()
    with pytest.raises(ClosedError):
        await ctx.initialize()


async def test_cancelled_start_leaves_nothing(tmp_path) -> None:
    """Cancelling initialize() part-way stops the half-started child; nothing is left (a start
    that won the race is simply closed)."""
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"))
    for delay in (0.0, 0.05, 0.3):
        ctx = BrowserContext(dev_mode=False, settings=settings)
        task = asyncio.create_task(ctx.initialize())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            assert not ctx.alive and ctx.closed_reason == "start_failed"
        finally:
            await ctx.aclose()
        assert not ctx.alive


async def test_audio_is_read_only_while_someone_listens(ctx, site) -> None:
    """No audio reader runs for a page nobody listens to; the first `audio` listener starts
    one, removing the last stops it."""
    def readers() -> list[psutil.Process]:
        return [c for c in psutil.Process(ctx.pid).children() if c.name() == "parec"]

    async def until(done) -> None:
        for _ in range(100):
            if done():
                return
            await asyncio.sleep(0.05)

    page = await ctx.new_page(url=f"{site}/green", width=200, height=200)
    try:
        assert readers() == []
        first = page.on("audio", lambda _: None)
        second = page.on("audio", lambda _: None)
        await until(readers)
        assert len(readers()) == 1
        page.off(first)
        await asyncio.sleep(0.3)
        assert len(readers()) == 1
        page.off(second)
        await until(lambda: not readers())
        assert readers() == []
    finally:
        await page.aclose()


async def test_page_exposes_its_cdp_target(ctx, site) -> None:
    """page.target_id names the CDP target the page renders, as /json/list shows it."""
    page = await ctx.new_page(url=f"{site}/green", width=200, height=200)
    try:
        import aiohttp
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(
                f"http://127.0.0.1:{ctx.remote_debugging_port}/json/list")).json()
        assert page.target_id in {t["id"] for t in targets}
    finally:
        await page.aclose()


async def _pixel_at(page, x: int, y: int, want: list[int], size: tuple[int, int]) -> list[int]:
    """The page's current pixel at (x, y) once the frame has `size` and that colour (or the
    last seen after a few seconds)."""
    got: list[int] = []
    for _ in range(60):
        frame = page.last_frame
        if frame is not None and (frame.width, frame.height) == size:
            got = np.frombuffer(bytes(frame.data), np.uint8).reshape(size[1], size[0], 4)[
                y, x].tolist()
            if all(abs(a - b) <= 3 for a, b in zip(got, want, strict=False)):
                return got
        await asyncio.sleep(0.1)
    return got


async def test_page_larger_than_the_x11_screen(tmp_path, site) -> None:
    """A page larger than Xvfb's screen is still rendered (by screencast), and resizing it to
    fit the screen and back keeps the frames right at each size."""
    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"), audio=False)
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        page = await ctx.new_page(url=f"{site}/green", width=2560, height=1440)
        for size, css, bgra in [((2560, 1440), None, [0, 255, 0, 255]),
                                ((640, 360), "rgb(0,0,255)", [255, 0, 0, 255]),
                                ((3000, 2000), "rgb(255,0,0)", [0, 0, 255, 255])]:
            await page.resize(*size)
            if css:
                await page.evaluate(f"document.body.style.background = '{css}'")
            got = await _pixel_at(page, size[0] - 60, size[1] - 40, bgra, size)
            assert got and all(abs(a - b) <= 3
                               for a, b in zip(got, bgra, strict=False)), (size, got)


async def test_instances_outlive_the_forkserver(tmp_path) -> None:
    """Children are forked by multiprocessing's forkserver and watch the context's process,
    not their parent: killing the forkserver ends no instance, and the next one gets a new
    forkserver."""
    from multiprocessing import forkserver

    import psutil

    settings = Settings(allow_host_ports=ALLOW_HOST_PORTS,
                        chromium_profile_base_dir=str(tmp_path / "profiles"), audio=False,
                        capture="screencast")
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        server = forkserver._forkserver._forkserver_pid
        assert server and psutil.Process(ctx.pid).ppid() == server
        assert psutil.Process(ctx.pid).name() == "lkpool-child"  # as ps and top show it
        os.kill(server, signal.SIGKILL)
        await asyncio.sleep(2.0)  # the child's watchdog sees its parent's pidfd at once
        assert ctx.alive
        await ctx.ping()
        async with BrowserContext(dev_mode=False, settings=settings) as other:
            await other.ping()
            assert forkserver._forkserver._forkserver_pid not in (None, server)


UNGUARDED_SCRIPT = """
import asyncio, os, sys
from lkpool import BrowserContext, Settings
with open(sys.argv[1], "a") as runs:  # top-level code: no __main__ guard around any of it
    runs.write(f"{os.getpid()}\\n")
async def main():
    settings = Settings(chromium_profile_base_dir=sys.argv[2], audio=False)
    async with BrowserContext(settings=settings) as ctx:
        page = await ctx.new_page(url="about:blank", width=320, height=240)
        print("title", repr(await page.evaluate("document.title = 'up'")))
asyncio.run(main())
"""


async def test_a_script_needs_no_main_guard(tmp_path) -> None:
    """multiprocessing makes every child import the parent's `__main__`; ours do not, so a
    script written for livekit.browser (no guard) runs as it is, and its top-level code
    runs once, not once more per instance."""
    script, runs = tmp_path / "agent.py", tmp_path / "runs"
    script.write_text(UNGUARDED_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(runs), str(tmp_path / "profiles"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "title 'up'" in out.decode()
    assert runs.read_text().split() == [str(proc.pid)]


@pytest.mark.parametrize("end", ["close", "child killed"])
async def test_the_end_removes_chromiums_singleton_folder(tmp_path, end) -> None:
    """Chromium keeps its process-singleton socket in a folder of its own in /tmp, linked
    from the profile; its browser is killed with the group, so lkpool removes the folder
    with the profile, whether the context was closed or its child died. (Without the
    sandbox: a sandboxed Chromium's /tmp is its own, see the next test.)"""
    settings = Settings(sandbox=False, chromium_profile_base_dir=str(tmp_path / "profiles"),
                        audio=False, capture="screencast")
    ctx = BrowserContext(dev_mode=False, settings=settings)
    await ctx.initialize()
    try:
        link = os.readlink(os.path.join(ctx.profile_dir, "SingletonSocket"))
        folder = os.path.dirname(link)
        assert os.path.basename(folder).startswith("org.chromium.Chromium.")
        assert os.path.isdir(folder)
        if end == "child killed":
            os.kill(ctx.pid, signal.SIGKILL)
            for _ in range(100):
                if not ctx.alive:
                    break
                await asyncio.sleep(0.1)
    finally:
        await ctx.aclose()
    assert not os.path.exists(ctx.profile_dir)
    assert not os.path.exists(folder)


async def test_a_sandboxed_chromium_leaves_nothing_in_the_hosts_tmp(tmp_path) -> None:
    """A sandboxed Chromium's /tmp is private: its singleton folder is not in the host's."""
    settings = Settings(chromium_profile_base_dir=str(tmp_path / "profiles"), audio=False,
                        capture="screencast")
    async with BrowserContext(dev_mode=False, settings=settings) as ctx:
        folder = os.path.dirname(os.readlink(os.path.join(ctx.profile_dir, "SingletonSocket")))
        assert os.path.basename(folder).startswith("org.chromium.Chromium.")
        assert not os.path.exists(folder)
