"""Cursor kinds in the two spellings lkpool meets: CEF's `cef_cursor_type_t` (an int, what
`livekit.browser` pages emit with `cursor_changed`, and what livekit-plugins-browser's
`BrowserSession` maps to CSS) and CSS cursor keywords (what the chromium engine reads from
the page, what `page.cursor` holds, and what the live view and the input socket send).

Pages of both engines emit CEF's int, so code written for livekit.browser reads the same
event; lkpool's own consumers turn it back into CSS with `css()`.
"""

from __future__ import annotations

# CEF's cef_cursor_type_t, in enum order -> CSS cursor keywords
CEF_CURSORS: tuple[str, ...] = (
    "default", "crosshair", "pointer", "text", "wait", "help", "e-resize", "n-resize",
    "ne-resize", "nw-resize", "s-resize", "se-resize", "sw-resize", "w-resize", "ns-resize",
    "ew-resize", "nesw-resize", "nwse-resize", "col-resize", "row-resize", "all-scroll",
    "e-resize", "n-resize", "ne-resize", "nw-resize", "s-resize", "se-resize", "sw-resize",
    "w-resize", "move", "vertical-text", "cell", "context-menu", "alias", "progress",
    "no-drop", "copy", "none", "not-allowed", "zoom-in", "zoom-out", "grab", "grabbing",
)
# the first CEF type of each keyword; CSS spellings CEF has no type of their own for
_TO_CEF: dict[str, int] = {name: i for i, name in reversed(list(enumerate(CEF_CURSORS)))}
_TO_CEF |= {"auto": 0, "-webkit-grab": _TO_CEF["grab"], "-webkit-grabbing": _TO_CEF["grabbing"],
            "-webkit-zoom-in": _TO_CEF["zoom-in"], "-webkit-zoom-out": _TO_CEF["zoom-out"]}


def css(cursor_type: int | str) -> str:
    """A CEF cursor type as a CSS keyword ("default" for one it does not know); a keyword
    is returned as it is."""
    if isinstance(cursor_type, str):
        return cursor_type
    return CEF_CURSORS[cursor_type] if 0 <= cursor_type < len(CEF_CURSORS) else "default"


def cef(value: str) -> int:
    """A CSS cursor value as CEF's cursor type: its keyword, the last item of a list such
    as `url(a.png), pointer` (the images are the page's, never shown elsewhere); the
    pointer for a keyword CEF has not."""
    keyword = value.rsplit(",", 1)[-1].strip().lower()
    return _TO_CEF.get(keyword, 0)
