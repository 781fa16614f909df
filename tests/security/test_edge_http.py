"""Attacks over plain HTTP on the real server: a cross-site form, a rebound Host name, JSON
that is not JSON or nests too deep, and a lease extended past MAX_LEASE_TIMEOUT."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.security.conftest import EVIL, REBOUND, host_of, request
from tests.server.conftest import run_server

pytestmark = pytest.mark.timeout(120)


async def test_cross_site_text_plain_post_allocates_nothing(edge) -> None:
    """A hostile page's form POST (text/plain, Origin evil.example) takes no browser."""
    async with run_server(edge) as srv:
        form = b'{"url": "about:blank", "x": "="}'  # what <form enctype=text/plain> sends
        status, body = await request(srv.base, "POST", "/browser?timeout=60", headers={
            "Origin": f"http://{EVIL}", "Content-Type": "text/plain",
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, data=form)
        assert (status, body["error"]) == (403, "origin_not_allowed"), body
        # the same without a JSON content type, from a client that sends no Origin: 415
        status, body = await request(srv.base, "POST", "/browser?timeout=60",
                                     headers={"Content-Type": "text/plain"}, data=form)
        assert (status, body["error"]) == (415, "unsupported_media_type"), body
        # a query-only POST from the foreign page is refused as well
        status, body = await request(srv.base, "POST", "/browser?timeout=60",
                                     headers={"Origin": f"http://{EVIL}"})
        assert status == 403, body
        # DELETE and extend, too, whatever the session id
        for method, path in (("DELETE", "/browser/x"), ("POST", "/browser/x/timeout")):
            status, body = await request(srv.base, method, path,
                                         headers={"Origin": "null"})
            assert status == 403, (path, body)
        assert not srv.pool.slots() and not srv.pool.list()


async def test_rebound_host_reads_nothing(edge) -> None:
    """GET /browsers with Host rebind.attacker.example (DNS rebinding) is refused before
    any handler; the same name works once it is listed in ALLOWED_HOSTS."""
    async with run_server(edge) as srv:
        port = host_of(srv.base).rsplit(":", 1)[1]
        for path in ("/browsers", "/health", "/", "/session/x/json/version"):
            status, body = await request(srv.base, "GET", path,
                                         headers={"Host": f"{REBOUND}:{port}"})
            assert (status, body["error"]) == (403, "host_not_allowed"), (path, body)
        # the addresses and localhost names a local client uses still work
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}"):
            status, body = await request(srv.base, "GET", "/browsers", headers={"Host": host})
            assert status == 200, (host, body)
        # a browser on this server's own page: same-origin requests are accepted
        status, body = await request(srv.base, "DELETE", "/browser/x", headers={
            "Origin": srv.base, "Sec-Fetch-Site": "same-origin"})
        assert (status, body["error"]) == (404, "unknown_session"), body
    async with run_server(edge.replace(allowed_hosts=REBOUND)) as srv:
        port = host_of(srv.base).rsplit(":", 1)[1]
        status, _ = await request(srv.base, "GET", "/browsers",
                                  headers={"Host": f"{REBOUND}:{port}"})
        assert status == 200


async def test_no_origin_clients_and_public_health(edge) -> None:
    """Clients that send no Origin (curl, Playwright, the Python client) keep working; with
    TOKEN set /health answers without it (a container's check) and /browsers does not."""
    async with run_server(edge.replace(token="s3cret")) as srv:
        status, body = await request(srv.base, "GET", "/health")
        assert status in (200, 503) and "status" in body
        status, body = await request(srv.base, "GET", "/browsers")
        assert status == 401
        status, body = await request(srv.base, "GET", "/browsers",
                                     headers={"Authorization": "Bearer s3cret"})
        assert status == 200


async def test_nested_json_is_a_400_everywhere(edge) -> None:
    """10,000 nested brackets get a 400 JSON error from every JSON reader, HTTP and socket;
    a lease extended again and again never outlives MAX_LEASE_TIMEOUT from its start."""
    deep = b"[" * 10_000 + b"]" * 10_000
    deep_obj = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    json_type = {"Content-Type": "application/json"}
    async with run_server(edge.replace(max_lease_timeout=60.0)) as srv:
        for body in (deep, deep_obj):
            status, err = await request(srv.base, "POST", "/browser", headers=json_type,
                                        data=body)
            assert (status, err["error"]) == (400, "invalid_argument"), err
        lease = await srv.allocate(timeout=50)
        sid = lease["session_id"]
        for path in (f"/browser/{sid}/timeout", f"/session/{sid}/input",
                     f"/session/{sid}/publish"):
            for body in (deep, deep_obj):
                status, err = await request(srv.base, "POST", path, headers=json_type,
                                            data=body)
                assert status == 400 and "nested" in err["detail"], (path, err)
            status, err = await request(srv.base, "POST", path, data=b'{"x": 1}',
                                        headers={"Content-Type": "text/plain"})
            assert (status, err["error"]) == (415, "unsupported_media_type"), (path, err)
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{srv.base}/session/{sid}/input") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "state"
            await ws.send_str(deep.decode())
            answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "error" and "nested" in answer["detail"], answer
            await ws.send_json({"type": "reload", "id": 1})  # the socket still works
            while (answer := await ws.receive_json(timeout=20))["type"] != "ack":
                pass

        created = srv.pool.get(sid).created_at
        for _ in range(3):
            await asyncio.sleep(0.6)
            status, body = await request(srv.base, "POST", f"/browser/{sid}/timeout",
                                         headers=json_type, data=json.dumps({"timeout": 60}))
            assert status == 200, body
            assert body["expires_at"] <= created + 60.0 + 1e-6, (body, created)
