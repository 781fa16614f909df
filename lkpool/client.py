"""APIClient: an async client of an lkpool server (REST, CDP through the proxy, frames, input).

It keeps chrome-pool's client methods (`allocate_browser`, `deallocate_browser`,
`extend_timeout`, `list_browsers`, `send_cdp_request`, `get_targets`, `attach_to_target`) as
coroutines, adds pydoll's event model (`on(event, cb, temporary)` -> id, domain
enable/disable, `wait_for`) and lkpool's own streams (`frames()`, input, `playwright()`).

    async with APIClient("http://127.0.0.1:8888") as client:
        async with client.session(timeout=60):
            await client.enable_page_events()
            await client.send_cdp_request("Page.navigate", {"url": "https://example.com"})
            await client.wait_for("Page.loadEventFired", timeout=10)

Errors: `APIError` (status, error, detail as the server sent them); `CDPError` for a CDP
command the browser refused. Nothing here prints; logs go to `lkpool.client`.

The CDP half lives in lkpool/client_cdp.py, the frames stream in lkpool/client_frames.py,
the errors in lkpool/client_errors.py; all are importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .client_cdp import DOMAINS, CDPChannel
from .client_errors import APIError, CDPError
from .client_frames import Frame, FrameStream
from .server.header import FORMATS

__all__ = ["DOMAINS", "APIClient", "APIError", "CDPError", "Frame", "FrameStream"]

logger = logging.getLogger(__name__)

# seconds an allocation cancelled in flight waits for its answer, to release what it got
CANCEL_GRACE = 5.0


async def _raise_for(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 400:
        return
    try:
        body = await resp.json(content_type=None)
        error, detail = str(body.get("error", resp.reason)), str(body.get("detail", ""))
    except (ValueError, AttributeError):
        error, detail = str(resp.reason or "error"), (await resp.text())[:500]
    raise APIError(resp.status, error, detail)



class APIClient(CDPChannel):
    """Client of one lkpool server; holds at most one allocated session at a time."""

    def __init__(self, url: str, *, token: str | None = None,
                 request_timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.session_id = None
        self.allocation: dict[str, Any] = {}
        self._request_timeout = request_timeout
        self._http: aiohttp.ClientSession | None = None
        self._log = logging.LoggerAdapter(logger, {"client": self.url})
        self._init_cdp()

    # ---- plumbing ----------------------------------------------------------------------

    async def __aenter__(self) -> APIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Releases the session if one is held, then closes the connections. Idempotent."""
        with contextlib.suppress(APIError):
            await self.deallocate_browser()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _headers(self) -> dict[str, str]:
        """The token goes in a header, never in a URL (URLs end up in logs and Referers)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _params(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        return {k: str(v) for k, v in (params or {}).items() if v is not None}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=self._request_timeout))
        return self._http

    async def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                       json_body: Any = None) -> Any:
        try:
            async with self._session().request(method, self.url + path,
                                               params=self._params(params),
                                               json=json_body) as resp:
                await _raise_for(resp)
                return await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise APIError(0, "connection_failed", f"{method} {path}: {exc}") from exc
        except TimeoutError as exc:
            raise APIError(0, "timeout", f"{method} {path} took too long") from exc

    def _require_session(self) -> str:
        if self.session_id is None:
            raise APIError(0, "no_session", "allocate a browser first")
        return self.session_id

    async def _ws_connect(self, what: str, query: dict[str, str] | None = None
                          ) -> aiohttp.ClientWebSocketResponse:
        path = f"/session/{self._require_session()}/{what}"
        params = self._params(query)
        try:
            return await self._session().ws_connect(
                self.url + path, params=params, max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except aiohttp.WSServerHandshakeError as exc:
            # the handshake error has no body: ask again without upgrading for the detail
            async with self._session().get(self.url + path, params=params) as resp:
                await _raise_for(resp)
            raise APIError(exc.status, "handshake_failed", str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise APIError(0, "connection_failed", f"{path}: {exc}") from exc

    # ---- chrome-pool's REST methods ----------------------------------------------------

    async def allocate_browser(self, timeout: float = 30, *, url: str | None = None,
                               width: int | None = None, height: int | None = None,
                               framerate: int | None = None) -> str:
        """Leases a browser and attaches to its page target; returns the session id."""
        if self.session_id is not None:
            raise APIError(0, "session_held", f"already holding {self.session_id}")
        body = {k: v for k, v in {"url": url, "width": width, "height": height,
                                  "framerate": framerate}.items() if v is not None}
        post = asyncio.ensure_future(self._request("POST", "/browser",
                                                   params={"timeout": timeout},
                                                   json_body=body or None))
        try:
            data = await asyncio.shield(post)
        except asyncio.CancelledError:
            # cancelled (Ctrl-C) while the server may have made the lease already (seen in
            # CI: the answer was on its way): learn it, within a bound, and give it back
            with contextlib.suppress(Exception):
                made = await asyncio.wait_for(post, CANCEL_GRACE)
                await self._request("DELETE", f"/browser/{made['session_id']}")
            post.cancel()
            raise
        self.session_id, self.allocation = data["session_id"], data
        try:
            await self._connect_cdp(data.get("ws_url"))
            page = next((t for t in await self.get_targets() if t.get("type") == "page"), None)
            if page is not None:
                await self.attach_to_target(page["targetId"])
        except BaseException:
            with contextlib.suppress(APIError):
                await self.deallocate_browser()
            raise
        self._log.debug("allocated %s…", self.session_id[:6])
        return self.session_id

    async def deallocate_browser(self) -> bool:
        """Releases the session; False when none was held."""
        if self.session_id is None:
            return False
        sid, self.session_id = self.session_id, None
        await self._disconnect_cdp()
        try:
            await self._request("DELETE", f"/browser/{sid}")
        except APIError as exc:
            if exc.status != 404:  # already gone (expired) is what we wanted
                raise
        return True

    async def extend_timeout(self, additional_timeout: float = 30) -> Any:
        sid = self._require_session()
        return await self._request("POST", f"/browser/{sid}/timeout",
                                   params={"timeout": additional_timeout})

    async def list_browsers(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/browsers")

    @contextlib.asynccontextmanager
    async def session(self, timeout: float = 30, **options: Any) -> AsyncIterator[APIClient]:
        """Allocates on entry, releases on exit (also on error or cancellation)."""
        await self.allocate_browser(timeout, **options)
        try:
            yield self
        finally:
            release = asyncio.ensure_future(self.deallocate_browser())
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                await release  # cancelled (Ctrl-C): finish releasing, then go on cancelling
                raise

    # ---- frames and input --------------------------------------------------------------

    def frames(self, format: str = "jpeg", *, fps: float | None = None,
               quality: int | None = None, scale: float | None = None,
               max_width: int | None = None) -> FrameStream:
        """The session's frames (see `Frame`), newest first when the reader falls behind."""
        if format not in FORMATS:
            raise APIError(0, "invalid_argument", f"format must be one of {', '.join(FORMATS)}")
        query = {"format": format, "fps": fps, "quality": quality, "scale": scale,
                 "max_width": max_width}
        self._require_session()
        return FrameStream(self, {k: str(v) for k, v in query.items() if v is not None})

    async def send_input(self, *events: dict[str, Any]) -> None:
        """Sends input events (see lkpool/server/inputs.py); APIError names a bad field."""
        sid = self._require_session()
        await self._request("POST", f"/session/{sid}/input",
                            json_body=events[0] if len(events) == 1 else list(events))

    async def mouse_click(self, x: float, y: float, *, button: str = "left",
                          clicks: int = 1) -> None:
        await self.send_input({"type": "mouse", "action": "click", "x": x, "y": y,
                               "button": button, "clicks": clicks})

    async def mouse_move(self, x: float, y: float) -> None:
        await self.send_input({"type": "mouse", "action": "move", "x": x, "y": y})

    async def press(self, key: str) -> None:
        await self.send_input({"type": "key", "action": "press", "key": key})

    async def type(self, text: str) -> None:
        await self.send_input({"type": "text", "text": text})

    async def navigate(self, url: str) -> None:
        await self.send_input({"type": "navigate", "url": url})

    @contextlib.asynccontextmanager
    async def playwright(self, timeout: float = 30.0) -> AsyncIterator[Any]:
        """A Playwright Browser connected over CDP through the server's proxy."""
        from playwright.async_api import async_playwright  # noqa: PLC0415 (heavy, optional)

        sid = self._require_session()
        endpoint = f"{self.url}/session/{sid}"
        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(endpoint, timeout=timeout * 1000,
                                                         headers=self._headers() or None)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):  # the lease may be gone already
                    await browser.close()
