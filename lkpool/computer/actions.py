"""Anthropic's computer-use actions, checked: each action is the JSON a computer-use tool call
carries (`{"action": "left_click", "coordinate": [x, y]}`, `{"action": "type", "text": ...}`,
`{"action": "key", "text": "ctrl+a"}`, `{"action": "scroll", "coordinate": [x, y],
"scroll_direction": "down", "scroll_amount": 3}`, ...). `parse` checks a whole batch
against the page's size before any of it runs and turns each action into a `Step` that
applies it to a page; a bad action is an `InvalidArgument` naming its index, its name and
the field.

Keys are xdotool's names, as Anthropic's tool sends them ("Return", "ctrl+a", "BackSpace",
"super+l", several combos separated by spaces), mapped onto `lkpool.keys`.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from .. import keys
from ..errors import InvalidArgument

MAX_ACTIONS = 100
MAX_TEXT = 10_000
MAX_SCROLL = 50  # wheel clicks per scroll action
MAX_DURATION = 10.0  # seconds of one wait / hold_key
MAX_BATCH_SECONDS = 30.0  # waits and holds of one batch, together
WHEEL_CLICK = 120  # pixels per scroll_amount unit, as livekit-plugins-browser's PageActions

# xdotool / Anthropic key names -> lkpool.keys (Playwright) names; single characters and
# Playwright's own names pass through
KEY_ALIASES: dict[str, str] = {
    "ctrl": "Control", "control": "Control", "alt": "Alt", "shift": "Shift",
    "super": "Meta", "meta": "Meta", "cmd": "Meta", "command": "Meta", "win": "Meta",
    "return": "Enter", "enter": "Enter", "kp_enter": "Enter", "backspace": "Backspace",
    "tab": "Tab", "escape": "Escape", "esc": "Escape", "space": "Space", "delete": "Delete",
    "del": "Delete", "insert": "Insert", "home": "Home", "end": "End",
    "page_up": "PageUp", "pageup": "PageUp", "prior": "PageUp", "page_down": "PageDown",
    "pagedown": "PageDown", "next": "PageDown", "up": "ArrowUp", "down": "ArrowDown",
    "left": "ArrowLeft", "right": "ArrowRight", "minus": "-", "plus": "+", "equal": "=",
    "comma": ",", "period": ".", "slash": "/", "semicolon": ";", "apostrophe": "'",
    "grave": "`", "backslash": "\\", "bracketleft": "[", "bracketright": "]",
    **{f"f{n}": f"F{n}" for n in range(1, 25)},
}
BUTTONS = {"left": 0, "middle": 1, "right": 2}
DIRECTIONS: dict[str, tuple[int, int]] = {"up": (0, 1), "down": (0, -1), "left": (1, 0),
                                          "right": (-1, 0)}  # CEF's wheel sign, per click

Action = Literal["left_click", "right_click", "middle_click", "double_click", "triple_click",
                 "mouse_move", "left_click_drag", "left_mouse_down", "left_mouse_up",
                 "scroll", "type", "key", "hold_key", "wait", "screenshot",
                 "cursor_position"]
Point = tuple[int, int]


def xdotool_combo(text: str) -> str:
    """'ctrl+shift+Tab' -> 'Control+Shift+Tab'; InvalidArgument naming an unknown key."""
    parts = text.split("+") if text != "+" else ["+"]
    if text.endswith("++"):
        parts = parts[:-2] + ["+"]
    names = [KEY_ALIASES.get(p.lower(), p) if len(p) > 1 else p for p in parts]
    combo = "+".join(names)
    keys.parse_combo(combo)  # raises on an unknown key or a non-modifier in front
    return combo


def _combos(text: str) -> list[str]:
    """xdotool's key argument: combos separated by spaces ("ctrl+a Delete")."""
    if text == " ":
        return ["Space"]
    combos = [xdotool_combo(t) for t in text.split()]
    if not combos:
        raise InvalidArgument("must name at least one key")
    return combos


def _modifier_mask(text: str) -> int:
    """The `text` of a click: modifiers held during it ("shift", "ctrl+alt")."""
    mask = 0
    for part in text.split("+"):
        name = KEY_ALIASES.get(part.strip().lower(), part.strip())
        if name not in keys.MODIFIERS:
            raise InvalidArgument(f"{part!r} is not a modifier (shift, ctrl, alt, super)")
        mask |= keys.MODIFIERS[name][1]
    return mask


# ---- checking a batch ---------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One checked action: its index and name (for errors while it runs) and what it does."""
    index: int
    action: str
    apply: Callable[[Any, Cursor], Awaitable[None]]
    seconds: float = 0.0  # how long it waits on purpose


class _Fields:
    """Reads one action's fields; each error names the action and the field."""

    def __init__(self, index: int, raw: dict[str, Any], size: Point) -> None:
        self.index, self.raw, self.size = index, raw, size
        self.action = raw.get("action")
        self.used = {"action"}

    def fail(self, field: str, message: str) -> InvalidArgument:
        return InvalidArgument(f"actions[{self.index}] ({self.action}): {field} {message}")

    def get(self, field: str) -> Any:
        self.used.add(field)
        return self.raw.get(field)

    def point(self, field: str = "coordinate", *, required: bool = True) -> Point | None:
        value = self.get(field)
        if value is None:
            if required:
                raise self.fail(field, "is required: [x, y]")
            return None
        w, h = self.size
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(_is_int(v) for v in value)):
            raise self.fail(field, f"must be [x, y], two integers, got {value!r}")
        x, y = int(value[0]), int(value[1])
        if not (0 <= x < w and 0 <= y < h):
            raise self.fail(field, f"{[x, y]} is outside the page (0 <= x < {w}, "
                                   f"0 <= y < {h})")
        return x, y

    def text(self, field: str = "text", *, required: bool = True) -> str | None:
        value = self.get(field)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(field, "must be a non-empty string")
        if len(value) > MAX_TEXT:
            raise self.fail(field, f"must be at most {MAX_TEXT} characters")
        return value

    def number(self, field: str, lo: float, hi: float, default: float, *,
               integer: bool = False) -> float:
        value = self.get(field)
        if value is None:
            return default
        ok = _is_int(value) if integer else (isinstance(value, int | float)
                                             and not isinstance(value, bool))
        if not ok or not lo <= value <= hi or (isinstance(value, float) and math.isnan(value)):
            what = "an integer" if integer else "a number"
            raise self.fail(field, f"must be {what} in {lo:g}..{hi:g}, got {value!r}")
        return value

    def keys_of(self, field: str, parse: Callable[[str], Any]) -> Any:
        text = self.text(field)
        assert text is not None  # required
        try:
            return parse(text)
        except InvalidArgument as exc:
            raise self.fail(field, f"{text!r}: {exc}") from None

    def done(self) -> None:
        extra = sorted(set(self.raw) - self.used)
        if extra:
            raise self.fail(extra[0], "is not a field of this action")


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer())


class Cursor:
    """Where the mouse is on one page: actions without a coordinate act there."""

    _of: weakref.WeakKeyDictionary[Any, Cursor] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.x, self.y = 0, 0

    @classmethod
    def of(cls, page: Any) -> Cursor:
        cursor = cls._of.get(page)
        if cursor is None:
            cursor = cls._of[page] = Cursor()
        return cursor

    def at(self, point: Point | None) -> Point:
        if point is not None:
            self.x, self.y = point
        return self.x, self.y


def _click(button: str, count: int):
    def build(f: _Fields) -> Callable[[Any, Cursor], Awaitable[None]]:
        point = f.point(required=False)
        held = f.text(required=False)
        mask = 0
        if held is not None:
            mask = f.keys_of("text", _modifier_mask)

        async def apply(page: Any, cursor: Cursor) -> None:
            x, y = cursor.at(point)
            if not mask:
                await page.click(x, y, button=button, click_count=count)
                return
            b = BUTTONS[button]
            await page.send_mouse_move(x, y, modifiers=mask)
            for n in range(1, count + 1):
                await page.send_mouse_click(x, y, b, False, n, modifiers=mask)
                await page.send_mouse_click(x, y, b, True, n, modifiers=mask)
            await page.input_handled()
        return apply
    return build


def _mouse_move(f: _Fields):
    point = f.point()

    async def apply(page: Any, cursor: Cursor) -> None:
        await page.send_mouse_move(*cursor.at(point))
    return apply


def _button(up: bool):
    def build(f: _Fields):
        point = f.point(required=False)

        async def apply(page: Any, cursor: Cursor) -> None:
            x, y = cursor.at(point)
            await page.send_mouse_move(x, y)
            await page.send_mouse_click(x, y, 0, up, 1)
        return apply
    return build


def _drag(f: _Fields):
    start = f.point("start_coordinate", required=False)
    end = f.point()
    assert end is not None  # required

    async def apply(page: Any, cursor: Cursor) -> None:
        sx, sy = cursor.at(start)
        await page.send_mouse_move(sx, sy)
        await page.send_mouse_click(sx, sy, 0, False, 1)
        steps = 8  # a few moves in between: pages that track the drag see it move
        for i in range(1, steps + 1):
            await page.send_mouse_move(sx + (end[0] - sx) * i // steps,
                                       sy + (end[1] - sy) * i // steps)
        await page.send_mouse_click(*cursor.at(end), 0, True, 1)
    return apply


def _scroll(f: _Fields):
    point = f.point(required=False)
    direction = f.get("scroll_direction")
    if direction not in DIRECTIONS:
        raise f.fail("scroll_direction", f"must be one of {', '.join(DIRECTIONS)}, "
                                         f"got {direction!r}")
    amount = int(f.number("scroll_amount", 0, MAX_SCROLL, 3, integer=True))
    held = f.text(required=False)
    mask = f.keys_of("text", _modifier_mask) if held is not None else 0
    sx, sy = DIRECTIONS[direction]

    async def apply(page: Any, cursor: Cursor) -> None:
        x, y = cursor.at(point)
        await page.send_mouse_move(x, y)
        kw = {"modifiers": mask} if mask else {}
        await page.send_mouse_wheel(x, y, sx * amount * WHEEL_CLICK,
                                    sy * amount * WHEEL_CLICK, **kw)
    return apply


def _type(f: _Fields):
    text = f.text()

    async def apply(page: Any, cursor: Cursor) -> None:
        await page.type(text)
    return apply


def _key(f: _Fields):
    combos = f.keys_of("text", _combos)

    async def apply(page: Any, cursor: Cursor) -> None:
        for combo in combos:
            await page.press(combo)
    return apply


def _hold_key(f: _Fields):
    combos = f.keys_of("text", _combos)
    duration = f.number("duration", 0, MAX_DURATION, 0.5)
    strokes = [s for c in combos for s in keys.press(c)]
    downs = [s for s in strokes if s.type is not keys.KeyType.KEYUP]
    ups = [s for s in strokes if s.type is keys.KeyType.KEYUP]

    async def apply(page: Any, cursor: Cursor) -> None:
        for s in downs:
            await _stroke(page, s)
        await page.input_handled()
        await asyncio.sleep(duration)
        for s in ups:
            await _stroke(page, s)
    return apply, duration


async def _stroke(page: Any, s: keys.KeyStroke) -> None:
    await page.send_key_event(int(s.type), keys.cdp_to_cef(s.modifiers), s.key.vk, 0,
                              ord(s.text) if len(s.text) == 1 else 0, key=s.key.key,
                              code=s.key.code, text=s.text)


def _wait(f: _Fields):
    duration = f.number("duration", 0, MAX_DURATION, 1.0)

    async def apply(page: Any, cursor: Cursor) -> None:
        await asyncio.sleep(duration)
    return apply, duration


def _nothing(f: _Fields):
    async def apply(page: Any, cursor: Cursor) -> None:
        return None
    return apply


BUILDERS: dict[str, Callable[[_Fields], Any]] = {
    "left_click": _click("left", 1), "right_click": _click("right", 1),
    "middle_click": _click("middle", 1), "double_click": _click("left", 2),
    "triple_click": _click("left", 3), "mouse_move": _mouse_move,
    "left_click_drag": _drag, "left_mouse_down": _button(False),
    "left_mouse_up": _button(True), "scroll": _scroll, "type": _type, "key": _key,
    "hold_key": _hold_key, "wait": _wait,
    # the answer always carries the screenshot and the cursor: these do nothing themselves
    "screenshot": _nothing, "cursor_position": _nothing,
}


def parse(actions: Any, size: Point) -> list[Step]:
    """Checks a whole batch against a page of `size`; InvalidArgument on the first fault."""
    if not isinstance(actions, list):
        raise InvalidArgument("actions must be a list of computer-use actions")
    if len(actions) > MAX_ACTIONS:
        raise InvalidArgument(f"actions: at most {MAX_ACTIONS} per request, got {len(actions)}")
    steps: list[Step] = []
    for i, raw in enumerate(actions):
        if not isinstance(raw, dict):
            raise InvalidArgument(f"actions[{i}] must be an object with an action field")
        f = _Fields(i, raw, size)
        if f.action not in BUILDERS:
            raise InvalidArgument(f"actions[{i}]: action must be one of "
                                  f"{', '.join(BUILDERS)}, got {f.action!r}")
        built = BUILDERS[f.action](f)
        apply, seconds = built if isinstance(built, tuple) else (built, 0.0)
        f.done()
        steps.append(Step(i, f.action, apply, seconds))
    total = sum(s.seconds for s in steps)
    if total > MAX_BATCH_SECONDS:
        raise InvalidArgument(f"actions: waits and holds add up to {total:g}s, more than "
                              f"{MAX_BATCH_SECONDS:g}s per request")
    return steps
