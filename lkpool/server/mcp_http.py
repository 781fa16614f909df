"""The MCP server over streamable HTTP at `/mcp`, served by the lkpool server itself.

The tools are those of `lkpool mcp` (lkpool/mcpserver.py); the `mcp` package's
StreamableHTTPSessionManager keeps the MCP sessions. It is an ASGI app, so `AsgiBridge`
hands it each aiohttp request: the body streamed as it arrives, the response (a JSON answer
or an SSE stream) written as the app sends it, and a client gone reported as
`http.disconnect`. The request has passed the edge (Host, Origin) and the TOKEN check
before it gets here, like any other route; the package's own DNS-rebinding check is off
because the edge already made it, with the server's ALLOWED_HOSTS / ALLOWED_ORIGINS.

Each MCP session (the handshake protocols, up to 2025-11-25) has its own leases (a
RestBrowsers over this server's REST API, on the address the client reached): they are
released when the session ends (the client's DELETE, the session idle for `LEASE_TIMEOUT`,
the server stopping) and expire with their lease in any case. The 2026 protocol has no
sessions: its clients' leases end by close_browser or their timeout (`sessionless`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .appkeys import MCP_ENDPOINT, SETTINGS

if TYPE_CHECKING:  # the mcp package is imported on the first request to /mcp
    from mcp.server.mcpserver import Context
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from ..mcpserver import RestBrowsers

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
DISCONNECT_POLL = 0.5  # seconds between looks at the connection once the body was read
BROWSERS = "lkpool.browsers"  # the key of a session's RestBrowsers in its connection state

Message = MutableMapping[str, Any]


class AsgiBridge:
    """One aiohttp request run through an ASGI app (HTTP only: the MCP app needs no more)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self._body_done = False
        self._ended = False  # the response was finished
        self._lost = False  # the client left while sending its body

    def scope(self) -> dict[str, Any]:
        request = self.request
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        local = transport.get_extra_info("sockname") if transport else None
        return {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": f"{request.version.major}.{request.version.minor}",
            "method": request.method, "scheme": request.scheme,
            "path": request.path, "raw_path": request.raw_path.split("?")[0].encode(),
            "query_string": request.query_string.encode(), "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.raw_headers],
            "client": tuple(peer[:2]) if peer else None,
            "server": tuple(local[:2]) if local else None,
        }

    def _gone(self) -> bool:
        transport = self.request.transport
        return self._ended or self._lost or transport is None or transport.is_closing()

    async def receive(self) -> Message:
        """The body in chunks as it arrives; then `http.disconnect` once the client went
        (or the response was finished), which is what ends an app waiting on it."""
        if not self._body_done:
            try:
                chunk = await self.request.content.readany()
            except (OSError, HttpProcessingError):  # the client left within its body
                self._body_done = self._lost = True
                return {"type": "http.disconnect"}
            self._body_done = self.request.content.at_eof()
            return {"type": "http.request", "body": chunk, "more_body": not self._body_done}
        while not self._gone():
            await asyncio.sleep(DISCONNECT_POLL)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.response is not None:
                raise RuntimeError("http.response.start sent twice")
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", ()):
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            self.response = response
            await response.prepare(self.request)  # an SSE stream's headers go out now
        elif kind == "http.response.body":
            if self.response is None or self._ended:
                raise RuntimeError("http.response.body out of order")
            if self._gone():
                raise OSError("the client went away")
            body = message.get("body", b"")
            if body:
                await self.response.write(body)  # written at once: SSE events are not held
            if not message.get("more_body", False):
                self._ended = True
                await self.response.write_eof()

    async def run(self, app: Any) -> web.StreamResponse:
        await app(self.scope(), self.receive, self.send)
        if self.response is None:
            raise web.HTTPInternalServerError(text="the MCP endpoint sent no answer")
        if not self._ended and not self._gone():
            self._ended = True
            await self.response.write_eof()
        return self.response


class McpEndpoint:
    """The app's MCP server and its session manager. Both start with the first request to
    /mcp (the `mcp` package takes a second to import, which a server that never serves MCP
    should not pay at start) and stop with the app."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.base = ""  # this server's address, as the clients reach it
        self._manager: StreamableHTTPSessionManager | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._starting = asyncio.Lock()
        self._closed = False
        self._sessionless: RestBrowsers | None = None

    def _token(self) -> str | None:
        return self.app[SETTINGS].token or None

    def sessionless(self) -> RestBrowsers:
        """The browsers of clients that have no MCP session (the 2026 protocol's
        per-request exchanges, which have none): nothing ends with them, so their leases
        end by close_browser or their timeout. Their session ids are the capability, as
        under /session/{id}/."""
        if self._sessionless is None:
            from ..mcpserver import RestBrowsers

            self._sessionless = RestBrowsers(self.base, token=self._token())
        return self._sessionless

    def browsers_of(self, ctx: Context) -> RestBrowsers:
        """The calling session's browsers: made on its first call, released as it ends."""
        from ..mcpserver import RestBrowsers

        # the session's Connection holds per-client state and the teardown run as the
        # session ends (its `exit_stack`, the package's documented hook); MCPServer's tool
        # context reaches it only through the request's ServerSession
        connection = ctx.request_context.session._connection
        if connection.session_id is None:
            return self.sessionless()
        browsers = connection.state.get(BROWSERS)
        if browsers is None:
            browsers = connection.state[BROWSERS] = RestBrowsers(self.base, token=self._token())
            connection.exit_stack.push_async_callback(browsers.aclose)
        return browsers

    async def _started(self) -> StreamableHTTPSessionManager:
        """The session manager, running in a task of its own (its task group must be
        entered and left in one task)."""
        async with self._starting:
            if self._closed:
                raise web.HTTPServiceUnavailable(text="the server is stopping")
            if self._manager is not None:
                return self._manager
            from mcp.server.transport_security import TransportSecuritySettings

            from ..mcpserver import LEASE_TIMEOUT, build

            server = build(self.browsers_of)
            server.streamable_http_app(
                session_idle_timeout=LEASE_TIMEOUT,
                transport_security=TransportSecuritySettings(
                    enable_dns_rebinding_protection=False))
            manager = server.session_manager
            ready = asyncio.Event()

            async def run() -> None:
                async with manager.run():
                    ready.set()
                    await self._stop.wait()

            task = self._task = asyncio.create_task(run(), name="mcp-sessions")
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task.done():
                task.result()  # it failed to start: say why
            self._manager = manager
            return manager

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.base:
            local = request.transport.get_extra_info("sockname") if request.transport else None
            if local:
                host = f"[{local[0]}]" if ":" in local[0] else local[0]
                self.base = f"http://{host}:{local[1]}"
        manager = await self._started()
        return await AsgiBridge(request).run(manager.handle_request)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """Stops the session manager with the app: every session ends, and so its leases
        (the pool, stopping next, ends them in any case)."""
        yield
        async with self._starting:
            self._closed = True
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sessionless is not None:
            await self._sessionless.aclose(release=False)


def setup(app: web.Application) -> None:
    endpoint = app[MCP_ENDPOINT] = McpEndpoint(app)
    app.router.add_route("*", MCP_PATH, endpoint.handle)
    app.cleanup_ctx.append(endpoint.running)
