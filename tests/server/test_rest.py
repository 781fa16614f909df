"""The REST API on a real server: the chrome-pool flow, bad input, auth, a full pool."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from lkpool.pool import State
from tests.server.conftest import run_server, wait_until


async def cdp(ws: aiohttp.ClientWebSocketResponse, msg_id: int, method: str,
              session_id: str | None = None, **params) -> dict:
    """One CDP command over a raw WebSocket; events in between are skipped."""
    msg = {"id": msg_id, "method": method, "params": params}
    if session_id:
        msg["sessionId"] = session_id
    await ws.send_str(json.dumps(msg))
    while True:
        reply = json.loads((await ws.receive(timeout=15)).data)
        if reply.get("id") == msg_id:
            assert "error" not in reply, reply
            return reply["result"]


async def test_chrome_pool_flow(small) -> None:
    """Allocate, CDP over /session/{id} (targets, attach, evaluate), extend, list, release."""
    async with run_server(small) as srv:
        body = await srv.allocate(timeout=60)
        sid = body["session_id"]
        host = srv.base.removeprefix("http://")
        assert body["proxy_url"] == f"http://{host}/session/{sid}"
        assert body["ws_url"] == f"ws://{host}/session/{sid}"
        assert body["debugging_port"] == srv.pool.get(sid).debugging_port
        first_port = body["debugging_port"]

        status, version = await srv.json("GET", f"/session/{sid}/json/version")
        assert status == 200
        assert version["webSocketDebuggerUrl"].startswith(f"ws://{host}/session/{sid}/devtools/")
        status, targets = await srv.json("GET", f"/session/{sid}/json/list")
        assert status == 200 and targets
        assert all(t["webSocketDebuggerUrl"].startswith(f"ws://{host}/session/{sid}/")
                   for t in targets if "webSocketDebuggerUrl" in t)

        async with srv.http.ws_connect(body["ws_url"]) as ws:
            infos = (await cdp(ws, 1, "Target.getTargets"))["targetInfos"]
            page = next(t for t in infos if t["type"] == "page")
            attached = await cdp(ws, 2, "Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)
            result = await cdp(ws, 3, "Runtime.evaluate", attached["sessionId"],
                               expression="6 * 7", returnByValue=True)
            assert result["result"]["value"] == 42

            expires = srv.pool.get(sid).expires_at
            status, extended = await srv.json("POST", f"/browser/{sid}/timeout",
                                              params={"timeout": "120"})
            assert status == 200 and extended["expires_at"] > expires

            status, listed = await srv.json("GET", "/browsers")
            mine = [b for b in listed if b["session_id"] == sid]
            assert status == 200 and mine and mine[0]["active"] is True
            assert mine[0]["debugging_port"] == first_port and mine[0]["timeout"] > 60

            status, released = await srv.json("DELETE", f"/browser/{sid}")
            assert status == 200 and released["released"] is True
            closing = await ws.receive(timeout=15)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert (ws.close_code, closing.extra) == (1000, "released")

        status, err = await srv.json("GET", f"/session/{sid}/json/version")
        assert status == 403 and err["error"] == "session_ended" and "released" in err["detail"]
        status, again = await srv.json("DELETE", f"/browser/{sid}")
        assert status == 200 and again == {"session_id": sid, "released": False,
                                           "end_reason": "released"}
        # the released instance is replaced by a fresh one
        await wait_until(lambda: any(s.state is State.IDLE and s.debugging_port != first_port
                                     for s in srv.pool.slots()), what="a fresh warm instance")


async def test_bad_input_and_auth(small) -> None:
    """Bad numbers, bodies, URLs, hosts and methods get 4xx JSON naming the problem; TOKEN
    guards everything but /session/{id}/..., /health and the pages."""
    async with run_server(small.replace(num_warm=0, token="s3cret")) as srv:
        auth = {"Authorization": "Bearer s3cret"}
        for path in ("/browsers", "/metrics", "/nope"):
            status, err = await srv.json("GET", path)
            assert (status, err["error"]) == (401, "unauthorized"), path
        status, _ = await srv.json("GET", "/browsers", params={"token": "wrong"})
        assert status == 401
        status, _ = await srv.json("GET", "/browsers", params={"token": "s3cret"})
        assert status == 200
        status, health = await srv.json("GET", "/health", headers=auth)
        assert status == 200 and health["status"] == "ok"

        bad_queries = {
            "timeout": ["abc", "-1", "0", "nan", "inf", "1e309", "99999999"],
            "width": ["0", "1.5", "x", "100000"],
            "height": ["-3"],
            "framerate": ["0", "999"],
            "url": ["file:///etc/passwd", "javascript:alert(1)", "chrome://settings"],
        }
        for name, values in bad_queries.items():
            for value in values:
                status, err = await srv.json("POST", "/browser", params={name: value},
                                             headers=auth)
                assert status == 400, (name, value, err)
                assert err["error"] == "invalid_argument" and name in err["detail"]
        for body, why in ((b"{nope", "not valid JSON"), (b"[1, 2]", "JSON object"),
                          (b'{"width": "wide"}', "width")):
            status, err = await srv.json("POST", "/browser", data=body,
                                         headers=auth | {"Content-Type": "application/json"})
            assert status == 400 and why in err["detail"], (body, err)
        status, err = await srv.json("POST", "/browser", data=b"x" * (small.max_body_bytes + 1),
                                     headers=auth)
        assert (status, err["error"]) == (413, "request_too_large")
        status, err = await srv.json("POST", "/browser", headers=auth | {"Host": "a b/c"})
        assert status == 403 and "Host" in err["detail"]  # not a name of ours (edge.py)
        status, err = await srv.json("PUT", "/browser", headers=auth)
        assert (status, err["error"]) == (405, "method_not_allowed")

        for method, path in (("DELETE", "/browser/nope"), ("GET", "/browser/nope"),
                             ("POST", "/browser/nope/timeout?timeout=5")):
            status, err = await srv.json(method, path, headers=auth)
            assert (status, err["error"]) == (404, "unknown_session"), path
        # the session id is the capability: no token needed, and an unknown one is 404
        status, err = await srv.json("GET", "/session/nope/json/version")
        assert (status, err["error"]) == (404, "unknown_session")
        assert not srv.pool.slots()  # nothing above started an instance


async def test_full_pool_answers_503_with_retry_after(small) -> None:
    """With every instance leased, POST /browser waits ACQUIRE_TIMEOUT then gets 503 and
    Retry-After; once the lease ends, allocation works again."""
    async with run_server(small.replace(max_instances=1, acquire_timeout=0.5)) as srv:
        first = await srv.allocate(timeout=60)
        async with srv.http.post(srv.url("/browser")) as resp:
            err = await resp.json()
            assert resp.status == 503 and err["error"] == "pool_exhausted"
            assert int(resp.headers["Retry-After"]) >= 1
        status, health = await srv.json("GET", "/health")
        assert health["pool"]["instances"]["leased"] == 1 and health["pool"]["leases"] == 1
        status, _ = await srv.json("DELETE", f"/browser/{first['session_id']}")
        assert status == 200
        await wait_until(lambda: srv.pool.counts()["instances"]["idle"] == 1,
                         what="the replacement")
        second = await srv.allocate()
        assert second["session_id"] != first["session_id"]
        async with srv.http.get(srv.url("/metrics")) as resp:
            text = await resp.text()
        assert 'lkpool_instances{state="leased"} 1.0' in text
        assert "lkpool_acquire_wait_seconds_count 2.0" in text
        assert 'lkpool_leases_ended_total{reason="released"} 1.0' in text


async def test_a_caller_who_hung_up_holds_no_lease(small) -> None:
    """A client asks a full pool for a browser and hangs up while it waits: the instance
    freed meanwhile is not leased to nobody until its timeout; that lease ends `cancelled`
    at once and the next caller gets an instance."""
    async with run_server(small.replace(max_instances=1, acquire_timeout=60)) as srv:
        first = await srv.allocate(timeout=60)
        host = srv.base.removeprefix("http://")
        reader, writer = await asyncio.open_connection(*host.rsplit(":", 1))
        writer.write(f"POST /browser?timeout=600 HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        await wait_until(lambda: srv.pool.counts()["waiting"] == 1, what="the waiting call")
        writer.close()
        await writer.wait_closed()
        status, _ = await srv.json("DELETE", f"/browser/{first['session_id']}")
        assert status == 200
        await wait_until(lambda: "cancelled" in ended_reasons(srv), 60, "the cancelled lease")
        assert not srv.pool.list(), [lease.session_id[:6] for lease in srv.pool.list()]
        second = await srv.allocate(timeout=60)
        status, _ = await srv.json("DELETE", f"/browser/{second['session_id']}")
        assert status == 200


def ended_reasons(srv) -> list[str]:
    from lkpool.server.appkeys import METRICS

    return [sample.labels["reason"] for metric in srv.app[METRICS].registry.collect()
            if metric.name == "lkpool_leases_ended" for sample in metric.samples
            if sample.name.endswith("_total") and sample.value > 0]
