"""Server-signed LiveKit publishing: the signed token never reaches a URL the caller chose,
names only rooms and identities under LIVEKIT_ROOM_PREFIX, grants the least, and lives no
longer than the lease. (The CEF stand-in paints the page: no Chromium starts.)"""

from __future__ import annotations

import logging
import time

import jwt
import pytest
from livekit import api

from tests.server.conftest import run_server
from tests.test_publish_server import KEY, SECRET, refusing_livekit, server_settings

pytestmark = pytest.mark.timeout(120)


async def test_the_signed_token_never_goes_to_the_callers_url(cef_standin, settings,
                                                             caplog) -> None:
    """With server credentials, a caller's livekit_url (a listener of the attacker's) gets
    nothing, in either form; rooms and identities outside the prefix are refused; the one
    token sent goes to LIVEKIT_URL, lives no longer than the lease and only publishes. The
    logs of it all never hold the full session id."""
    caplog.set_level(logging.DEBUG)
    async with refusing_livekit() as (official, official_seen), \
            refusing_livekit() as (attacker, attacker_seen):
        s = server_settings(settings, livekit_url=official, livekit_api_key=KEY,
                            livekit_api_secret=SECRET)
        async with run_server(s) as srv:
            lease = await srv.allocate(timeout=40)
            path = f"/session/{lease['session_id']}/publish"
            for body in ({"room": "lkpool-a", "identity": "lkpool-b", "livekit_url": attacker},
                         {"token": "caller-token", "livekit_url": attacker}):
                status, err = await srv.json("POST", path, json=body)
                assert status == 400 and "LIVEKIT_URL" in err["detail"], (body, err)
            for body in ({"room": "boardroom", "identity": "lkpool-b"},
                         {"room": "lkpool-a", "identity": "ceo"}):
                status, err = await srv.json("POST", path, json=body)
                assert status == 400 and "LIVEKIT_ROOM_PREFIX" in err["detail"], (body, err)
            assert not official_seen
            status, err = await srv.json("POST", path,
                                         json={"room": "lkpool-a", "identity": "lkpool-b"})
            assert status == 502 and err["error"] == "livekit_unreachable", err
            await srv.pool.wait_ready()  # the lease's replacement is up before shutdown
    assert not attacker_seen, "a token reached the caller's URL"
    assert "publish" in caplog.text and lease["session_id"][:6] in caplog.text
    assert lease["session_id"] not in caplog.text
    assert len(official_seen) >= 1
    signed = official_seen[0]
    claims = api.TokenVerifier(KEY, SECRET).verify(signed)
    assert claims.identity == "lkpool-b" and claims.video.room == "lkpool-a"
    assert claims.video.can_publish and not claims.video.can_subscribe
    assert not claims.video.room_admin and not claims.video.room_create
    expires = jwt.decode(signed, options={"verify_signature": False})["exp"]
    assert expires <= time.time() + 40 + 1, "the token outlives the lease"


async def test_a_callers_token_may_go_to_its_url_without_server_credentials(
        cef_standin, settings) -> None:
    """Without server credentials nothing of the server's can leak: the caller's own token
    goes to the caller's own URL."""
    async with refusing_livekit() as (theirs, seen), \
            run_server(server_settings(settings)) as srv:
        lease = await srv.allocate(timeout=40)
        status, err = await srv.json("POST", f"/session/{lease['session_id']}/publish",
                                     json={"token": "their-token", "livekit_url": theirs})
        assert status == 502, err
        await srv.pool.wait_ready()  # the lease's replacement is up before shutdown
    assert seen == ["their-token"] or "their-token" in seen
