"""/session/{id}/frames and /session/{id}/input: a lease's page over WebSockets.

`setup(app)` registers the routes (and the live view's, from `view.py`). The pool comes from
`appkeys.POOL`; the broadcasters (one per watched page, see `frames.py`) live under
`appkeys.BROADCASTERS`, created and closed by this module's cleanup context.

Both sockets end when the lease ends (released, expired or crashed): the frames socket
closes with 1001 and the reason; the input socket first sends `{"type":"closed","reason"}`.
Streaming and input count as lease activity (`pool.touch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSMsgType, web

from .. import cursors
from ..errors import (
    FocusHeld,
    InvalidArgument,
    LkpoolError,
    UnknownSession,
    UnsupportedMediaType,
)
from ..focus import Focus
from . import appkeys, edge, inputs, loopback, view
from .edge import read_json
from .frames import Broadcasters, FrameOptions, ViewerStats, send_frames
from .outbox import Outbox

logger = logging.getLogger(__name__)


TOUCH_INTERVAL = 1.0  # seconds between pool.touch calls while a socket streams
def _dialog(dialog: Any) -> Any:
    """A page's `Dialog` as JSON fields (None stays None: no dialog open)."""
    if dialog is None:
        return None
    return {"kind": dialog.kind, "message": dialog.message,
            "default_prompt": dialog.default_prompt}


# a page event -> the message the input socket pushes for it
PAGE_EVENTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "url_changed": lambda url: {"type": "url_changed", "url": url},
    "title_changed": lambda title: {"type": "title_changed", "title": title},
    "cursor_changed": lambda cursor: {"type": "cursor_changed", "cursor": cursors.css(cursor)},
    "dialog_opened": lambda dialog: {"type": "dialog_opened", **_dialog(dialog)},
    "dialog_closed": lambda accepted: {"type": "dialog_closed", "accepted": bool(accepted)},
}
# the input socket's messages that describe a state: only the newest of each waits for a
# slow reader; others (acks, errors, dialogs) queue, at most MAX_QUEUED (server/outbox.py)
COALESCED = frozenset({"state", "url_changed", "title_changed", "cursor_changed"})
MAX_QUEUED = 1024
WAITS_FOR_LOAD = frozenset({"navigate"})  # input events whose answer waits for a page load
MAX_INPUT_MESSAGE = 64 * 1024
_viewers = itertools.count(1)  # the live view's identities for the focus


def _pool(request: web.Request) -> Any:
    return request.app[appkeys.POOL]


def _lease(request: web.Request) -> Any:
    """The live lease of the URL's session id; UnknownSession (404) otherwise."""
    return _pool(request).get(request.match_info["session_id"])


class _Toucher:
    """Calls pool.touch at most once per TOUCH_INTERVAL: activity, not a per-frame cost."""

    def __init__(self, pool: Any, session_id: str) -> None:
        self._pool, self._sid, self._last = pool, session_id, 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= TOUCH_INTERVAL:
            self._last = now
            with contextlib.suppress(UnknownSession):
                self._pool.touch(self._sid)


def _end_reason(lease: Any) -> str:
    return lease.end_reason or ("closed" if getattr(lease.page, "closed", False) else "released")


async def _lease_gone(lease: Any) -> str:
    """Returns, with the end reason, once the lease has ended (released, expired, crashed)."""
    return await lease.wait_ended()


async def _first_done(*aws: Any) -> None:
    """Runs the awaitables until the first one ends, then cancels the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                if not isinstance(exc, ConnectionError | asyncio.CancelledError):
                    logger.error("stream task failed", exc_info=exc)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _drain(ws: web.WebSocketResponse, on_message: Callable[[Any], Any] | None = None
                 ) -> None:
    """Reads the socket until the client closes it (aiohttp needs a reader for close)."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and on_message is not None:
            await on_message(msg.data)


CLOSE_GRACE = 2.0  # seconds a client has to take our close frame


async def _close_or_drop(ws: web.WebSocketResponse, request: web.Request, code: int,
                         reason: str) -> None:
    """Closes with `code`; a client that reads nothing cannot take even the close frame (the
    write waits for its socket to drain) and would hold the handler, so after CLOSE_GRACE
    its connection is dropped."""
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await ws.close(code=code, message=reason.encode())
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()


# ---- frames --------------------------------------------------------------------------------

async def frames_ws(request: web.Request) -> web.WebSocketResponse:
    lease = _lease(request)
    opts = FrameOptions.parse(request.query)
    pool = _pool(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_INPUT_MESSAGE)
    await ws.prepare(request)
    if request.transport is not None:  # a viewer on this host: no pacing (see loopback.py)
        loopback.unpace(request.transport.get_extra_info("socket"))
    stats = ViewerStats()
    touch = _Toucher(pool, lease.session_id)
    page = lease.page
    reason = "client closed"
    async with request.app[appkeys.BROADCASTERS].watch(lease.session_id, page) as bc:
        async def stream() -> None:
            nonlocal reason
            await send_frames(ws.send_bytes, bc, opts, framerate=page.framerate, stats=stats,
                              on_sent=touch)
            reason = _end_reason(lease)

        async def watch() -> None:
            nonlocal reason
            reason = await _lease_gone(lease)

        await _first_done(stream(), watch(), _drain(ws))
    logger.debug("frames of %s: sent %d, skipped %d (%s)", lease.session_id[:6], stats.sent,
                 stats.skipped, reason)
    if not ws.closed:
        await _close_or_drop(ws, request, 1001, f"lease ended: {reason}"[:120])
    return ws


# ---- input ---------------------------------------------------------------------------------


async def apply_event(page: Any, event: Any) -> None:
    """Validates then applies one event; raises InvalidEvent before touching the page."""
    await inputs.parse(event, page)(page)


def _state(page: Any) -> dict[str, Any]:
    return {"type": "state", "url": getattr(page, "url", ""), "title": getattr(page, "title", ""),
            "cursor": getattr(page, "cursor", "default"), "width": page.width,
            "height": page.height, "framerate": page.framerate,
            "dialog": _dialog(getattr(page, "dialog", None))}


async def input_ws(request: web.Request) -> web.WebSocketResponse:
    lease = _lease(request)
    pool = _pool(request)
    page = lease.page
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_INPUT_MESSAGE)
    await ws.prepare(request)
    outbox = Outbox(coalesce=COALESCED, limit=MAX_QUEUED)
    touch = _Toucher(pool, lease.session_id)
    # the live view is a person: its input takes the page's focus (free, or the agent's),
    # which it keeps until it closes; someone else's focus refuses it (lkpool/focus.py)
    focus, identity = Focus.of(page), f"view:{next(_viewers)}"

    listener_ids = [
        page.on(name, lambda value, make=make: outbox.put(make(value)))
        for name, make in PAGE_EVENTS.items()
    ]
    outbox.put(_state(page))

    async def writer() -> None:
        while (msg := await outbox.get()) is not None:
            await ws.send_json(msg)

    loads: set[asyncio.Task] = set()

    async def run(apply: inputs.Apply, event: Any) -> None:
        """Applies one event; its ack or error goes out when it is done."""
        try:
            await apply(page)
        except (LkpoolError, ValueError) as exc:
            outbox.put(inputs.error_message(exc, event))
            return
        if isinstance(event, dict) and "id" in event:
            outbox.put({"type": "ack", "id": event["id"]})

    async def on_message(text: str) -> None:
        event: Any = None
        try:
            try:
                event = edge.loads(text)
            except InvalidArgument as exc:
                raise inputs.InvalidEvent(f"not JSON: {exc}") from None
            apply = inputs.parse(event, page)
            if not focus.request(identity):
                raise FocusHeld(f"{focus.holder} has the focus of this page")
        except (LkpoolError, ValueError) as exc:
            outbox.put(inputs.error_message(exc, event))
            return
        touch()
        if event.get("type") not in WAITS_FOR_LOAD:
            await run(apply, event)
            return
        # a navigation is sent now, in order with the events around it, but its wait for
        # the new document's load (up to seconds) must not hold the events behind it: the
        # live view's user keeps the mouse and the keyboard while a slow page loads. Its
        # ack still comes after the load, which is what an agent waits for.
        task = asyncio.Task(run(apply, event), loop=asyncio.get_running_loop(),
                            eager_start=True)  # eager: its message leaves before we return
        loads.add(task)
        task.add_done_callback(loads.discard)

    async def watch() -> None:
        reason = await _lease_gone(lease)
        outbox.end({"type": "closed", "reason": reason})
        await asyncio.Event().wait()  # the writer ends the exchange

    try:
        await _first_done(writer(), watch(), _drain(ws, on_message), outbox.wait_overflow())
    finally:
        for task in loads:
            task.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        for cb_id in listener_ids:
            page.off(cb_id)
        focus.release(identity)
    if outbox.overflowed:
        logger.info("input socket of %s… closed: its reader stayed behind",
                    lease.session_id[:6])
        await _close_or_drop(ws, request, 1008, f"the reader stayed behind (over {MAX_QUEUED} "
                                                "messages waiting)")
    elif not ws.closed:
        await _close_or_drop(ws, request, 1001, "lease ended")
    return ws


async def input_post(request: web.Request) -> web.Response:
    """One event or a list of them; all are validated before any is applied."""
    lease = _lease(request)
    page = lease.page
    try:
        body = await read_json(request, types=(dict, list))
    except UnsupportedMediaType:
        raise
    except InvalidArgument as exc:
        return web.json_response(inputs.error_message(inputs.InvalidEvent(f"not JSON: {exc}")),
                                 status=400)
    events = body if isinstance(body, list) else [body]
    applies = []
    for i, event in enumerate(events):
        try:
            applies.append(inputs.parse(event, page))
        except inputs.InvalidEvent as exc:
            msg = inputs.error_message(exc, event)
            if isinstance(body, list):
                msg["index"] = i
            return web.json_response(msg, status=400)
    _pool(request).touch(lease.session_id)
    for apply in applies:
        await apply(page)
    handled = getattr(page, "input_handled", None)  # the answer means handled, not sent
    if handled is not None:
        await handled()
    return web.json_response({"ok": True, "applied": len(applies)})


# ---- registration --------------------------------------------------------------------------

async def _broadcasters_ctx(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.BROADCASTERS] = Broadcasters()
    yield
    # viewers still connected end now; their handlers close the sockets
    app[appkeys.BROADCASTERS].close_all()


def setup(app: web.Application) -> None:
    """Registers the frames, input, live view and lease list routes on `app`."""
    app.cleanup_ctx.append(_broadcasters_ctx)
    app.router.add_get("/session/{session_id}/frames", frames_ws)
    app.router.add_get("/session/{session_id}/input", input_ws)
    app.router.add_post("/session/{session_id}/input", input_post)
    view.setup(app)
