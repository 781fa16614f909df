"""The MCP server over streamable HTTP at /mcp, driven by the `mcp` package's own client
against a real server: it opens a browser, navigates, returns images of the page, and the
leases a session opened end with the session; web pages and token-less clients are refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from lkpool.config import Settings
from tests.agents.conftest import FORM, image, open_red_then_form
from tests.server.conftest import run_server, wait_until
from tests.support.pages import serve_pages, solid

pytestmark = pytest.mark.timeout(120)

TOKEN = "mcp-http-secret"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "attacker", "version": "1"}}}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream",
              "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def client_of(base: str, mode: str = "legacy") -> AsyncIterator[Client]:
    """The package's client over HTTP with the token; "legacy" is the handshake protocol
    (with an MCP session), "auto" the 2026 one (no session) for this server."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http),
                   mode=mode) as client:
        yield client


async def test_mcp_over_http_drives_a_page_and_the_session_ends_its_leases(
        settings: Settings) -> None:
    """open_browser, screenshot, navigate and close_browser work over /mcp with the token; a
    browser left open is released when the client ends its session (DELETE)."""
    small = settings.replace(width=640, height=480, audio=False, max_instances=2,
                             acquire_timeout=30, token=TOKEN)
    async with serve_pages({"/form": FORM, "/red": solid("rgb(255,0,0)")}) as site, \
            run_server(small) as server:
        async with client_of(server.base) as client:
            sid = await open_red_then_form(client, site)
            closed = await client.call_tool("close_browser", {"session_id": sid})
            assert not closed.is_error and not server.pool.list()
            kept = await client.call_tool("open_browser", {"url": f"{site}/red"})
            assert not kept.is_error and len(server.pool.list()) == 1
            # another session does not see this one's browser
            async with client_of(server.base) as other:
                kept_id = json.loads(kept.content[0].text)["session_id"]
                foreign = await other.call_tool("screenshot", {"session_id": kept_id})
                assert foreign.is_error and "was opened by this client" in \
                    foreign.content[0].text
        await wait_until(lambda: not server.pool.list(), timeout=20,
                         what="the session's lease to end")
        # the 2026 protocol has no session: a lease lives from one request to the next
        async with client_of(server.base, mode="auto") as client:
            opened = await client.call_tool("open_browser", {"url": f"{site}/red"})
            assert not opened.is_error, opened
            sid = json.loads(opened.content[0].text)["session_id"]
            assert tuple(image(await client.call_tool(
                "screenshot", {"session_id": sid}))[240, 320]) == (255, 0, 0)
            closed = await client.call_tool("close_browser", {"session_id": sid})
            assert not closed.is_error and not server.pool.list()


async def test_mcp_over_http_refuses_web_pages_and_missing_tokens(settings: Settings) -> None:
    """As the attacker: a foreign page's POST to /mcp (its Origin), a rebinding page (its
    Host) and a client without the token are refused before any MCP session opens."""
    small = settings.replace(width=320, height=240, audio=False, token=TOKEN)
    async with run_server(small) as server:
        url = server.url("/mcp")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        attempts = {
            "foreign origin": (403, {**auth, "Origin": "http://evil.example"}),
            "rebinding host": (403, {**auth, "Host": "evil.example"}),
            "no token": (401, {}),
            "wrong token": (401, {"Authorization": "Bearer guess"}),
        }
        for what, (status, headers) in attempts.items():
            async with server.http.post(url, json=INITIALIZE,
                                        headers={**MCP_ACCEPT, **headers}) as resp:
                body = await resp.text()
                assert resp.status == status, (what, resp.status, body)
                assert "mcp-session-id" not in resp.headers, what
                assert "serverInfo" not in body, what
        # the same request from a client with the token opens a session
        async with server.http.post(url, json=INITIALIZE,
                                    headers={**MCP_ACCEPT, **auth}) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers.get("mcp-session-id")
            assert "serverInfo" in await resp.text()


async def test_mcp_event_stream_ends_when_its_client_leaves(settings: Settings) -> None:
    """A session's GET event stream whose client drops its connection is ended on the
    server (one stream per session: a second one is accepted again, not 409)."""
    small = settings.replace(width=320, height=240, audio=False, num_warm=0, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with run_server(small) as server:
        url = server.url("/mcp")
        async with server.http.post(url, json=INITIALIZE,
                                    headers={**MCP_ACCEPT, **auth}) as resp:
            assert resp.status == 200, await resp.text()
            session = {**auth, "mcp-session-id": resp.headers["mcp-session-id"],
                       "mcp-protocol-version": INITIALIZE["params"]["protocolVersion"]}
            await resp.text()
        async with server.http.post(url, headers={**MCP_ACCEPT, **session}, json={
                "jsonrpc": "2.0", "method": "notifications/initialized"}) as resp:
            assert resp.status == 202, await resp.text()
        stream = {**session, "Accept": "text/event-stream"}

        async def open_stream() -> int:
            async with aiohttp.ClientSession() as http, http.get(url, headers=stream) as r:
                if r.status == 200:
                    assert r.headers["Content-Type"].startswith("text/event-stream")
                return r.status  # leaving closes this client's connection

        assert await open_stream() == 200
        statuses: list[int] = []

        async def again() -> bool:
            statuses.append(await open_stream())
            return statuses[-1] == 200

        deadline = asyncio.get_running_loop().time() + 20
        while not await again():
            assert asyncio.get_running_loop().time() < deadline, statuses
            await asyncio.sleep(0.2)
        assert set(statuses) <= {200, 409}, statuses
        async with server.http.delete(url, headers=session) as resp:
            assert resp.status == 200, await resp.text()


async def test_mcp_reads_a_body_that_arrives_in_pieces(settings: Settings) -> None:
    """An initialize request sent chunked, in pieces with pauses between them, reaches the
    MCP app whole and opens a session (the bridge streams the body, it does not cut it)."""
    small = settings.replace(width=320, height=240, audio=False, num_warm=0, token=TOKEN)
    body = json.dumps(INITIALIZE).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16):
            yield body[start:start + 16]
            await asyncio.sleep(0.01)

    async with run_server(small) as server:
        async with server.http.post(server.url("/mcp"), data=pieces(), headers={
                **MCP_ACCEPT, "Authorization": f"Bearer {TOKEN}"}) as resp:
            text = await resp.text()
            assert resp.status == 200, text
            assert resp.headers.get("mcp-session-id") and "serverInfo" in text
