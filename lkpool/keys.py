"""Key names as Playwright spells them ("Enter", "ArrowLeft", "a", "A", "Control+a") -> the
key events a US-layout keyboard would send.

Two modifier encodings meet here: CDP's bitmask (what the chromium engine sends to
`Input.dispatchKeyEvent`) and CEF's event flags (what `livekit.browser`'s `send_key_event`
takes). The conversion lives here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import InvalidArgument


class KeyType(IntEnum):
    """CEF's cef_key_event_type_t, the numbering of livekit.browser's send_key_event."""

    RAWKEYDOWN = 0
    KEYDOWN = 1
    KEYUP = 2
    CHAR = 3


# CDP Input.dispatchKeyEvent modifiers
CDP_ALT, CDP_CTRL, CDP_META, CDP_SHIFT = 1, 2, 4, 8
# CEF cef_event_flags_t
CEF_SHIFT, CEF_CTRL, CEF_ALT, CEF_META = 1 << 1, 1 << 2, 1 << 3, 1 << 7
_CEF_TO_CDP = ((CEF_SHIFT, CDP_SHIFT), (CEF_CTRL, CDP_CTRL), (CEF_ALT, CDP_ALT),
               (CEF_META, CDP_META))


def cef_to_cdp(flags: int) -> int:
    return sum(cdp for cef, cdp in _CEF_TO_CDP if flags & cef)


def cdp_to_cef(mask: int) -> int:
    return sum(cef for cef, cdp in _CEF_TO_CDP if mask & cdp)


@dataclass(frozen=True, slots=True)
class Key:
    key: str  # KeyboardEvent.key
    code: str  # KeyboardEvent.code
    vk: int  # Windows virtual key code
    text: str = ""  # what the key types, "" for none


MODIFIERS: dict[str, tuple[Key, int]] = {
    "Shift": (Key("Shift", "ShiftLeft", 16), CDP_SHIFT),
    "Control": (Key("Control", "ControlLeft", 17), CDP_CTRL),
    "Alt": (Key("Alt", "AltLeft", 18), CDP_ALT),
    "Meta": (Key("Meta", "MetaLeft", 91), CDP_META),
}
MODIFIERS["ControlOrMeta"] = MODIFIERS["Control"]  # Playwright's alias; Linux uses Control


def _build_table() -> dict[str, Key]:
    table: dict[str, Key] = {}
    named = {
        "Backspace": (8, "\b"), "Tab": (9, "\t"), "Enter": (13, "\r"), "Pause": (19, ""),
        "CapsLock": (20, ""), "Escape": (27, ""), "PageUp": (33, ""), "PageDown": (34, ""),
        "End": (35, ""), "Home": (36, ""), "ArrowLeft": (37, ""), "ArrowUp": (38, ""),
        "ArrowRight": (39, ""), "ArrowDown": (40, ""), "PrintScreen": (44, ""),
        "Insert": (45, ""), "Delete": (46, "\x7f"), "ContextMenu": (93, ""),
        "NumLock": (144, ""), "ScrollLock": (145, ""),
    }
    for name, (vk, text) in named.items():
        table[name] = Key(name, name, vk, text)
    for n in range(1, 25):
        table[f"F{n}"] = Key(f"F{n}", f"F{n}", 111 + n)
    table[" "] = table["Space"] = Key(" ", "Space", 32, " ")
    for key, _ in MODIFIERS.values():
        table[key.key] = key
    for i, shifted in enumerate(")!@#$%^&*("):
        digit = str(i)
        table[digit] = Key(digit, f"Digit{i}", 48 + i, digit)
        table[shifted] = Key(shifted, f"Digit{i}", 48 + i, shifted)
    for i in range(26):
        low, up = chr(97 + i), chr(65 + i)
        table[low] = Key(low, f"Key{up}", 65 + i, low)
        table[up] = Key(up, f"Key{up}", 65 + i, up)
    punctuation = [(";", ":", "Semicolon", 186), ("=", "+", "Equal", 187),
                   (",", "<", "Comma", 188), ("-", "_", "Minus", 189),
                   (".", ">", "Period", 190), ("/", "?", "Slash", 191),
                   ("`", "~", "Backquote", 192), ("[", "{", "BracketLeft", 219),
                   ("\\", "|", "Backslash", 220), ("]", "}", "BracketRight", 221),
                   ("'", '"', "Quote", 222)]
    for plain, shifted, code, vk in punctuation:
        table[plain] = Key(plain, code, vk, plain)
        table[shifted] = Key(shifted, code, vk, shifted)
    table["\n"] = table["\r"] = table["Enter"]
    table["\t"] = table["Tab"]
    # code names ("KeyA", "Digit1", "Semicolon") press the unshifted key
    for key in list(table.values()):
        if key.code not in table and key.text in (key.key,) and not key.key.isupper():
            table[key.code] = key
    return table


KEYS = _build_table()


@dataclass(frozen=True, slots=True)
class KeyStroke:
    """One key event, ready for the protocol's KeyEvent (modifiers as CDP's bitmask)."""

    type: KeyType
    key: Key
    modifiers: int
    text: str = ""


def lookup(name: str) -> Key:
    try:
        return KEYS[name]
    except KeyError:
        raise InvalidArgument(f"unknown key {name!r} (names as Playwright spells them, e.g. "
                              "'Enter', 'ArrowLeft', 'a', 'Control+a')") from None


def parse_combo(combo: str) -> tuple[list[tuple[Key, int]], Key]:
    """'Control+Shift+a' -> ([(Control, bit), (Shift, bit)], a); a lone '+' is the key."""
    if not isinstance(combo, str) or not combo:
        raise InvalidArgument("key must be a non-empty string")
    parts = combo.split("+")
    if combo.endswith("++") or combo == "+":
        parts = parts[:-2] + ["+"]
    if any(p == "" for p in parts):
        raise InvalidArgument(f"malformed key combination {combo!r}")
    *mods, main = parts
    modifiers = []
    for name in mods:
        if name not in MODIFIERS:
            raise InvalidArgument(f"{name!r} in {combo!r} is not a modifier "
                                  f"({', '.join(MODIFIERS)})")
        modifiers.append(MODIFIERS[name])
    return modifiers, lookup(main)


def press(combo: str) -> list[KeyStroke]:
    """The events of pressing and releasing a key combination, modifiers held around it."""
    modifiers, key = parse_combo(combo)
    strokes: list[KeyStroke] = []
    mask = 0
    for mod_key, bit in modifiers:
        mask |= bit
        strokes.append(KeyStroke(KeyType.RAWKEYDOWN, mod_key, mask))
    text = key.text
    if mask & (CDP_CTRL | CDP_ALT | CDP_META):
        text = ""  # a shortcut types nothing
    elif mask & CDP_SHIFT and len(text) == 1 and text.isalpha():
        text = text.upper()
    if key.key in MODIFIERS and not modifiers:
        text = ""
    strokes.append(KeyStroke(KeyType.KEYDOWN if text else KeyType.RAWKEYDOWN, key, mask, text))
    strokes.append(KeyStroke(KeyType.KEYUP, key, mask))
    for mod_key, bit in reversed(modifiers):
        mask &= ~bit
        strokes.append(KeyStroke(KeyType.KEYUP, mod_key, mask))
    return strokes


def type_text(text: str) -> list[KeyStroke]:
    """Typing `text`: real key presses for what a US keyboard has, char events for the rest."""
    strokes: list[KeyStroke] = []
    for ch in text:
        key = KEYS.get(ch)
        if key is not None and key.text:
            mask = CDP_SHIFT if (ch.isupper() or ch in ')!@#$%^&*(:+<_>?~{|}"') else 0
            strokes.append(KeyStroke(KeyType.KEYDOWN, key, mask, key.text))
            strokes.append(KeyStroke(KeyType.KEYUP, key, mask))
        else:
            strokes.append(KeyStroke(KeyType.CHAR, Key(ch, "", 0, ch), 0, ch))
    return strokes
