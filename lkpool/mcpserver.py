"""An MCP server that gives an agent browsers from the pool: `lkpool mcp`.

Tools: `open_browser` (a lease, optionally at a URL), `navigate`, `computer` (a batch of
Anthropic computer-use actions, lkpool/computer.py), `screenshot` and `close_browser`. The
images come back as MCP image content, from the page's own frame.

The tools speak to an lkpool server over its REST API (`--server URL`), or to one started
in this process with its own pool (the default), so both are one path. Every lease a
client opened is released when it goes away: over stdio, the client's end of the pipe
closing ends the server, which releases its leases on the way out (and a lease lost
anyway, with the process killed, expires after its timeout on the server). Over streamable
HTTP (`/mcp` on the server itself, lkpool/server/mcp_http.py) each MCP session has its own
leases, released when the session ends (DELETE, idle, the server stopping).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import aiohttp
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from pydantic import Field

from .errors import LkpoolError

INSTRUCTIONS = """Browsers from an lkpool pool. open_browser gives a session id; pass it to
navigate, computer (Anthropic computer-use actions: left_click, type, key, scroll, ...,
coordinates in page pixels) and screenshot; close_browser when done."""
LEASE_TIMEOUT = 600.0  # seconds a browser is leased for: the bound on a lease left behind


class ServerRefused(ToolError, LkpoolError):
    """What the server answered instead of doing it: MCP's ToolError, so the agent reads
    the detail (any other exception reaches it as a bare "Error executing tool")."""


class RestBrowsers:
    """The leases of one MCP client, over an lkpool server's REST API."""

    def __init__(self, base: str, *, token: str | None = None,
                 lease_timeout: float = LEASE_TIMEOUT) -> None:
        self.base = base.rstrip("/")
        self.lease_timeout = lease_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = aiohttp.ClientSession(headers=headers, trust_env=False)
        self.leases: set[str] = set()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._http.request(method, self.base + path, **kwargs) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                detail = body.get("detail") or body.get("error") if isinstance(body, dict) \
                    else str(body)
                raise ServerRefused(f"{resp.status}: {detail}")
            return body

    async def open(self, url: str | None, width: int | None, height: int | None
                   ) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": self.lease_timeout}
        params |= {k: v for k, v in (("url", url), ("width", width), ("height", height))
                   if v is not None}
        body = await self._call("POST", "/browser", json=params)
        self.leases.add(body["session_id"])
        return body

    def _own(self, session_id: str) -> str:
        if session_id not in self.leases:
            raise ServerRefused(f"no browser {session_id!r} was opened by this client")
        return session_id

    async def navigate(self, session_id: str, url: str) -> None:
        await self._call("POST", f"/session/{self._own(session_id)}/input",
                         json={"type": "navigate", "url": url})

    async def computer(self, session_id: str, actions: list[dict[str, Any]],
                       fmt: str | None, scale: float) -> dict[str, Any]:
        return await self._call("POST", f"/session/{self._own(session_id)}/computer",
                                json={"actions": actions, "screenshot": fmt, "scale": scale})

    async def screenshot(self, session_id: str, fmt: str, scale: float) -> dict[str, Any]:
        body = await self._call("GET", f"/session/{self._own(session_id)}/screenshot",
                                params={"format": fmt, "scale": str(scale)})
        return body["screenshot"]

    async def close(self, session_id: str) -> None:
        await self._call("DELETE", f"/browser/{self._own(session_id)}")
        self.leases.discard(session_id)

    async def aclose(self, *, release: bool = True) -> None:
        """Releases every lease still open (unless the pool is about to end them all
        itself), then the HTTP session."""
        for sid in list(self.leases) if release else ():
            with contextlib.suppress(Exception):
                await self.close(sid)
        await self._http.close()


def _image(shot: dict[str, Any]) -> Image:
    return Image(data=base64.b64decode(shot["data"]), format=shot["media_type"].split("/")[1])


Format = Annotated[str, Field(pattern="^(png|jpeg)$", description="png or jpeg")]
Scale = Annotated[float, Field(gt=0, le=1, description="scale factor of the image, at most 1")]


# the browsers of the client a tool call came from (over HTTP, one RestBrowsers per MCP session)
BrowsersOf = Callable[[Context], RestBrowsers]


def build(browsers: RestBrowsers | BrowsersOf) -> MCPServer:
    """The MCP server and its tools, over one client's browsers (stdio) or over each
    client's own, found from the tool call's context (streamable HTTP: many clients)."""
    server = MCPServer("lkpool", instructions=INSTRUCTIONS)
    of: BrowsersOf = browsers if callable(browsers) else (lambda _ctx: browsers)

    @server.tool(structured_output=False)
    async def open_browser(ctx: Context, url: str | None = None, width: int | None = None,
                           height: int | None = None) -> str:
        """Opens a browser (a page leased from the pool, at `url` if given) and returns its
        session id and size; pass the id to the other tools."""
        body = await of(ctx).open(url, width, height)
        lease = {"session_id": body["session_id"]}
        lease |= {k: body[k] for k in ("width", "height", "expires_at") if k in body}
        return json.dumps(lease)

    @server.tool(structured_output=False)
    async def navigate(ctx: Context, session_id: str, url: str, format: Format = "png",
                       scale: Scale = 1.0) -> list[Any]:
        """Loads `url` in the browser and returns a screenshot once it loaded."""
        await of(ctx).navigate(session_id, url)
        body = await of(ctx).computer(session_id, [], format, scale)
        return [_image(body["screenshot"])]

    @server.tool(structured_output=False)
    async def computer(ctx: Context, session_id: str, actions: list[dict[str, Any]],
                       format: Format = "png", scale: Scale = 1.0) -> list[Any]:
        """Runs Anthropic computer-use actions in order ({"action": "left_click",
        "coordinate": [x, y]}, {"action": "type", "text": "..."}, {"action": "key",
        "text": "ctrl+a"}, {"action": "scroll", "coordinate": [x, y], "scroll_direction":
        "down", "scroll_amount": 3}, ...) and returns a screenshot once the page settled.
        The whole batch is checked first: a bad action runs nothing."""
        body = await of(ctx).computer(session_id, actions, format, scale)
        return [_image(body["screenshot"]), json.dumps({"cursor": body["cursor"]})]

    @server.tool(structured_output=False)
    async def screenshot(ctx: Context, session_id: str, format: Format = "png",
                         scale: Scale = 1.0) -> list[Any]:
        """The browser's page as it is now."""
        return [_image(await of(ctx).screenshot(session_id, format, scale))]

    @server.tool(structured_output=False)
    async def close_browser(ctx: Context, session_id: str) -> str:
        """Closes the browser: its lease ends and the page is gone."""
        await of(ctx).close(session_id)
        return "closed"

    return server


@contextlib.asynccontextmanager
async def browsers_at(server: str | None, token: str | None, lease_timeout: float,
                      settings: Any = None) -> AsyncIterator[RestBrowsers]:
    """This client's browsers on `server`, or on one started here with its own pool."""
    async with contextlib.AsyncExitStack() as stack:
        own = server is None
        if server is None:
            from .server.app import serve_local

            server, _ = await stack.enter_async_context(serve_local(settings))
            token = None
        assert server is not None
        browsers = RestBrowsers(server, token=token, lease_timeout=lease_timeout)
        # our own pool ends every lease as it stops: releasing them one by one first would
        # only start replacement browsers for it to stop (an MCP client kills us 4 s after
        # it left, so the way out must be short)
        stack.push_async_callback(browsers.aclose, release=not own)
        yield browsers
