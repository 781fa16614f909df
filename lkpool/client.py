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
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from .errors import LkpoolError
from .server.header import FORMATS, FrameFormat, FrameHeader

logger = logging.getLogger(__name__)

DOMAINS = ("Page", "Network", "DOM", "Runtime", "Fetch")


class APIError(LkpoolError):
    """The server answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(f"{status} {error}: {detail}" if detail else f"{status} {error}")
        self.status, self.error, self.detail = status, error, detail
        self.code = error


class CDPError(LkpoolError):
    """A CDP command came back with an error."""

    code = "cdp_error"

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message', error)}")
        self.method, self.error = method, error


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame from the frames stream. `data`: an (height, width, 4) BGRA numpy array for
    raw, the JPEG bytes for jpeg. Times are Unix ns (see lkpool/server/header.py)."""

    format: FrameFormat
    width: int
    height: int
    sequence: int
    captured_ns: int
    ready_ns: int
    received_ns: int
    skipped: int  # frames this stream never got so far (gaps in `sequence`)
    data: np.ndarray | bytes


async def _raise_for(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 400:
        return
    try:
        body = await resp.json(content_type=None)
        error, detail = str(body.get("error", resp.reason)), str(body.get("detail", ""))
    except (ValueError, AttributeError):
        error, detail = str(resp.reason or "error"), (await resp.text())[:500]
    raise APIError(resp.status, error, detail)


class _Callbacks:
    """pydoll's registry: ids, registration order, temporary ones removed after one call."""

    def __init__(self, log: logging.LoggerAdapter) -> None:
        self._by_event: dict[str, dict[int, tuple[Callable[..., Any], bool]]] = {}
        self._ids = itertools.count(1)
        self._log = log

    def add(self, event: str, cb: Callable[..., Any], temporary: bool) -> int:
        cb_id = next(self._ids)
        self._by_event.setdefault(event, {})[cb_id] = (cb, temporary)
        return cb_id

    def remove(self, cb_id: int) -> bool:
        return any(cbs.pop(cb_id, None) is not None for cbs in self._by_event.values())

    def clear(self) -> None:
        self._by_event.clear()

    async def run(self, event: str, params: dict[str, Any]) -> None:
        """Calls the callbacks of `event` one after the other; a raising one is logged."""
        for cb_id, (cb, temporary) in list(self._by_event.get(event, {}).items()):
            if temporary:
                self.remove(cb_id)
            try:
                result = cb(params)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._log.exception("callback %d for %s raised", cb_id, event)


class FrameStream:
    """Async iterator over a session's frames WebSocket; `aclose()` (or `async with`) ends it."""

    def __init__(self, client: APIClient, query: dict[str, str]) -> None:
        self._client, self._query = client, query
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = False
        self.close_reason = ""
        self.skipped = 0
        self._last_sequence = 0

    def __aiter__(self) -> FrameStream:
        return self

    async def __aenter__(self) -> FrameStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Frame:
        if self.closed:
            raise StopAsyncIteration
        if self._ws is None:
            self._ws = await self._client._ws_connect("frames", self._query)
        msg = await self._ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            self.close_reason = str(msg.extra or self._ws.close_code or msg.type.name)
            await self.aclose()
            raise StopAsyncIteration
        received = time.time_ns()
        header, payload = FrameHeader.unpack(msg.data)
        data: np.ndarray | bytes
        if header.format is FrameFormat.RAW:
            data = np.frombuffer(payload, np.uint8).reshape(header.height, header.width, 4)
        else:
            data = bytes(payload)
        if self._last_sequence and header.sequence > self._last_sequence + 1:
            self.skipped += header.sequence - self._last_sequence - 1
        self._last_sequence = header.sequence
        return Frame(header.format, header.width, header.height, header.sequence,
                     header.captured_ns, header.ready_ns, received, self.skipped, data)

    async def aclose(self) -> None:
        self.closed = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()


class APIClient:
    """Client of one lkpool server; holds at most one allocated session at a time."""

    def __init__(self, url: str, *, token: str | None = None,
                 request_timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.session_id: str | None = None
        self.allocation: dict[str, Any] = {}
        self.target_session_id: str | None = None  # the CDP session of the attached page
        self._request_timeout = request_timeout
        self._http: aiohttp.ClientSession | None = None
        self._cdp: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._dispatcher: asyncio.Task | None = None
        self._events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._pending: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._log = logging.LoggerAdapter(logger, {"client": self.url})
        self._callbacks = _Callbacks(self._log)

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
        data = await self._request("POST", "/browser", params={"timeout": timeout},
                                   json_body=body or None)
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

    # ---- CDP over the proxy ------------------------------------------------------------

    async def _connect_cdp(self, ws_url: str | None) -> None:
        if not ws_url:
            version = await self._request("GET", f"/session/{self.session_id}/json/version")
            ws_url = version["webSocketDebuggerUrl"]
        try:
            self._cdp = await self._session().ws_connect(ws_url, params=self._params(),
                                                         max_msg_size=0)
        except aiohttp.ClientError as exc:
            raise APIError(0, "connection_failed", f"CDP socket {ws_url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read_cdp(self._cdp))
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def _disconnect_cdp(self) -> None:
        if self._cdp is not None:
            await self._cdp.close()
        for task in (self._reader, self._dispatcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._cdp = self._reader = self._dispatcher = None
        self.target_session_id = None
        self._fail_pending("the session was released")

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for method, fut in pending.values():
            if not fut.done():
                fut.set_exception(APIError(0, "disconnected", f"{method}: {why}"))

    async def _read_cdp(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                method, fut = self._pending.pop(data["id"], ("", None))
                if fut is not None and not fut.done():
                    fut.set_result(data)
            elif "method" in data:
                sid = data.get("sessionId")
                if sid is None or sid == self.target_session_id:
                    self._events.put_nowait((data["method"], data.get("params", {})))
        self._fail_pending(f"the CDP socket closed ({ws.close_code})")

    async def _dispatch(self) -> None:
        # callbacks run here, not in the reader, so a callback may itself send commands
        while (item := await self._events.get()) is not None:
            await self._callbacks.run(*item)

    async def send_cdp_request(self, method: str, params: dict[str, Any] | None = None, *,
                               timeout: float = 30.0, session_id: str | None = None
                               ) -> dict[str, Any]:
        """Sends a CDP command to the attached page (or `session_id`); returns the whole
        response ({"id", "result"}) as chrome-pool's client does; CDPError on an error."""
        if self._cdp is None or self._cdp.closed:
            raise APIError(0, "not_connected", "no CDP connection: allocate a browser first")
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        sid = session_id if session_id is not None else self.target_session_id
        if sid:
            msg["sessionId"] = sid
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (method, fut)
        try:
            await self._cdp.send_str(json.dumps(msg))
            response = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise APIError(0, "timeout", f"{method} got no answer in {timeout} s") from None
        finally:
            self._pending.pop(msg_id, None)
        if "error" in response:
            raise CDPError(method, response["error"])
        return response

    async def get_targets(self) -> list[dict[str, Any]]:
        resp = await self.send_cdp_request("Target.getTargets", session_id="")
        return resp["result"]["targetInfos"]

    async def attach_to_target(self, target_id: str) -> str:
        """Attaches (flat session) to a target; later commands and events go through it."""
        resp = await self.send_cdp_request("Target.attachToTarget",
                                           {"targetId": target_id, "flatten": True},
                                           session_id="")
        self.target_session_id = resp["result"]["sessionId"]
        return self.target_session_id

    # ---- events, pydoll style ----------------------------------------------------------

    async def on(self, event: str, callback: Callable[[dict[str, Any]], Any], *,
                 temporary: bool = False) -> int:
        """Registers a sync or async callback for a CDP event; returns its id."""
        return self._callbacks.add(event, callback, temporary)

    async def remove_callback(self, callback_id: int) -> bool:
        return self._callbacks.remove(callback_id)

    async def clear_callbacks(self) -> None:
        self._callbacks.clear()

    async def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """The params of the next `event` (its domain must be enabled)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def resolve(params: dict[str, Any]) -> None:
            if not fut.done():
                fut.set_result(params)

        cb_id = self._callbacks.add(event, resolve, True)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise APIError(0, "timeout", f"no {event} within {timeout} s") from None
        finally:
            self._callbacks.remove(cb_id)

    async def _domain(self, domain: str, action: str) -> None:
        await self.send_cdp_request(f"{domain}.{action}")

    async def enable_page_events(self) -> None:
        await self._domain("Page", "enable")

    async def disable_page_events(self) -> None:
        await self._domain("Page", "disable")

    async def enable_network_events(self) -> None:
        await self._domain("Network", "enable")

    async def disable_network_events(self) -> None:
        await self._domain("Network", "disable")

    async def enable_dom_events(self) -> None:
        await self._domain("DOM", "enable")

    async def disable_dom_events(self) -> None:
        await self._domain("DOM", "disable")

    async def enable_runtime_events(self) -> None:
        await self._domain("Runtime", "enable")

    async def disable_runtime_events(self) -> None:
        await self._domain("Runtime", "disable")

    async def enable_fetch_events(self, patterns: list[dict[str, Any]] | None = None) -> None:
        await self.send_cdp_request("Fetch.enable", {"patterns": patterns or [{}]})

    async def disable_fetch_events(self) -> None:
        await self._domain("Fetch", "disable")

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
