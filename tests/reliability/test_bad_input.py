"""Bad input: the OpenAPI document kept true, schemathesis against the running server, the
proxy's refusals, and the size limits of bodies and WebSocket messages.

tests/server/test_rest.py and test_proxy.py cover bad query values, bodies and proxied paths
one by one; this adds generated requests over every documented endpoint and the escapes and
limits they do not reach.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import sys

import aiohttp
from aiohttp import web

from lkpool.server import rest
from lkpool.server.openapi import SPEC
from lkpool.server.stream import MAX_INPUT_MESSAGE
from tests.server.conftest import run_server
from tests.support.pages import serve_pages

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
# not_a_server_error is left out on purpose: it fails on every 5xx, and a full pool's 503
# (with Retry-After) is documented. A 500 is not in the document, so status_code_conformance
# catches it, and the test also fails on any error our server logs.
CHECKS = ("status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")
EXAMPLES = 60  # per operation: 7 operations, a few hundred requests in all


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in SPEC["paths"].items()
            for method in item if method != "parameters"}


async def test_openapi_document_matches_the_routes(small) -> None:
    """GET /openapi.json is an OpenAPI 3 document of exactly the REST routes: each documented
    operation is routed, each REST route is documented, each documented error is JSON."""
    async with run_server(small.replace(num_warm=0)) as srv:
        status, doc = await srv.json("GET", "/openapi.json")
        assert status == 200 and doc == SPEC and doc["openapi"].startswith("3.")
        routed = {(r.method, r.resource.canonical) for r in srv.app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
        documented = _documented()
        assert documented <= routed, documented - routed
        rest_routes = {(r.method, r.path) for r in rest.routes}
        assert rest_routes <= documented, rest_routes - documented
        assert ("GET", "/openapi.json") in routed
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                for code, response in op["responses"].items():
                    if code.startswith(("4", "5")):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/Error"}, (path, code)


async def test_schemathesis_finds_no_500_and_no_breach(small, tmp_path, caplog) -> None:
    """schemathesis (examples, coverage and fuzzing phases, positive and negative data) over
    every documented operation of a running server: no 500, every status, content type,
    header and body as the document says, and nothing our server logs as an error."""
    caplog.set_level(logging.WARNING, logger="lkpool")
    settings = small.replace(num_warm=0, max_instances=1, acquire_timeout=0.0)
    async with run_server(settings) as srv:
        proc = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "run", srv.url("/openapi.json"), "--checks", CHECKS,
            "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES),
            "--workers", "2", "--seed", "6", "--no-color", "--request-timeout", "30",
            "--generation-database", "none", "--suppress-health-check", "all",
            "--report", "junit", "--report-dir", str(tmp_path / "report"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path)
        out, _ = await asyncio.wait_for(proc.communicate(), 600)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        n = sum(1 for item in SPEC["paths"].values() for m in item if m != "parameters")
        assert f"{n} selected / {n} total" in text and f"Tested: {n}" in text, text[-3000:]
        generated = int(re.search(r"(\d+) generated", text).group(1))
        assert generated >= 200, text[-3000:]
    errors = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.ERROR and r.name.startswith("lkpool")]
    assert not errors, errors[:5]


async def test_proxy_refusals_and_size_limits(small) -> None:
    """The proxy refuses ids that are not sessions, '..' paths, and absolute URLs or Hosts
    naming another server (which never sees a request); WebSocket messages over the limit
    close the socket with 1009; bodies over the limit get 413 JSON everywhere."""
    decoy_hits: list[str] = []

    async def decoy(request: web.Request) -> web.Response:
        decoy_hits.append(request.path)
        return web.json_response({"webSocketDebuggerUrl": "ws://decoy/", "Browser": "decoy"})

    settings = small.replace(num_warm=1, max_instances=1, max_ws_message_bytes=4096)
    async with serve_pages({}) as _site, run_server(settings) as srv:
        decoy_app = web.Application()
        decoy_app.router.add_get("/{tail:.*}", decoy)
        runner = web.AppRunner(decoy_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        decoy_host = f"127.0.0.1:{runner.addresses[0][1]}"
        try:
            body = await srv.allocate(timeout=120)
            sid = body["session_id"]
            port = body["debugging_port"]
            # ids that are not sessions: made up, the instance's port, a path trick
            for fake in (secrets.token_urlsafe(24), str(port), "..", "%2e%2e", sid[:-1]):
                status, err = await srv.json("GET", f"/session/{fake}/json/version")
                assert status in (400, 404) and "error" in err, (fake, status, err)
            for path in (f"/session/{sid}/json/../version", f"/session/{sid}/../browsers",
                         f"/session/{sid}/devtools/../json/version"):
                status, _ = await _raw(srv, f"GET {path} HTTP/1.1\r\n"
                                            f"Host: {srv.base.removeprefix('http://')}\r\n")
                assert status in (400, 404), (path, status)
            # absolute-form request targets and Host headers naming the decoy
            for target in (f"http://{decoy_host}/session/{sid}/json/version",
                           f"http://{decoy_host}/json/version",
                           f"http://127.0.0.1:{port}/json/version"):
                status, text = await _raw(srv, f"GET {target} HTTP/1.1\r\n"
                                               f"Host: {decoy_host}\r\n")
                assert "decoy" not in text and status in (200, 400, 403, 404), (target, text)
            status, version = await srv.json("GET", f"/session/{sid}/json/version",
                                             headers={"Host": decoy_host})
            assert status == 200 and version.get("Browser") != "decoy"
            assert not decoy_hits, decoy_hits

            # WebSocket messages over the limits: the proxy's and the input stream's
            async with srv.http.ws_connect(body["ws_url"], max_msg_size=0) as ws:
                await ws.send_str("x" * 5000)
                msg = await ws.receive(timeout=30)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 1009, (msg, ws.close_code)
            async with srv.http.ws_connect(srv.url(f"/session/{sid}/input")) as ws:
                await ws.send_str("{" * (MAX_INPUT_MESSAGE + 1))
                while (msg := await ws.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
                    pass  # the input socket greets with the page's state first
                assert ws.close_code == 1009, (msg, ws.close_code)
            assert srv.pool.get(sid).active  # a refused message does not end the lease

            # bodies over the limit, on every endpoint that reads one
            big = b"x" * (settings.max_body_bytes + 1)
            for method, path in (("POST", "/browser"), ("POST", f"/browser/{sid}/timeout"),
                                 ("POST", f"/session/{sid}/input"),
                                 ("POST", f"/session/{sid}/publish"),
                                 ("PUT", f"/session/{sid}/json/new")):
                status, err = await srv.json(method, path, data=big)
                assert (status, err.get("error")) == (413, "request_too_large"), (path, err)
            status, _ = await srv.json("DELETE", f"/browser/{sid}")
            assert status == 200
        finally:
            await runner.cleanup()


async def _raw(srv, head: str) -> tuple[int, str]:
    """One request written by hand (aiohttp's client would normalise the target)."""
    host, port = srv.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write((head + "Connection: close\r\n\r\n").encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    text = data.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text
