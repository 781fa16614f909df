"""The room protocol of livekit-plugins-browser's `BrowserSession`, spoken by
`PagePublisher` so a front end written for the plugin drives an lkpool page unchanged.

    topic "browser-input"   participant -> page   JSON list of events, from the focus holder:
        {"type": "mousemove", "x", "y"}  {"type": "mousedown" | "mouseup", "x", "y", "button"}
        {"type": "wheel", "x", "y", "deltaX", "deltaY"}     (CEF's sign, as the plugin's)
        {"type": "keydown" | "keyup", "keyCode", "modifiers"}
        {"type": "char", "keyCode", "charCode", "modifiers"}    (CEF's event flags)
    RPC "browser/request-focus" -> {"granted": true} | {"granted": false, "holder": id}
    RPC "browser/release-focus" -> {"released": bool}
    RPC "browser/navigate" {"url"}, "browser/go-back", "browser/go-forward" -> {"status": "ok"}
    topic "browser-focus"   page -> room   {"identity": holder | null}
    topic "browser-url"     page -> room   {"url"}
    topic "cursor_changed"  page -> room   {"cursor": CSS keyword}

Unlike the plugin, input is checked before it reaches the page (numbers in range, coordinates
on the page); a packet with a bad event is dropped whole. This module is pure: it turns
packets into page calls and answers into JSON, and does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import InvalidArgument

INPUT_TOPIC = "browser-input"
FOCUS_TOPIC = "browser-focus"
URL_TOPIC = "browser-url"
CURSOR_TOPIC = "cursor_changed"
RPC_REQUEST_FOCUS = "browser/request-focus"
RPC_RELEASE_FOCUS = "browser/release-focus"
RPC_NAVIGATE = "browser/navigate"
RPC_GO_BACK = "browser/go-back"
RPC_GO_FORWARD = "browser/go-forward"
MAX_EVENTS = 256  # per packet
MAX_WHEEL = 100_000

Apply = Callable[[Any], Awaitable[None]]


def _int(evt: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = evt.get(name, default)
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not lo <= value <= hi):
        raise InvalidArgument(f"{evt.get('type')}: {name} must be a number in {lo}..{hi}, "
                              f"got {value!r}")
    return int(value)


def _point(evt: dict[str, Any], page: Any) -> tuple[int, int]:
    return _int(evt, "x", 0, page.width - 1), _int(evt, "y", 0, page.height - 1)


def _mouse_move(evt: dict[str, Any], page: Any) -> Apply:
    x, y = _point(evt, page)
    return lambda p: p.send_mouse_move(x, y)


def _mouse_button(up: bool) -> Callable[[dict[str, Any], Any], Apply]:
    def parse(evt: dict[str, Any], page: Any) -> Apply:
        x, y = _point(evt, page)
        button = _int(evt, "button", 0, 2, 0)
        return lambda p: p.send_mouse_click(x, y, button, up, 1)
    return parse


def _wheel(evt: dict[str, Any], page: Any) -> Apply:
    x, y = _point(evt, page)
    dx = _int(evt, "deltaX", -MAX_WHEEL, MAX_WHEEL, 0)
    dy = _int(evt, "deltaY", -MAX_WHEEL, MAX_WHEEL, 0)
    return lambda p: p.send_mouse_wheel(x, y, dx, dy)


def _key(kind: int, with_char: bool) -> Callable[[dict[str, Any], Any], Apply]:
    def parse(evt: dict[str, Any], page: Any) -> Apply:
        code = _int(evt, "keyCode", 0, 0xFFFF)
        modifiers = _int(evt, "modifiers", 0, 0xFFFF, 0)
        char = _int(evt, "charCode", 0, 0x10FFFF, 0) if with_char else 0
        return lambda p: p.send_key_event(kind, modifiers, code, 0, char)
    return parse


# the plugin's event types -> a parser that checks one and returns its page call; the
# numbers are CEF's key event types (RAWKEYDOWN, KEYUP, CHAR), as the plugin sends them
EVENTS: dict[str, Callable[[dict[str, Any], Any], Apply]] = {
    "mousemove": _mouse_move, "mousedown": _mouse_button(False),
    "mouseup": _mouse_button(True), "wheel": _wheel, "keydown": _key(0, False),
    "keyup": _key(2, False), "char": _key(3, True),
}


def parse_input(data: bytes | str, page: Any) -> list[Apply]:
    """One `browser-input` packet -> its page calls, in order; InvalidArgument when any
    event is bad (then none is applied)."""
    try:
        events = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"not JSON: {exc}") from None
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise InvalidArgument(f"a packet is a JSON list of at most {MAX_EVENTS} events")
    applies = []
    for evt in events:
        if not isinstance(evt, dict) or evt.get("type") not in EVENTS:
            raise InvalidArgument(f"unknown event {evt!r:.80}")
        applies.append(EVENTS[evt["type"]](evt, page))
    return applies


def reply(**fields: Any) -> str:
    return json.dumps(fields)


def payload_url(payload: str) -> str:
    """The url of a browser/navigate call ("" when there is none)."""
    try:
        data = json.loads(payload or "{}")
    except ValueError:
        return ""
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else ""
