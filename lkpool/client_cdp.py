"""The CDP half of lkpool's client (lkpool/client.py): one CDP WebSocket through the server's
proxy, commands by id, events dispatched pydoll style (`on`, `wait_for`, domain enable/disable).

A mixin rather than its own object so that APIClient keeps chrome-pool's flat method names
(`client.send_cdp_request(...)`); it uses APIClient's HTTP plumbing (`_request`, `_session`,
`_params`) and `session_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from .client_errors import APIError, CDPError

DOMAINS = ("Page", "Network", "DOM", "Runtime", "Fetch")


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



class CDPChannel:
    """The CDP connection of an APIClient's session and its event callbacks."""

    session_id: str | None
    _log: logging.LoggerAdapter

    if TYPE_CHECKING:  # provided by APIClient
        async def _request(self, method: str, path: str, *,
                           params: dict[str, Any] | None = None, json_body: Any = None) -> Any: ...

        def _session(self) -> aiohttp.ClientSession: ...

        def _params(self, params: dict[str, Any] | None = None) -> dict[str, str]: ...

    def _init_cdp(self) -> None:
        self.target_session_id: str | None = None  # the CDP session of the attached page
        self._cdp: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._dispatcher: asyncio.Task | None = None
        self._events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._pending: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._callbacks = _Callbacks(self._log)

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
