"""Publishing a lease's page into a LiveKit room.

    POST   /session/{id}/publish   {"livekit_url", "token"}        join with the caller's token
                                   {"room", "identity"}             or one this server signs
                                   optional: "allow_input": [identities], "framerate": 1..60
                                   -> 200 {room, identity, video_track_sid, audio_track_sid,
                                           events_topic, input_topic}
    GET    /session/{id}/publish   -> 200 {"publishing": bool, ...counters}
    DELETE /session/{id}/publish   -> 200, 404 when not publishing

Under /session/{id}/ the session id is the capability (lkpool.server.auth); the signed form also
needs the server's TOKEN when one is set. One publication per lease. It ends, and leaves the room,
on DELETE, when the lease ends (for any reason), when its page closes, when the room disconnects,
or at server shutdown. While it runs, the lease counts as in use (frames flow), so it does not
idle out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from livekit import rtc

from ..config import MAX_FRAMERATE
from ..errors import InvalidArgument
from ..livekit_token import Credentials, check_name, publisher_token
from ..pool import Lease
from ..publish import PagePublisher, connect_room
from ..tasks import spawn
from .appkeys import POOL, PUBLICATIONS, SETTINGS
from .auth import presented_token
from .edge import read_json

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
TOUCH_INTERVAL = 1.0
MAX_ALLOWED = 100


@dataclass(eq=False)
class Publication:
    lease: Lease
    room: rtc.Room
    publisher: PagePublisher
    watcher: asyncio.Task | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self) -> dict[str, Any]:
        p = self.publisher
        assert p.video_track is not None and p.audio_track is not None  # it publishes
        return {"publishing": True, "session_id": self.lease.session_id, "room": self.room.name,
                "identity": self.room.local_participant.identity,
                "video_track_sid": p.video_track.sid, "audio_track_sid": p.audio_track.sid,
                "events_topic": p.events_topic, "input_topic": p.input_topic,
                "frames_sent": p.frames_sent, "frames_repeated": p.frames_repeated,
                "audio_frames_sent": p.audio_frames_sent, "inputs_applied": p.inputs_applied,
                "inputs_rejected": p.inputs_rejected}




async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, types=(dict,))
    if body is None:
        raise InvalidArgument("the body must be a JSON object")
    return body


def _join_args(body: dict[str, Any], request: web.Request, lease: Lease) -> tuple[str, str]:
    """(livekit_url, token): the caller's, or a token this server signs for room/identity.

    A token this server signs goes only to its own LIVEKIT_URL (a URL the caller chose would
    receive a way into the server's LiveKit project), for a room and an identity that start
    with LIVEKIT_ROOM_PREFIX (so it can neither enter the project's other rooms nor pose as
    their people), and lives no longer than the lease. While the server has credentials, a
    caller's own token also goes only to LIVEKIT_URL: the server is no client of other
    LiveKit servers then."""
    settings = request.app[SETTINGS]
    signing = bool(settings.livekit_api_key and settings.livekit_api_secret)
    caller_url = body.get("livekit_url")
    if caller_url is not None and not isinstance(caller_url, str):
        raise InvalidArgument("livekit_url must be a string")
    if signing and caller_url not in (None, settings.livekit_url):
        raise InvalidArgument("this server publishes only to its own LIVEKIT_URL: leave "
                              "livekit_url out")
    if "token" in body:
        unknown = {"room", "identity"} & body.keys()
        if unknown:
            raise InvalidArgument("give either livekit_url and token, or room and identity")
        url = caller_url or (settings.livekit_url if signing else None)
        if not url:
            raise InvalidArgument("livekit_url is required with a token")
        if not isinstance(body["token"], str):
            raise InvalidArgument("token must be a string")
        return url, body["token"]
    if "room" not in body or "identity" not in body:
        raise InvalidArgument("give livekit_url and token, or room and identity")
    # the session id lets its holder publish; having the server sign a way into any room of
    # its LiveKit project is more, so it also needs the server's TOKEN when one is set
    if settings.token and not hmac.compare_digest(presented_token(request).encode(),
                                                  settings.token.encode()):
        raise web.HTTPUnauthorized(text="room and identity (a token this server signs) need "
                                        "the server's token; or pass livekit_url and token")
    prefix = settings.livekit_room_prefix
    room = check_name("room", body["room"], prefix=prefix)
    identity = check_name("identity", body["identity"], prefix=prefix)
    creds = Credentials.from_settings(settings)
    ttl = datetime.timedelta(seconds=max(1.0, lease.remaining))
    return creds.url, publisher_token(creds, room, identity, ttl=ttl)


def _allowed(body: dict[str, Any]) -> frozenset[str] | None:
    raw = body.get("allow_input")
    if raw is None:
        return None
    if (not isinstance(raw, list) or len(raw) > MAX_ALLOWED
            or not all(isinstance(i, str) and i for i in raw)):
        raise InvalidArgument(f"allow_input must be a list of at most {MAX_ALLOWED} "
                              "participant identities")
    return frozenset(raw)


def _framerate(body: dict[str, Any]) -> int | None:
    fps = body.get("framerate")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int)
                            or not 1 <= fps <= MAX_FRAMERATE):
        raise InvalidArgument(f"framerate must be an integer in 1..{MAX_FRAMERATE}")
    return fps


@routes.post("/session/{session_id}/publish")
async def start(request: web.Request) -> web.Response:
    lease = request.app[POOL].get(request.match_info["session_id"])  # 404 when unknown
    pubs = request.app[PUBLICATIONS]
    if lease.session_id in pubs:
        raise web.HTTPConflict(text="this session is already publishing: DELETE it first")
    body = await _body(request)
    url, token = _join_args(body, request, lease)
    allowed, framerate = _allowed(body), _framerate(body)
    settings = request.app[SETTINGS]
    pubs[lease.session_id] = None  # claimed before any await: a second POST gets 409
    pub = None
    try:
        room = await connect_room(url, token, timeout=settings.proxy_connection_timeout)
        publisher = PagePublisher(lease.page, framerate=framerate, allowed_identities=allowed)
        pub = Publication(lease, room, publisher)
        await publisher.publish(room)
    except BaseException:
        pubs.pop(lease.session_id, None)
        if pub is not None:
            await _close(pub)
        elif "room" in locals():
            await room.disconnect()
        raise
    pubs[lease.session_id] = pub
    pub.watcher = spawn(_watch(request.app, pub), name=f"publish-{lease.session_id[:6]}",
                        log=logger)
    logger.info("session %s… publishing to room %s", lease.session_id[:6], room.name)
    return web.json_response(pub.describe())


@routes.get("/session/{session_id}/publish")
async def status(request: web.Request) -> web.Response:
    lease = request.app[POOL].get(request.match_info["session_id"])
    pubs = request.app[PUBLICATIONS]
    pub = pubs.get(lease.session_id)
    return web.json_response(pub.describe() if pub else {
        "publishing": False, "starting": lease.session_id in pubs})


@routes.delete("/session/{session_id}/publish")
async def stop(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    pubs = request.app[PUBLICATIONS]
    pub = pubs.get(session_id)
    if pub is None:
        request.app[POOL].get(session_id)  # 404 unknown_session first
        if session_id in pubs:
            raise web.HTTPConflict(text="this session is still joining its room")
        raise web.HTTPNotFound(text="this session is not publishing")
    await _end(request.app, pub, "stopped")
    return web.json_response({"publishing": False, "session_id": session_id})


async def _watch(app: web.Application, pub: Publication) -> None:
    """Ends the publication with whichever comes first; keeps the lease in use meanwhile."""
    pub.publisher.on("closed", pub.stopped.set)  # the page closed
    pub.room.on("disconnected", lambda *_: pub.stopped.set())
    lease_end = asyncio.ensure_future(pub.lease.wait_ended())
    stopped = asyncio.ensure_future(pub.stopped.wait())
    try:
        while not (lease_end.done() or stopped.done()):
            pub.lease.touch()
            await asyncio.wait({lease_end, stopped}, timeout=TOUCH_INTERVAL,
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        lease_end.cancel()
        stopped.cancel()
    reason = f"lease {pub.lease.end_reason}" if lease_end.done() else "page or room ended"
    await _end(app, pub, reason, from_watcher=True)


async def _end(app: web.Application, pub: Publication, why: str,
               from_watcher: bool = False) -> None:
    if app[PUBLICATIONS].get(pub.lease.session_id) is not pub:
        return  # already ended by another path
    del app[PUBLICATIONS][pub.lease.session_id]
    logger.info("session %s… stopped publishing: %s", pub.lease.session_id[:6], why)
    if pub.watcher and not from_watcher:
        pub.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pub.watcher
    await _close(pub)


async def _close(pub: Publication) -> None:
    await pub.publisher.aclose()  # unpublishes while the room is still connected
    with contextlib.suppress(Exception):
        await pub.room.disconnect()


async def _publications_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PUBLICATIONS] = {}
    yield
    # shutdown: leave every room before the pool (torn down after us) stops the browsers
    for pub in list(app[PUBLICATIONS].values()):
        if pub is not None:
            await _end(app, pub, "server stopping")


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_publications_ctx)
    app.router.add_routes(routes)
