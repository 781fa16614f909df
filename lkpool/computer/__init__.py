"""Computer use: Anthropic's computer-use actions applied to a page, and the screenshot an
agent gets back. The REST endpoint (server/computer.py) and, through it, the MCP server
(mcpserver.py) speak through here: actions.py checks a batch, running.py runs it.

An action is the JSON a computer-use tool call carries: `{"action": "left_click",
"coordinate": [x, y]}`, `{"action": "type", "text": "..."}`, `{"action": "key", "text":
"ctrl+a"}`, `{"action": "scroll", "coordinate": [x, y], "scroll_direction": "down",
"scroll_amount": 3}`, ... A batch is checked whole before any of it runs (`parse`): a bad
action is an `InvalidArgument` naming its index, its name and the field, and nothing of the
batch happened. `run` then applies the steps in order and waits until the page settled
(its input handled and drawn), and `screenshot` encodes the page's
own current frame (the native BGRA frame the pool already has, not a CDP capture).

Keys are xdotool's names, as Anthropic's tool sends them ("Return", "ctrl+a", "BackSpace",
"super+l", several combos separated by spaces), mapped onto `lkpool.keys`.
"""

from __future__ import annotations

from .actions import BUILDERS, KEY_ALIASES, Cursor, Step, parse, xdotool_combo
from .running import Screenshot, Settling, run, screenshot, take_focus

__all__ = ["BUILDERS", "KEY_ALIASES", "Cursor", "Screenshot", "Settling", "Step", "parse",
           "run", "screenshot", "take_focus", "xdotool_combo"]
