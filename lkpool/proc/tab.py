"""One Chromium tab driven over CDP as a flat session: navigation, input, layout size, and
the URL, title and cursor events the parent reports.

The child holds one `Page` per lkpool page; CDP errors surface as CDPError subclasses,
which `main` maps to Result codes, plus the three below.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

MOUSE_BUTTONS = {0: "left", 1: "middle", 2: "right"}
BUTTON_BITS = {"left": 1, "right": 2, "middle": 4}
# CEF's cef_key_event_type_t numbering -> CDP Input.dispatchKeyEvent type
KEY_TYPES = {0: "rawKeyDown", 1: "keyDown", 2: "keyUp", 3: "char"}
PAINTED_JS = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
# Page-controlled strings are cut here, before they cross the duplex: a page can make its
# URL (history.replaceState), title, dialog text or cursor megabytes long, many times a
# second, and each one would be copied into the parent and every input socket's queue.
MAX_URL = 16 * 1024
MAX_TITLE = 1024
MAX_DIALOG_TEXT = 4096
MAX_CURSOR = 256


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (a cut one ends with an ellipsis)."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


CURSOR_JS = ("(() => {{ const e = document.elementFromPoint({x}, {y}); "
             "return e ? getComputedStyle(e).cursor : 'auto'; }})()")


class PageGone(Exception):
    """The page's target is closed; every command on it fails with no_such_page."""


class Page:
    """One CDP target attached as a flat session. Commands raise CDPError subclasses;
    `main` maps them to Result codes. Events go to `emit(kind, value)`."""

    def __init__(self, cdp, page_id: int, target_id: str, session_id: str, emit) -> None:
        self.cdp = cdp
        self.id = page_id
        self.target_id = target_id
        self.session = session_id
        self.emit = emit  # emit("url" | "title" | "cursor" | "closed", value)
        self.url = ""
        self.title = ""
        self.cursor = "auto"
        self.main_frame = ""
        self.closed = False
        self._buttons = 0
        self._cursor_task: asyncio.Task | None = None
        self._title_task: asyncio.Task | None = None
        self._listeners = [
            cdp.on("Page.frameNavigated", self._on_frame_navigated),
            cdp.on("Page.navigatedWithinDocument", self._on_same_document),
            cdp.on("Target.targetInfoChanged", self._on_target_info),
            # Chromium reports a <title> parsed after commit in no event: ask at these points
            cdp.on("Page.domContentEventFired", self._on_document_event),
            cdp.on("Page.loadEventFired", self._on_document_event),
            cdp.on("Page.javascriptDialogOpening", self._on_dialog(True)),
            cdp.on("Page.javascriptDialogClosed", self._on_dialog(False)),
        ]
        # an alert()/confirm()/prompt() blocks the page's scripts until someone answers it:
        # the page is waiting, not stuck, and the health probe must tell the two apart
        self._dialog = asyncio.Event()  # set while a dialog is open

    @classmethod
    async def attach(cls, cdp, page_id: int, target_id: str, emit) -> Page:
        res = await cdp.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        page = cls(cdp, page_id, target_id, res["sessionId"], emit)
        await page.call("Page.enable")
        await page.call("Page.setLifecycleEventsEnabled", {"enabled": True})
        # an <input type=file> would open the toolkit's file chooser on the X screen: over
        # the page, out of reach of CDP input, showing the host's folders to whoever
        # watches. Intercepted, no chooser opens (clients set files with
        # DOM.setFileInputFiles, as Playwright's setInputFiles does)
        await page.call("Page.setInterceptFileChooserDialog", {"enabled": True})
        tree = await page.call("Page.getFrameTree")
        page.main_frame = tree["frameTree"]["frame"]["id"]
        return page

    async def call(self, method: str, params: dict | None = None, timeout: float = 15.0):
        if self.closed:
            raise PageGone(f"page {self.id} is closed")
        return await self.cdp.send(method, params, session_id=self.session, timeout=timeout)

    def detach_listeners(self) -> None:
        for cb_id in self._listeners:
            self.cdp.off(cb_id)
        self._listeners = []

    def mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.detach_listeners()
            self.emit("closed", reason)

    # -- events --
    def _set_url(self, url: str) -> None:
        url = clip(url, MAX_URL)
        if url and url != self.url:
            self.url = url
            self.emit("url", url)

    def _on_frame_navigated(self, params: dict, session_id: str | None) -> None:
        frame = params.get("frame", {})
        if session_id == self.session and not frame.get("parentId"):
            self.main_frame = frame.get("id", self.main_frame)
            self._set_url(frame.get("url", "") + frame.get("urlFragment", ""))

    def _on_same_document(self, params: dict, session_id: str | None) -> None:
        if session_id == self.session and params.get("frameId") == self.main_frame:
            self._set_url(params.get("url", ""))

    def _on_target_info(self, params: dict, _session: str | None) -> None:
        info = params.get("targetInfo", {})
        if info.get("targetId") == self.target_id:
            self._set_title(info.get("title", ""))

    def _set_title(self, title: str) -> None:
        title = clip(title, MAX_TITLE)
        if title != self.title:
            self.title = title
            self.emit("title", title)

    @property
    def dialog_open(self) -> bool:
        return self._dialog.is_set()

    def _on_dialog(self, is_open: bool):
        def handler(params: dict, session_id: str | None) -> None:
            if session_id == self.session:
                self._dialog.set() if is_open else self._dialog.clear()
                for key in ("message", "defaultPrompt", "url"):
                    if isinstance(params.get(key), str):
                        params[key] = clip(params[key], MAX_DIALOG_TEXT)
                self.emit("dialog_opened" if is_open else "dialog_closed", params)
        return handler

    async def handle_dialog(self, accept: bool, prompt_text: str) -> None:
        await self.call("Page.handleJavaScriptDialog", {"accept": accept,
                                                        "promptText": prompt_text})

    async def _input(self, method: str, params: dict) -> None:
        """Dispatches an input event. Chromium answers once the page handled it, but a
        handler that opens a dialog is paused until the dialog is answered: the event was
        delivered then, so the answer is not waited for (it comes, and is dropped, later)."""
        loop = asyncio.get_running_loop()
        # eager: the command is written now, so input keeps its order with other commands
        call = asyncio.Task(self.call(method, params), loop=loop, eager_start=True)
        opened = asyncio.ensure_future(self._dialog.wait())
        try:
            await asyncio.wait({call, opened}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            # an answer nobody waits for any more (a dialog opened, or we were cancelled)
            # is dropped, its error included
            call.add_done_callback(lambda f: f.cancelled() or f.exception())
        if call.done():
            call.result()

    def _on_document_event(self, _params: dict, session_id: str | None) -> None:
        if session_id != self.session or self.closed:
            return
        if self._title_task is None or self._title_task.done():
            self._title_task = asyncio.get_running_loop().create_task(self._refresh_title())

    async def _refresh_title(self) -> None:
        try:
            res = await self.cdp.send("Target.getTargetInfo", {"targetId": self.target_id})
        except Exception:  # the page closed meanwhile: nothing to report
            return
        self._set_title(res.get("targetInfo", {}).get("title", ""))

    # -- navigation --
    async def navigate(self, url: str, load_timeout: float = 10.0) -> None:
        """Answers once the new document fired `load` (as Playwright's goto does), so the
        caller's next input meets the page's scripts. The load is matched by loaderId: a
        late load of the previous document (an error page, say) does not count. A page that
        never finishes loading is not an error; the wait just ends after `load_timeout`."""
        loaded: set[str] = set()
        seen = asyncio.Event()

        def on_lifecycle(params: dict, session_id: str | None) -> None:
            if session_id == self.session and params.get("name") == "load":
                loaded.add(params.get("loaderId", ""))
                seen.set()

        listener = self.cdp.on("Page.lifecycleEvent", on_lifecycle)
        try:
            res = await self.call("Page.navigate", {"url": url})
            if res.get("errorText"):
                raise NavigationFailed(f"{url}: {res['errorText']}")
            loader = res.get("loaderId")  # none for a same-document change
            if url == "about:blank":
                return  # committed at once; Chromium reports its load under another loader
            deadline = asyncio.get_running_loop().time() + load_timeout
            while loader and loader not in loaded:
                seen.clear()
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    await asyncio.wait_for(seen.wait(), max(0.0, remaining))
                except TimeoutError:
                    logger.info("page %d: %s still loading after %.0f s", self.id, url,
                                load_timeout)
                    break
            if loader:
                await self._painted()
        finally:
            self.cdp.off(listener)

    async def _painted(self) -> None:
        """Waits for two animation frames: Chromium ignores input to a new document until
        it has presented a frame, so without this a click right after navigate can vanish."""
        try:
            await self.call("Runtime.evaluate", {
                "expression": PAINTED_JS, "awaitPromise": True}, timeout=2.0)
        except Exception:  # a page without frames (hidden, hung) must not fail navigation
            pass

    async def history_step(self, step: int) -> None:
        """Back (-1) or forward (+1); a no-op at either end, as in a browser."""
        hist = await self.call("Page.getNavigationHistory")
        target = hist["currentIndex"] + step
        if 0 <= target < len(hist["entries"]):
            await self.call("Page.navigateToHistoryEntry",
                            {"entryId": hist["entries"][target]["id"]})

    async def reload(self) -> None:
        await self.call("Page.reload")

    async def evaluate(self, expression: str):
        res = await self.call("Runtime.evaluate", {"expression": expression,
                                                  "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            raise ScriptError(text)
        return res.get("result", {}).get("value")

    # -- input --
    async def mouse_move(self, x: int, y: int, leave: bool, modifiers: int) -> None:
        await self._input("Input.dispatchMouseEvent", {
            "type": "mouseMoved", "x": x, "y": y, "modifiers": modifiers,
            "buttons": self._buttons})
        if not leave:
            self._schedule_cursor(x, y)

    async def mouse_click(self, x: int, y: int, button: int, up: bool, count: int,
                          modifiers: int) -> None:
        name = MOUSE_BUTTONS.get(button)
        if name is None:
            raise ValueError(f"mouse button {button} is not 0 (left), 1 (middle) or 2 (right)")
        if up:
            self._buttons &= ~BUTTON_BITS[name]
        else:
            self._buttons |= BUTTON_BITS[name]
        await self._input("Input.dispatchMouseEvent", {
            "type": "mouseReleased" if up else "mousePressed", "x": x, "y": y,
            "button": name, "clickCount": max(1, count), "modifiers": modifiers,
            "buttons": self._buttons})

    async def mouse_wheel(self, x: int, y: int, dx: int, dy: int, modifiers: int) -> None:
        await self._input("Input.dispatchMouseEvent", {
            "type": "mouseWheel", "x": x, "y": y, "deltaX": dx, "deltaY": dy,
            "modifiers": modifiers})

    async def key(self, kind: int, modifiers: int, windows_code: int, native_code: int,
                  character: int, key: str, code: str, text: str) -> None:
        cdp_type = KEY_TYPES.get(kind)
        if cdp_type is None:
            raise ValueError(f"key event type {kind} is not one of 0..3")
        if not text and character and cdp_type in ("char", "keyDown"):
            text = chr(character)
        params = {"type": cdp_type, "modifiers": modifiers,
                  "windowsVirtualKeyCode": windows_code, "nativeVirtualKeyCode": native_code,
                  "key": key, "code": code}
        if text and cdp_type != "keyUp":
            params["text"] = params["unmodifiedText"] = text
        await self._input("Input.dispatchKeyEvent", params)

    async def focus(self, set_focus: bool) -> None:
        if set_focus:
            await self.call("Page.bringToFront")
            await self.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
        else:
            await self.call("Emulation.setFocusEmulationEnabled", {"enabled": False})
            await self.call("Runtime.evaluate",
                            {"expression": "document.activeElement?.blur()"})

    async def set_size(self, width: int, height: int, native: tuple[int, int] | None) -> None:
        """Lays the page out at width x height; `native` is the window's own size, where no
        emulation is needed (x11 kiosk window)."""
        if native == (width, height):
            await self.call("Emulation.clearDeviceMetricsOverride")
        else:
            await self.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # -- cursor --
    def _schedule_cursor(self, x: int, y: int) -> None:
        """Looks up the CSS cursor under the pointer after the move, off the command path;
        a newer move replaces a lookup still pending."""
        if self._cursor_task is not None and not self._cursor_task.done():
            self._cursor_task.cancel()
        self._cursor_task = asyncio.get_running_loop().create_task(self._update_cursor(x, y))

    async def _update_cursor(self, x: int, y: int) -> None:
        try:
            cursor = await self.evaluate(CURSOR_JS.format(x=int(x), y=int(y)))
        except Exception:  # the page navigated or closed meanwhile: nothing to report
            return
        if isinstance(cursor, str):
            cursor = clip(cursor, MAX_CURSOR)
        if isinstance(cursor, str) and cursor != self.cursor:
            self.cursor = cursor
            self.emit("cursor", cursor)


class NavigationFailed(Exception):
    """Page.navigate answered with an errorText."""


class ScriptError(Exception):
    """The evaluated expression threw."""
