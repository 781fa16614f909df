"""Input events (JSON) for a lease's page: validated here, then applied to the page.

Why a validation layer of its own: an event comes from the network, so nothing reaches the
browser before every field was checked; a bad event becomes an `InvalidEvent` naming the
field, which the input socket answers with an error message without closing. Each event type
is one entry in `PARSERS`; a parser returns the coroutine function that applies the event.

    {"type":"mouse","action":"move|down|up|click|wheel","x":..,"y":..,
     "button":"left|middle|right","clicks":1,"dx":0,"dy":0}
    {"type":"key","action":"press|down|up","key":"Control+a"}
    {"type":"text","text":"hello"}
    {"type":"navigate","url":"https://..."}   {"type":"back"} {"type":"forward"} {"type":"reload"}
    {"type":"resize","width":1280,"height":720}
    {"type":"dialog","action":"accept|dismiss","text":"for a prompt"}

While the page shows a JavaScript dialog its scripts are paused: mouse, key and text events
are refused with `dialog_open` (409) until a `dialog` event answers it.

Any event may carry an `id` (string or integer) that the answer repeats.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from .. import keys
from ..config import MAX_HEIGHT, MAX_WIDTH
from ..errors import DialogOpen, InvalidArgument

Apply = Callable[[Any], Awaitable[Any]]  # page -> awaitable

BUTTONS = {"left": 0, "middle": 1, "right": 2}
NAVIGABLE_SCHEMES = frozenset({"http", "https", "about", "data"})
MAX_TEXT = 10_000
MAX_WHEEL = 100_000
_COMMON = frozenset({"type", "id"})


class InvalidEvent(InvalidArgument):
    """An input event with a bad field; `field` names it (None for the event as a whole)."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


def _only(event: dict, allowed: frozenset[str]) -> None:
    for name in event:
        if name not in allowed and name not in _COMMON:
            raise InvalidEvent(f"unknown field {name!r} for a {event['type']!r} event", name)


def _string(event: dict, name: str, *, choices: Any = None, max_len: int = 2048,
            default: str | None = None) -> str:
    value = event.get(name, default)
    if value is None:
        raise InvalidEvent(f"{name!r} is required", name)
    if not isinstance(value, str):
        raise InvalidEvent(f"{name!r} must be a string", name)
    if choices is not None and value not in choices:
        raise InvalidEvent(f"{name!r} must be one of {', '.join(choices)}, got {value!r}", name)
    if len(value) > max_len:
        raise InvalidEvent(f"{name!r} is longer than {max_len} characters", name)
    return value


def _number(event: dict, name: str, lo: float, hi: float, *, default: float | None = None,
            integer: bool = False) -> float:
    value = event.get(name, default)
    if value is None:
        raise InvalidEvent(f"{name!r} is required", name)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (integer and not float(value).is_integer()) or not math.isfinite(value):
        raise InvalidEvent(f"{name!r} must be {'an integer' if integer else 'a number'}", name)
    if not lo <= value <= hi:
        raise InvalidEvent(f"{name!r} must be in {lo:g}..{hi:g}, got {value!r}", name)
    return int(value) if integer else value


def _point(event: dict, page: Any) -> tuple[int, int]:
    x = _number(event, "x", 0, max(page.width - 1, 0))
    y = _number(event, "y", 0, max(page.height - 1, 0))
    return round(x), round(y)


# ---- one parser per event type -------------------------------------------------------------

def _mouse(event: dict, page: Any) -> Apply:
    action = _string(event, "action", choices=MOUSE_ACTIONS)
    _only(event, MOUSE_ACTIONS[action])
    return MOUSE_ACTIONS_PARSERS[action](event, page)


def _mouse_move(event: dict, page: Any) -> Apply:
    x, y = _point(event, page)
    return lambda p: p.send_mouse_move(x, y)


def _mouse_button(event: dict, page: Any) -> tuple[int, int, int, int]:
    x, y = _point(event, page)
    button = BUTTONS[_string(event, "button", choices=BUTTONS, default="left")]
    clicks = _number(event, "clicks", 1, 3, default=1, integer=True)
    return x, y, button, int(clicks)


def _mouse_down(event: dict, page: Any) -> Apply:
    x, y, button, clicks = _mouse_button(event, page)
    return lambda p: p.send_mouse_click(x, y, button, False, clicks)


def _mouse_up(event: dict, page: Any) -> Apply:
    x, y, button, clicks = _mouse_button(event, page)
    return lambda p: p.send_mouse_click(x, y, button, True, clicks)


def _mouse_click(event: dict, page: Any) -> Apply:
    x, y, button, clicks = _mouse_button(event, page)
    name = next(k for k, v in BUTTONS.items() if v == button)
    return lambda p: p.click(x, y, button=name, click_count=clicks)


def _mouse_wheel(event: dict, page: Any) -> Apply:
    x, y = _point(event, page)
    dx = round(_number(event, "dx", -MAX_WHEEL, MAX_WHEEL, default=0))
    dy = round(_number(event, "dy", -MAX_WHEEL, MAX_WHEEL, default=0))
    # the socket's dx/dy are the DOM's (positive scrolls down/right); send_mouse_wheel
    # follows CEF's sign, as livekit.browser does (positive scrolls up/left)
    return lambda p: p.send_mouse_wheel(x, y, -dx, -dy)


_POINT = frozenset({"action", "x", "y"})
_BUTTON = _POINT | {"button", "clicks"}
MOUSE_ACTIONS: dict[str, frozenset[str]] = {
    "move": _POINT, "down": _BUTTON, "up": _BUTTON, "click": _BUTTON,
    "wheel": _POINT | {"dx", "dy"},
}
MOUSE_ACTIONS_PARSERS: dict[str, Callable[[dict, Any], Apply]] = {
    "move": _mouse_move, "down": _mouse_down, "up": _mouse_up, "click": _mouse_click,
    "wheel": _mouse_wheel,
}


def _strokes(key: str, action: str) -> list[Any]:
    """The key events of `action` on `key`, checked against the key table before sending."""
    try:
        modifiers, _ = keys.parse_combo(key)
        strokes = keys.press(key)
    except (InvalidArgument, ValueError, KeyError) as exc:
        raise InvalidEvent(str(exc), "key") from None
    half = len(modifiers) + 1  # press = modifiers down, key down | key up, modifiers up
    return {"press": strokes, "down": strokes[:half], "up": strokes[half:]}[action]


async def _send_strokes(page: Any, strokes: list[Any]) -> None:
    for s in strokes:
        await page.send_key_event(int(s.type), keys.cdp_to_cef(s.modifiers), s.key.vk, 0,
                                  ord(s.text) if len(s.text) == 1 else 0, key=s.key.key,
                                  code=s.key.code, text=s.text)


KEY_ACTIONS = ("press", "down", "up")


def _key(event: dict, page: Any) -> Apply:
    _only(event, frozenset({"action", "key"}))
    action = _string(event, "action", choices=KEY_ACTIONS, default="press")
    key = _string(event, "key", max_len=64)
    strokes = _strokes(key, action)
    if action == "press":
        return lambda p: p.press(key)
    return lambda p: _send_strokes(p, strokes)


def _text(event: dict, page: Any) -> Apply:
    _only(event, frozenset({"text"}))
    text = _string(event, "text", max_len=MAX_TEXT)
    return lambda p: p.type(text)


def _navigate(event: dict, page: Any) -> Apply:
    _only(event, frozenset({"url"}))
    url = _string(event, "url", max_len=8192)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in NAVIGABLE_SCHEMES:
        raise InvalidEvent(f"'url' must be an absolute {', '.join(sorted(NAVIGABLE_SCHEMES))} "
                           f"URL, got {url[:100]!r}", "url")
    return lambda p: p.navigate(url)


def _history(method: str) -> Callable[[dict, Any], Apply]:
    def parse(event: dict, page: Any) -> Apply:
        _only(event, frozenset())
        return lambda p: getattr(p, method)()
    return parse


def _resize(event: dict, page: Any) -> Apply:
    _only(event, frozenset({"width", "height"}))
    width = _number(event, "width", 1, MAX_WIDTH, integer=True)
    height = _number(event, "height", 1, MAX_HEIGHT, integer=True)
    return lambda p: p.resize(width, height)


def _dialog(event: dict, page: Any) -> Apply:
    _only(event, frozenset({"action", "text"}))
    action = _string(event, "action", choices=DIALOG_ACTIONS)
    text = _string(event, "text", max_len=MAX_TEXT, default="")
    return lambda p: p.handle_dialog(action == "accept", text)


def _unless_dialog(apply: Apply) -> Apply:
    """Input for a page whose scripts a dialog paused would wait in Chromium and land, out
    of its time, once someone answers: it is refused instead, when it is applied (so a
    `dialog` answer earlier in the same batch counts)."""
    async def run(p: Any) -> Any:
        dialog = getattr(p, "dialog", None)
        if dialog is not None:
            raise DialogOpen(f"the page shows a {dialog.kind} dialog ({dialog.message[:100]!r})"
                             ": answer it with a 'dialog' event first")
        return await apply(p)
    return run


PARSERS: dict[str, Callable[[dict, Any], Apply]] = {
    "mouse": _mouse,
    "key": _key,
    "text": _text,
    "navigate": _navigate,
    "back": _history("go_back"),
    "forward": _history("go_forward"),
    "reload": _history("reload"),
    "resize": _resize,
    "dialog": _dialog,
}
DIALOG_ACTIONS = ("accept", "dismiss")
PAUSED_BY_DIALOG = frozenset({"mouse", "key", "text"})


def parse(event: Any, page: Any) -> Apply:
    """Validates one event against `page`'s size; returns how to apply it."""
    if not isinstance(event, dict):
        raise InvalidEvent("an event must be a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in PARSERS:
        raise InvalidEvent(f"'type' must be one of {', '.join(PARSERS)}, got {kind!r}", "type")
    event_id = event.get("id")
    if event_id is not None and (not isinstance(event_id, str | int) or
                                 isinstance(event_id, bool)):
        raise InvalidEvent("'id' must be a string or an integer", "id")
    apply = PARSERS[kind](event, page)
    return _unless_dialog(apply) if kind in PAUSED_BY_DIALOG else apply


def error_message(exc: Exception, event: Any = None) -> dict[str, Any]:
    """The answer to an event that failed: {"type":"error","error","detail","field","id"}."""
    msg: dict[str, Any] = {
        "type": "error",
        "error": getattr(exc, "code", "error"),
        "detail": str(exc),
        "field": getattr(exc, "field", None),
    }
    if isinstance(event, dict) and isinstance(event.get("id"), str | int):
        msg["id"] = event["id"]
    return msg
