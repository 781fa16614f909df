"""Who drives a page: one lock per page, shared by the people in a LiveKit room (the
plugin's `browser/request-focus`, lkpool's input topic), the live view and an agent (the
computer endpoint, the MCP tools).

The rule is livekit-plugins-browser's BrowserSession's: a free focus goes to whoever asks;
a person may take it from the agent, which sets `agent_interrupted` (the agent stops before
its next action and says so); nobody takes it from another person, who keeps it until they
release it or leave. Only the holder's input reaches the page.

    holder:  None ──request(alice)──► "alice" ──release(alice) / alice left──► None
             None ──take_for_agent()──► AGENT ──request(bob)──► "bob"  (agent_interrupted)
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Literal

from .events import EventEmitter

AGENT = "__agent__"  # the plugin's identity for its agent; ours is the same

FocusEvent = Literal["changed"]


class Focus(EventEmitter[FocusEvent]):
    """The focus of one page; `Focus.of(page)` is the one every party shares. Emits
    `changed` with the new holder (None when free)."""

    _of: weakref.WeakKeyDictionary[Any, Focus] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        super().__init__()
        self.holder: str | None = None
        self.agent_interrupted = asyncio.Event()

    @classmethod
    def of(cls, page: Any) -> Focus:
        focus = cls._of.get(page)
        if focus is None:
            focus = cls._of[page] = cls()
        return focus

    def _set(self, holder: str | None) -> None:
        if holder != self.holder:
            self.holder = holder
            self.emit("changed", holder)

    def request(self, identity: str) -> bool:
        """A person asks for the focus: granted when free, theirs already, or the agent's
        (which is then interrupted)."""
        if self.holder in (None, identity):
            self._set(identity)
            return True
        if self.holder == AGENT:
            self.agent_interrupted.set()
            self._set(identity)
            return True
        return False

    def release(self, identity: str) -> bool:
        """The holder gives the focus back (also when they leave); False if not theirs."""
        if self.holder != identity:
            return False
        self._set(None)
        return True

    def take_for_agent(self) -> bool:
        """The agent acts when the focus is free or its own; never over a person."""
        if self.holder not in (None, AGENT):
            return False
        self.agent_interrupted.clear()
        self._set(AGENT)
        return True

    def reclaim_for_agent(self) -> None:
        """The plugin's `reclaim_agent_focus`: the agent takes the focus back, whoever held
        it (a new task from the user, after they interrupted it)."""
        self.agent_interrupted.clear()
        self._set(AGENT)
