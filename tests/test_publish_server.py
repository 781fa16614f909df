"""POST/GET/DELETE /session/{id}/publish on the real server (real pool, engine cef with the
painting stand-in of tests/support/cef.py, so no Chromium starts).

There is no LiveKit server here: the refusals are checked against a local HTTP server that
answers 401 the way LiveKit does to a bad token, and records the token it was shown so the
server-signed form can be checked. The full path (join, publish, a viewer sees the page, the
lease's end stops it) runs against a real server only when LIVEKIT_URL, LIVEKIT_API_KEY and
LIVEKIT_API_SECRET are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

import numpy as np
import pytest
from aiohttp import web
from livekit import api, rtc

from lkpool.config import Settings
from tests.server.conftest import run_server, wait_until
from tests.support.cef import cef_settings

KEY, SECRET = "devkey", "s" * 32


@contextlib.asynccontextmanager
async def refusing_livekit():
    """A local stand-in for a LiveKit server that refuses every join with 401, and keeps the
    tokens it was shown (query access_token or Authorization: Bearer)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        token = request.query.get("access_token") or request.headers.get(
            "Authorization", "").removeprefix("Bearer ")
        if token:
            seen.append(token)
        return web.Response(status=401, text="invalid token")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def server_settings(settings: Settings, **extra) -> Settings:
    return cef_settings(settings).replace(num_warm=1, max_instances=2, width=160, height=120,
                                          framerate=10, proxy_connection_timeout=3.0, **extra)


async def test_publish_refusals_are_clear_json_errors(cef_standin, settings):
    """Unknown session 404, bad bodies 400, no server credentials 400, an unreachable or
    refusing LiveKit 502; nothing is left publishing after a failure."""
    async with refusing_livekit() as (lk_url, _), run_server(server_settings(settings)) as srv:
        status, body = await srv.json("POST", "/session/nope/publish", json={"room": "r"})
        assert status == 404 and body["error"] == "unknown_session"
        sid = (await srv.allocate())["session_id"]
        path = f"/session/{sid}/publish"
        for bad, needle in ((b"not json", "not valid JSON"), (b"[1]", "JSON object"),
                            (b"{}", "room and identity"),
                            (b'{"token":"t"}', "livekit_url is required"),
                            (b'{"room":"lkpool-r","identity":""}', "identity must be"),
                            (b'{"room":"lkpool-r","identity":"lkpool-i"}', "LIVEKIT_API_KEY")):
            status, body = await srv.json("POST", path, data=bad,
                                          headers={"Content-Type": "application/json"})
            assert status == 400 and needle in body["detail"], (bad, body)
        status, body = await srv.json("POST", path, json={"livekit_url": "ftp://x",
                                                          "token": "t"})
        assert status == 400 and "ws(s)://" in body["detail"]
        status, body = await srv.json("POST", path, json={"livekit_url": lk_url,
                                                          "token": "bad"})
        assert status == 502 and body["error"] == "livekit_unreachable", body
        assert "401" in body["detail"]
        assert await srv.json("GET", path) == (200, {"publishing": False, "starting": False})
        status, body = await srv.json("DELETE", path)
        assert status == 404 and "not publishing" in body["detail"]


async def test_server_signs_a_publisher_token_only_with_its_token(cef_standin, settings):
    """{"room","identity"} needs the server's TOKEN when set; the JWT it then signs with its
    LiveKit key grants joining that room and publishing, as that identity."""
    async with refusing_livekit() as (lk_url, seen):
        s = server_settings(settings, token="t0ken", livekit_url=lk_url, livekit_api_key=KEY,
                            livekit_api_secret=SECRET)
        async with run_server(s) as srv:
            auth = {"Authorization": "Bearer t0ken"}
            status, lease = await srv.json("POST", "/browser", headers=auth)
            assert status == 200, lease
            path = f"/session/{lease['session_id']}/publish"
            join = {"room": "lkpool-demo", "identity": "lkpool-page-bot"}
            status, body = await srv.json("POST", path, json=join)
            assert status == 401 and "token" in body["detail"]
            status, body = await srv.json("POST", path, json=join, headers=auth)
            assert status == 502 and body["error"] == "livekit_unreachable"
    claims = api.TokenVerifier(KEY, SECRET).verify(seen[0])
    assert claims.identity == "lkpool-page-bot"
    assert claims.video.room == "lkpool-demo"
    assert claims.video.room_join and claims.video.can_publish
    assert not claims.video.can_subscribe


LIVE = all(os.environ.get(k) for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"))


@pytest.mark.skipif(not LIVE, reason="needs a LiveKit server: set LIVEKIT_URL, "
                                     "LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
async def test_published_page_reaches_a_viewer_and_stops_with_the_lease(cef_standin, settings):
    """Against a real LiveKit server: a viewer in the room receives the page's screen share
    with its colour and its url on the data topic; releasing the lease unpublishes it."""
    url, key, secret = (os.environ[k] for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY",
                                                "LIVEKIT_API_SECRET"))
    room_name = f"lkpool-test-{uuid.uuid4().hex[:8]}"
    s = server_settings(settings, livekit_url=url, livekit_api_key=key,
                        livekit_api_secret=secret)
    viewer = rtc.Room()
    tracks: asyncio.Queue[rtc.Track] = asyncio.Queue()
    urls: asyncio.Queue[bytes] = asyncio.Queue()
    viewer.on("track_subscribed", lambda track, *_: tracks.put_nowait(track))
    viewer.on("data_received", lambda pkt: urls.put_nowait(pkt.data))
    token = (api.AccessToken(key, secret).with_identity("viewer")
             .with_grants(api.VideoGrants(room_join=True, room=room_name)).to_jwt())
    await viewer.connect(url, token)
    try:
        async with run_server(s) as srv:
            sid = (await srv.allocate(url="about:blank#ff0000"))["session_id"]
            status, body = await srv.json("POST", f"/session/{sid}/publish",
                                          json={"room": room_name, "identity": "lkpool-page"})
            assert status == 200, body
            video = None
            while video is None:
                track = await asyncio.wait_for(tracks.get(), 20)
                if track.kind == rtc.TrackKind.KIND_VIDEO:
                    video = track
            stream = rtc.VideoStream(video, format=rtc.VideoBufferType.BGRA)
            try:
                async for ev in stream:
                    f = ev.frame
                    px = np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 4)[
                        f.height // 2, f.width // 2]
                    if px[2] > 200 and px[1] < 60 and px[0] < 60:
                        break
            finally:
                await stream.aclose()
            assert b"about:blank#ff0000" in await asyncio.wait_for(urls.get(), 10)
            assert (await srv.json("DELETE", f"/browser/{sid}"))[0] == 200
            await wait_until(lambda: not any(
                p.identity == "lkpool-page" for p in viewer.remote_participants.values()),
                what="the publisher leaving the room")
    finally:
        await viewer.disconnect()
