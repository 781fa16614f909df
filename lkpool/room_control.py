"""The data side of a published page: who may drive it from the room, and what the room is
told. One model, two protocols on the wire:

- lkpool's own: topic "<prefix>.input" (the server's input JSON, lkpool/server/inputs.py),
  errors and events (`url_changed`, `cursor_changed`, `focus_changed`) on "<prefix>.events";
- livekit-plugins-browser's BrowserSession's (lkpool/browser_protocol.py): topic
  "browser-input", the `browser/*` RPCs, and "browser-focus" / "browser-url" /
  "cursor_changed" sent back, so the plugin's front end drives the page unchanged.

Both obey one focus (lkpool/focus.py), the page's, shared with the live view and an agent:
only its holder's input reaches the page. A participant asks for it with
`browser/request-focus`, or takes it with its first event on lkpool's topic; leaving the
room releases it. Who may hold it at all is `allowed_identities` (nobody by default: input
from a room is untrusted), which the plugin does not check.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from livekit import rtc

from . import browser_protocol as bp
from . import cursors
from .errors import InvalidArgument
from .focus import Focus

MAX_INPUT_BYTES = 16 << 10
QUEUE_SIZE = 256

Allowed = None | Collection[str] | Callable[[str], bool]


def allow(allowed: Allowed) -> Callable[[str], bool]:
    """None: nobody may send input; a collection: those identities; a callable: it decides."""
    if allowed is None:
        return lambda identity: False
    if callable(allowed):
        return allowed
    if isinstance(allowed, str):
        raise InvalidArgument("allowed_identities must be a collection of identities, not a str")
    members = frozenset(allowed)
    return members.__contains__


def _history_rpc(event: dict) -> Callable[[RoomControl, str, str], Awaitable[str]]:
    """browser/navigate, go-back, go-forward: the event they put in the input queue."""
    async def rpc(self: RoomControl, who: str, payload: str) -> str:
        url = bp.payload_url(payload)
        if event["type"] == "navigate" and not url:
            return bp.reply(status="ok")
        if self._may_navigate(who):
            self._inbox_put(who, event | ({"url": url} if url else {}))
        return bp.reply(status="ok")
    return rpc


class RoomControl:
    """Input from a room into one page, and the page's events out to the room."""

    def __init__(self, page: Any, *, prefix: str, allowed: Allowed,
                 log: logging.Logger) -> None:
        self.page = page
        self.events_topic = f"{prefix}.events"
        self.input_topic = f"{prefix}.input"
        self._allowed = allow(allowed)
        self.focus = Focus.of(page)
        self.log = log
        self.room: rtc.Room | None = None
        self.inputs_applied = 0
        self.inputs_rejected = 0
        self._outbox: asyncio.Queue[tuple[str, dict, list[str]]] = asyncio.Queue(QUEUE_SIZE)
        self._inbox: asyncio.Queue[tuple[str, Any, str]] = asyncio.Queue(QUEUE_SIZE)
        self._page_cbs: list[int] = []
        self._focus_cb: int | None = None
        self._granted: set[str] = set()  # participants this room gave the focus to

    # ---- life cycle ---------------------------------------------------------------------

    def watch_page(self) -> None:
        on = self.page.on
        self._page_cbs = [on("cursor_changed", self._on_cursor), on("url_changed", self._on_url)]
        self._focus_cb = self.focus.on("changed", self._on_focus)

    def join(self, room: rtc.Room) -> None:
        """Listens to the room's data and registers the plugin's RPCs; then tells the room
        the current state (late joiners and a fresh room learn it first)."""
        self.room = room
        room.on("data_received", self.on_data)
        room.on("participant_disconnected", self._on_left)
        lp = room.local_participant
        for name, handler in self._rpcs().items():
            lp.register_rpc_method(name, handler)
        self._state_to_room()

    def leave(self) -> None:
        for cb_id in self._page_cbs:
            self.page.off(cb_id)
        self._page_cbs.clear()
        if self._focus_cb is not None:
            self.focus.off(self._focus_cb)
            self._focus_cb = None
        room, self.room = self.room, None
        if room is not None:
            room.off("data_received", self.on_data)
            room.off("participant_disconnected", self._on_left)
            for name in self._rpcs():
                room.local_participant.unregister_rpc_method(name)
        for identity in self._granted:  # a room participant's focus ends with the room
            self.focus.release(identity)
        self._granted.clear()

    def _state_to_room(self) -> None:
        url, cursor = self.page.url, cursors.css(self.page.cursor)
        self._send({"type": "url_changed", "url": url})
        self._send({"type": "cursor_changed", "cursor": cursor})
        self._send_plugin(bp.URL_TOPIC, {"url": url})
        self._send_plugin(bp.CURSOR_TOPIC, {"cursor": cursor})
        self._send_plugin(bp.FOCUS_TOPIC, {"identity": self.focus.holder})

    # ---- events out ---------------------------------------------------------------------

    def _on_cursor(self, cursor: int | str) -> None:
        css = cursors.css(cursor)
        self._send({"type": "cursor_changed", "cursor": css})
        self._send_plugin(bp.CURSOR_TOPIC, {"cursor": css})

    def _on_url(self, url: str) -> None:
        self._send({"type": "url_changed", "url": url})
        self._send_plugin(bp.URL_TOPIC, {"url": url})

    def _on_focus(self, holder: str | None) -> None:
        self._send({"type": "focus_changed", "identity": holder})
        self._send_plugin(bp.FOCUS_TOPIC, {"identity": holder})

    def _send(self, message: dict, to: list[str] | None = None) -> None:
        self._queue(self.events_topic, message, to or [])

    def _send_plugin(self, topic: str, message: dict) -> None:
        self._queue(topic, message, [])

    def _queue(self, topic: str, message: dict, to: list[str]) -> None:
        if self.room is None:
            return
        try:
            self._outbox.put_nowait((topic, message, to))
        except asyncio.QueueFull:
            self.log.warning("data queue full: dropped a message on %s", topic)

    async def events_loop(self) -> None:
        while True:
            topic, message, to = await self._outbox.get()
            room = self.room
            if room is None:
                continue
            try:
                await room.local_participant.publish_data(
                    json.dumps(message), reliable=True, topic=topic, destination_identities=to)
            except Exception as exc:  # a flaky room must not stop the publisher
                self.log.warning("publish_data failed: %s", exc)

    # ---- input in -----------------------------------------------------------------------

    def on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic not in (self.input_topic, bp.INPUT_TOPIC):
            return
        identity = packet.participant.identity if packet.participant else ""
        if not identity or not self._allowed(identity) or len(packet.data) > MAX_INPUT_BYTES:
            self.inputs_rejected += 1
            self.log.debug("input from %r ignored: not allowed", identity)
            return
        if packet.topic == bp.INPUT_TOPIC:
            if self.focus.holder != identity:  # the plugin's rule: the holder's input only
                self.inputs_rejected += 1
                return
        elif self._request(identity):  # lkpool's topic takes a free focus
            pass
        else:
            self.inputs_rejected += 1
            self._send({"type": "error", "error": "focus_held",
                        "detail": f"{self.focus.holder} has the focus"}, [identity])
            return
        try:
            self._inbox.put_nowait((packet.topic, packet.data, identity))
        except asyncio.QueueFull:
            self.inputs_rejected += 1

    async def handle_input(self, raw: bytes | str | dict, identity: str = "") -> None:
        """Validates and applies one input event (the server's input JSON); errors go back
        to `identity` on the events topic."""
        from .server import inputs
        event: Any = raw
        try:
            if not isinstance(raw, dict):
                event = json.loads(raw)
            apply = inputs.parse(event, self.page)
            await apply(self.page)
            self.inputs_applied += 1
        except Exception as exc:
            self.inputs_rejected += 1
            self.log.debug("input from %r failed: %s", identity, exc)
            if identity:
                self._send(inputs.error_message(exc, event), [identity])

    async def handle_plugin_input(self, raw: bytes | str) -> None:
        """One packet of the plugin's front end; a bad event drops the packet whole."""
        try:
            applies = bp.parse_input(raw, self.page)
        except InvalidArgument as exc:
            self.inputs_rejected += 1
            self.log.debug("browser-input packet dropped: %s", exc)
            return
        for apply in applies:
            try:
                await apply(self.page)
            except Exception as exc:
                self.log.debug("browser-input event failed: %s", exc)
        self.inputs_applied += len(applies)

    async def input_loop(self) -> None:
        while True:
            topic, raw, identity = await self._inbox.get()
            if topic == bp.INPUT_TOPIC:
                await self.handle_plugin_input(raw)
            else:
                await self.handle_input(raw, identity)

    def _request(self, identity: str) -> bool:
        if self.focus.request(identity):
            self._granted.add(identity)
            return True
        return False

    def _may_navigate(self, identity: str) -> bool:
        """The plugin lets anyone navigate; here an allowed participant may, while the
        focus is free or theirs."""
        return self._allowed(identity) and self.focus.holder in (None, identity)

    def _on_left(self, participant: Any) -> None:
        self.focus.release(participant.identity)
        self._granted.discard(participant.identity)

    # ---- the plugin's RPCs --------------------------------------------------------------

    def _rpcs(self) -> dict[str, Callable[[Any], Any]]:
        def handler(method: str) -> Callable[[Any], Any]:
            return lambda data: self.call(method, data.caller_identity, data.payload)
        return {method: handler(method) for method in self._RPC}

    async def call(self, method: str, caller: str, payload: str = "") -> str:
        """Answers one of the plugin's RPCs from `caller` (what the room's RPC calls)."""
        return await self._RPC[method](self, caller, payload)

    async def _request_focus(self, who: str, payload: str) -> str:
        if self._allowed(who) and self._request(who):
            await self._page_focus(True)
            return bp.reply(granted=True)
        return bp.reply(granted=False, holder=self.focus.holder)

    async def _release_focus(self, who: str, payload: str) -> str:
        released = self.focus.release(who)
        self._granted.discard(who)
        if released:
            await self._page_focus(False)
        return bp.reply(released=released)

    _RPC: dict[str, Callable[[RoomControl, str, str], Awaitable[str]]] = {
        bp.RPC_REQUEST_FOCUS: _request_focus, bp.RPC_RELEASE_FOCUS: _release_focus,
        bp.RPC_NAVIGATE: _history_rpc({"type": "navigate"}),
        bp.RPC_GO_BACK: _history_rpc({"type": "back"}),
        bp.RPC_GO_FORWARD: _history_rpc({"type": "forward"}),
    }

    def _inbox_put(self, identity: str, event: dict) -> None:
        try:
            self._inbox.put_nowait((self.input_topic, event, identity))
        except asyncio.QueueFull:
            self.inputs_rejected += 1

    async def _page_focus(self, focused: bool) -> None:
        try:
            await self.page.send_focus_event(focused)
        except Exception as exc:
            self.log.debug("focus event failed: %s", exc)
