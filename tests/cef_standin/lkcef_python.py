"""A stand-in for livekit.browser's native `lkcef_python` module (CEF off-screen rendering).

It is not a browser and does not pretend to render anything: it paints solid frames of a known
colour, which is all the CEF test needs to drive livekit.browser's real parent and child code
(proc.py, proc_main.py, proto.py): the shared memory, the socketpair and the message flow.

What it does, with the names proc_main.py uses:
- `BrowserApp(opts).run()` is the "UI thread": calls `initialized_callback`, then runs posted
  work and paints at each browser's framerate until `quit()`.
- `create_browser(url, opts)` makes a browser that paints the colour named by the URL's
  fragment (`about:blank#00ff00`, default #3366cc) as BGRA, one full-frame dirty rect, when the
  colour changes and at least once a second; `navigate(url)` repaints with the new colour and
  reports `url_changed`. When the URL has `tone` in its query it streams a 440 Hz sine
  (48 kHz stereo s16, 10 ms packets) through the audio callbacks.
- Input calls (`send_mouse_*`, `send_key_event`, ...) are appended as JSON lines to
  `input.jsonl` beside this file, so a test can see what crossed the socket.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

DEFAULT_COLOR = (0x33, 0x66, 0xCC)
LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "input.jsonl")
_ids = iter(range(1, 1 << 30))
# one second of a 440 Hz sine, 48 kHz stereo s16: exactly 440 periods, so it loops cleanly
TONE = b"".join(int(8000 * math.sin(2 * math.pi * 440 * i / 48000)).to_bytes(2, "little",
                                                                            signed=True) * 2
                for i in range(48000))


def color_of(url: str) -> tuple[int, int, int]:
    frag = urlsplit(url).fragment
    if len(frag) == 6:
        try:
            return int(frag[0:2], 16), int(frag[2:4], 16), int(frag[4:6], 16)
        except ValueError:
            pass
    return DEFAULT_COLOR


class AppOptions:
    def __init__(self) -> None:
        self.dev_mode = False
        self.remote_debugging_port = 0
        self.root_cache_path = ""
        self.framework_path = ""
        self.main_bundle_path = ""
        self.subprocess_path = ""
        self.initialized_callback = None


class BrowserOptions:
    def __init__(self) -> None:
        self.framerate = 30
        self.width = 800
        self.height = 600
        for name in ("created_callback", "paint_callback", "close_callback",
                     "audio_stream_started_callback", "audio_stream_packet_callback",
                     "audio_stream_stopped_callback", "cursor_change_callback",
                     "url_changed_callback"):
            setattr(self, name, None)


class Browser:
    def __init__(self, app: BrowserApp, url: str, opts: BrowserOptions) -> None:
        self._app = app
        self._id = next(_ids)
        self.opts = opts
        self.url = url
        self.color = color_of(url)
        self.pixels = bytearray(opts.width * opts.height * 4)
        self.painted = None  # colour of the last paint
        self.last_paint = 0.0
        self.tone = "tone" in urlsplit(url).query
        self.samples = 0
        self.closed = False

    def identifier(self) -> int:
        return self._id

    def _log(self, kind: str, *args) -> None:
        with open(LOG, "a") as f:
            f.write(json.dumps([kind, *args]) + "\n")

    # the input methods proc_main.py calls (from its manager thread)
    def send_mouse_move_event(self, x, y, leave):
        self._log("mouse_move", x, y, leave)

    def send_mouse_click_event(self, x, y, button, mouse_up, count):
        self._log("mouse_click", x, y, button, mouse_up, count)

    def send_mouse_wheel_event(self, x, y, dx, dy):
        self._log("mouse_wheel", x, y, dx, dy)

    def send_key_event(self, type, modifiers, windows_key_code, native_key_code, character):
        self._log("key", type, modifiers, windows_key_code, native_key_code, character)

    def send_focus_event(self, focus):
        self._log("focus", focus)

    def navigate(self, url):
        self._app.post(self._navigate, url)

    def _navigate(self, url):
        self.url, self.color = url, color_of(url)
        self.opts.url_changed_callback(url)

    def go_back(self):
        self._log("back")

    def go_forward(self):
        self._log("forward")

    def close(self):
        self._app.post(self._close)

    def _close(self):
        self.closed = True
        self._app.browsers.remove(self)
        self.opts.close_callback()

    # called on the "UI thread"
    def tick(self, now: float) -> None:
        if self.painted != self.color or now - self.last_paint >= 1.0:
            self.paint(now)
        if self.tone:
            self.audio(now)

    def paint(self, now: float) -> None:
        b, g, r = self.color[2], self.color[1], self.color[0]
        self.pixels[:] = bytes((b, g, r, 255)) * (len(self.pixels) // 4)
        w, h = self.opts.width, self.opts.height
        frame = SimpleNamespace(width=w, height=h, buffer=memoryview(self.pixels),
                                dirty_rects=[SimpleNamespace(x=0, y=0, width=w, height=h)])
        self.opts.paint_callback(frame)
        self.painted, self.last_paint = self.color, now

    def audio(self, now: float) -> None:
        if not self.samples:
            self._audio_start = now
            self.opts.audio_stream_started_callback(48000, 2, 480)
        due = int((now - self._audio_start) * 48000)
        while self.samples <= due:
            start = (self.samples % 48000) * 4
            self.opts.audio_stream_packet_callback(TONE[start:start + 480 * 4], 480, 2, 48000,
                                                   self.samples * 1000 // 48)
            self.samples += 480


class BrowserApp:
    def __init__(self, opts: AppOptions) -> None:
        self.opts = opts
        self.browsers: list[Browser] = []
        self._work: queue.Queue = queue.Queue()
        self._quit = threading.Event()

    def post(self, fn, *args) -> None:
        self._work.put((fn, args))

    def create_browser(self, url: str, opts: BrowserOptions) -> None:
        self.post(self._create, url, opts)

    def _create(self, url: str, opts: BrowserOptions) -> None:
        browser = Browser(self, url, opts)
        self.browsers.append(browser)
        opts.created_callback(browser)
        opts.url_changed_callback(url)

    def quit(self) -> None:
        self._quit.set()
        self.post(lambda: None)

    def run(self) -> None:
        self.opts.initialized_callback()
        while not self._quit.is_set():
            rate = max((b.opts.framerate for b in self.browsers), default=10)
            try:
                fn, args = self._work.get(timeout=1.0 / rate)
                fn(*args)
            except queue.Empty:
                pass
            now = time.monotonic()
            for browser in list(self.browsers):
                browser.tick(now)
