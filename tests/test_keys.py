"""Key names -> key events, US layout, as Playwright spells them."""

from __future__ import annotations

import pytest

from lkpool import keys
from lkpool.errors import InvalidArgument


def test_plain_letter_types_itself() -> None:
    """'a' is a keydown with text 'a' then a keyup."""
    down, up = keys.press("a")
    assert (down.type, down.key.code, down.key.vk, down.text) == (keys.KeyType.KEYDOWN, "KeyA",
                                                                   65, "a")
    assert up.type is keys.KeyType.KEYUP and up.text == ""


def test_shortcut_holds_modifier_and_types_nothing() -> None:
    """Control+a presses Control, a (no text, Ctrl bit set), releases in reverse order."""
    strokes = keys.press("Control+a")
    assert [s.key.key for s in strokes] == ["Control", "a", "a", "Control"]
    assert [s.type for s in strokes] == [keys.KeyType.RAWKEYDOWN, keys.KeyType.RAWKEYDOWN,
                                         keys.KeyType.KEYUP, keys.KeyType.KEYUP]
    assert strokes[1].modifiers == keys.CDP_CTRL and strokes[1].text == ""
    assert strokes[-1].modifiers == 0


def test_shift_letter_is_uppercase() -> None:
    """Shift+a types 'A' with the Shift bit."""
    strokes = keys.press("Shift+a")
    assert strokes[1].text == "A" and strokes[1].modifiers == keys.CDP_SHIFT


@pytest.mark.parametrize("name,vk,text", [("Enter", 13, "\r"), ("ArrowLeft", 37, ""),
                                          ("Backspace", 8, "\b"), ("F5", 116, ""),
                                          ("Space", 32, " "), ("KeyB", 66, "b"),
                                          ("Digit1", 49, "1"), ("+", 187, "+")])
def test_named_keys(name: str, vk: int, text: str) -> None:
    """Named keys carry the Windows key code and the text they type."""
    down = keys.press(name)[0]
    assert down.key.vk == vk and down.text == text


def test_plus_key_in_combo() -> None:
    """'Shift++' is Shift held around the '+' key."""
    strokes = keys.press("Shift++")
    assert [s.key.key for s in strokes] == ["Shift", "+", "+", "Shift"]


@pytest.mark.parametrize("bad", ["", "Nope", "Control+", "Foo+a", "a+b", "Control++a"])
def test_bad_names_raise(bad: str) -> None:
    """Unknown keys and malformed combinations are InvalidArgument naming the problem."""
    with pytest.raises(InvalidArgument):
        keys.press(bad)


def test_type_text_mixes_keys_and_chars() -> None:
    """Typing uses real keys for US-layout characters and char events for others."""
    strokes = keys.type_text("aB!é")
    downs = [s for s in strokes if s.type is not keys.KeyType.KEYUP]
    assert [s.text for s in downs] == ["a", "B", "!", "é"]
    assert downs[1].modifiers == keys.CDP_SHIFT and downs[2].modifiers == keys.CDP_SHIFT
    assert downs[3].type is keys.KeyType.CHAR


def test_modifier_encodings_round_trip() -> None:
    """CEF event flags and CDP's bitmask convert both ways."""
    for mask in range(16):
        assert keys.cef_to_cdp(keys.cdp_to_cef(mask)) == mask
    assert keys.cef_to_cdp(keys.CEF_CTRL | keys.CEF_SHIFT) == keys.CDP_CTRL | keys.CDP_SHIFT
