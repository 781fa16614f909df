"""Three nodes on loopback serve one API: placement, the queue, and every kind of session
traffic through a node that does not own the lease."""

from __future__ import annotations

import asyncio
import collections
import json

import aiohttp
import pytest
from playwright.async_api import async_playwright

from tests.cluster.conftest import SECRET, LocalCluster

pytestmark = pytest.mark.timeout(180)


def node_of(session_id: str) -> str:
    return session_id.split(".")[0]


async def allocate(http: aiohttp.ClientSession, base: str, **params) -> dict:
    async with http.post(f"{base}/browser", params={"timeout": 60, **params}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


async def release_all(http: aiohttp.ClientSession, base: str, sids) -> None:
    for sid in sids:
        async with http.delete(f"{base}/browser/{sid}") as resp:
            assert resp.status == 200, await resp.text()


async def figures(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(f"{base}/health") as resp:
        return (await resp.json())["cluster"]


async def used(http: aiohttp.ClientSession, base: str) -> int:
    return (await figures(http, base))["used"]


async def settled(http: aiohttp.ClientSession, cluster: LocalCluster) -> None:
    """Until no slot is used and every node's instances are warm again (a released one is
    replaced by a fresh start), so each test starts from the same cluster."""
    async with asyncio.timeout(90):
        for node in cluster.nodes.values():
            while True:
                async with http.get(f"{node.base}/health") as resp:
                    h = await resp.json()
                if (h["cluster"]["used"] == h["cluster"]["queued"] == 0
                        and h["pool"]["instances"]["idle"] == h["pool"]["num_warm"]):
                    break
                await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
async def clean_slate(request: pytest.FixtureRequest):
    """A test on the shared cluster starts with every slot free and warm, and whatever it
    left leased (a failed assertion) is released, so one failure does not cascade."""
    if "shared_cluster" not in request.fixturenames:
        yield
        return
    cluster = request.getfixturevalue("shared_cluster")
    async with aiohttp.ClientSession() as http:
        await settled(http, cluster)
    yield
    async with aiohttp.ClientSession() as http:
        base = next(iter(cluster.nodes.values())).base
        async with http.get(f"{base}/browsers") as resp:
            leased = [b["session_id"] for b in await resp.json()
                      if b["session_id"] and b["active"]]
        for sid in leased:
            async with http.delete(f"{base}/browser/{sid}"):
                pass


async def wait_used(http: aiohttp.ClientSession, base: str, n: int, queued: int = 0) -> None:
    """Until the figures (refreshed each heartbeat) show `n` slots used, `queued` waiting."""
    async with asyncio.timeout(15):
        while (f := await figures(http, base))["used"] != n or f["queued"] != queued:
            await asyncio.sleep(0.1)


async def test_all_nodes_register(shared_cluster: LocalCluster) -> None:
    """Each node's /health sees three nodes up and their six slots; /metrics says so too."""
    async with aiohttp.ClientSession() as http:
        for node in shared_cluster.nodes.values():
            async with http.get(f"{node.base}/health") as resp:
                figures = (await resp.json())["cluster"]
            assert figures["nodes_up"] == 3 and figures["capacity"] == 6, figures
            assert figures["node"].startswith(node.name + ".") and figures["store"] == "ok"
            async with http.get(f"{node.base}/metrics") as resp:
                text = await resp.text()
            assert "lkpool_cluster_nodes_up 3.0" in text and "lkpool_cluster_capacity 6.0" in text


async def test_six_leases_spread_and_the_seventh_waits(shared_cluster: LocalCluster) -> None:
    """Six leases asked of one node land two per node (the called node first); a seventh
    waits in the queue and gets the slot a release frees; /browsers on another node lists
    them all, each with its node."""
    entry, other = shared_cluster.nodes["alpha"], shared_cluster.nodes["bravo"]
    async with aiohttp.ClientSession() as http:
        leases = [await allocate(http, entry.base) for _ in range(6)]
        sids = [lease["session_id"] for lease in leases]
        assert collections.Counter(map(node_of, sids)) == {
            "alpha": 2, "bravo": 2, "charlie": 2}
        assert node_of(sids[0]) == "alpha" and node_of(sids[1]) == "alpha"
        for lease in leases:  # the URLs handed out point at the node that was called
            assert lease["proxy_url"].startswith(f"{entry.base}/session/")
        async with http.get(f"{other.base}/browsers") as resp:
            listed = {b["session_id"]: b["node"] for b in await resp.json() if b["session_id"]}
        assert set(listed) == set(sids)
        assert all(node_of(sid) == nid.split(".")[0] for sid, nid in listed.items())

        seventh = asyncio.create_task(allocate(http, other.base))
        await wait_used(http, entry.base, 6, queued=1)
        assert not seventh.done()
        freed = sids.pop(3)
        await release_all(http, other.base, [freed])
        late = await seventh
        assert node_of(late["session_id"]) == node_of(freed)
        await release_all(http, entry.base, [*sids, late["session_id"]])
        await wait_used(http, entry.base, 0)


async def test_full_everywhere_answers_503_and_starts_nothing(
        shared_cluster: LocalCluster) -> None:
    """With every slot leased, an allocation waits ACQUIRE_TIMEOUT and gets 503 with
    Retry-After; its request leaves no slot taken behind."""
    entry = shared_cluster.nodes["charlie"]
    async with aiohttp.ClientSession() as http:
        sids = [(await allocate(http, entry.base))["session_id"] for _ in range(6)]
        async with http.post(f"{entry.base}/browser") as resp:
            body = await resp.json()
            assert resp.status == 503 and resp.headers.get("Retry-After"), body
        assert body["error"] == "pool_exhausted" and "6 of 6" in body["detail"]
        await wait_used(http, entry.base, 6, queued=0)
        await release_all(http, entry.base, sids)
        await wait_used(http, entry.base, 0)


async def test_devtools_frames_and_playwright_through_a_non_owner(
        shared_cluster: LocalCluster) -> None:
    """A lease of bravo used through alpha: /json/version's URL names alpha, CDP
    Runtime.evaluate answers, Playwright connect_over_cdp drives the page, the frames
    socket streams, and REST on the session works from any node."""
    owner, entry = shared_cluster.nodes["bravo"], shared_cluster.nodes["alpha"]
    async with aiohttp.ClientSession() as http:
        lease = await allocate(http, owner.base)
        sid = lease["session_id"]
        assert node_of(sid) == "bravo"
        try:
            async with http.get(f"{entry.base}/session/{sid}/json/version") as resp:
                version = await resp.json()
            assert version["webSocketDebuggerUrl"].startswith(
                f"ws://127.0.0.1:{entry.port}/session/{sid}/devtools/browser/")
            async with http.get(f"{entry.base}/session/{sid}/json/list") as resp:
                page = next(t for t in await resp.json() if t["type"] == "page")
            assert page["webSocketDebuggerUrl"].startswith(f"ws://127.0.0.1:{entry.port}/")
            async with http.ws_connect(page["webSocketDebuggerUrl"]) as ws:
                await ws.send_json({"id": 1, "method": "Runtime.evaluate",
                                    "params": {"expression": "6 * 7"}})
                answer = await ws.receive_json(timeout=10)
            assert answer["result"]["result"]["value"] == 42

            async with http.ws_connect(f"ws://127.0.0.1:{entry.port}/session/{sid}/frames"
                                       ) as frames:
                msg = await frames.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.BINARY and len(msg.data) > 0

            async with async_playwright() as pw:
                browser = await pw.chromium.connect_over_cdp(f"{entry.base}/session/{sid}")
                try:
                    pages = browser.contexts[0].pages
                    assert await pages[0].evaluate("() => 1 + 2") == 3
                finally:
                    await browser.close()

            async with http.post(f"{shared_cluster.nodes['charlie'].base}/browser/{sid}/timeout",
                                 params={"timeout": 30}) as resp:
                assert resp.status == 200
            async with http.get(f"{entry.base}/browser/{sid}") as resp:
                assert (await resp.json())["active"] is True
        finally:
            await release_all(http, entry.base, [sid])
        async with http.get(f"{entry.base}/session/{sid}/json/version") as resp:
            assert resp.status == 403  # the owner says: ended (released)
        await wait_used(http, entry.base, 0)


async def test_fifty_concurrent_allocations_place_exactly_six(
        shared_cluster: LocalCluster) -> None:
    """50 POST /browser at once, spread over the three nodes: exactly six leases, two per
    node; everyone else is told 503."""
    bases = [n.base for n in shared_cluster.nodes.values()]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> tuple[int, dict]:
            async with http.post(f"{bases[i % 3]}/browser", params={"timeout": 60}) as resp:
                return resp.status, await resp.json()

        results = await asyncio.gather(*(one(i) for i in range(50)))
        sids = [body["session_id"] for status, body in results if status == 200]
        assert sorted(status for status, _ in results) == [200] * 6 + [503] * 44
        assert collections.Counter(map(node_of, sids)) == {
            "alpha": 2, "bravo": 2, "charlie": 2}
        assert await used(http, bases[0]) == 6
        await release_all(http, bases[1], sids)
        await wait_used(http, bases[0], 0)


async def test_internal_endpoints_need_the_secret(shared_cluster: LocalCluster) -> None:
    """An attacker who reaches a node cannot use the node-to-node endpoints: no secret or a
    wrong one is 403, and nothing is started."""
    node = shared_cluster.nodes["alpha"]
    async with aiohttp.ClientSession() as http:
        nid = (await (await http.get(f"{node.base}/health")).json())["cluster"]["node"]
        body = {"session_id": f"{nid}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        for headers in ({}, {"X-Lkpool-Cluster-Secret": "guess"},
                        {"X-Lkpool-Cluster-Secret": SECRET + "x"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(f"{node.base}/_cluster/channel", headers=headers):
                    pass
            assert refused.value.status == 403
            async with http.get(f"{node.base}/_cluster/browsers", headers=headers) as resp:
                assert resp.status == 403
        # even with the secret, a session that was never placed is not started
        async with http.ws_connect(f"{node.base}/_cluster/channel",
                                   headers={"X-Lkpool-Cluster-Secret": SECRET}) as ws:
            await ws.send_json({"id": 1, "op": "acquire", "body": body})
            answer = await ws.receive_json(timeout=30)
            assert answer["id"] == 1 and answer["status"] == 503, answer
        assert await used(http, node.base) == 0
        async with http.get(f"{node.base}/browsers") as resp:
            assert not [b for b in await resp.json() if b["session_id"]]


async def test_the_channel_answers_bad_calls_with_errors(shared_cluster: LocalCluster) -> None:
    """A peer's malformed calls get the error a REST client would, each for its own id, and
    the socket serves the next call; a binary frame closes it."""
    node = shared_cluster.nodes["bravo"]
    other = f"alpha.1.{'A' * 32}"
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{node.base}/_cluster/channel",
            headers={"X-Lkpool-Cluster-Secret": SECRET}) as ws:
        def call(call_id: int, op: str, body: object) -> str:
            return json.dumps({"id": call_id, "op": op, "body": body})

        calls = [("{not json", None, 400), ("[1, 2]", None, 400),
                 (call(2, "format_disk", {}), 2, 400), (call(3, "acquire", []), 3, 400),
                 (call(4, "acquire", {"session_id": other, "width": -1}), 4, 400),
                 (call(5, "acquire", {"session_id": other}), 5, 400),
                 (call(6, "release", {"session_id": other}), 6, 400)]
        for text, call_id, status in calls:
            await ws.send_str(text)
            answer = await ws.receive_json(timeout=30)
            assert (answer["id"], answer["status"]) == (call_id, status), (text, answer)
            assert answer["body"]["error"] == "invalid_argument" and answer["body"]["detail"]
        await ws.send_bytes(b"\x00" * 16)
        msg = await ws.receive(timeout=30)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1003, msg


async def test_unknown_and_foreign_ids(shared_cluster: LocalCluster) -> None:
    """An id naming no live node is 410 node_lost everywhere; a malformed one is the owner's
    plain 404."""
    node = shared_cluster.nodes["charlie"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.base}/session/zulu.1.{'A' * 32}/json/version") as resp:
            assert resp.status == 410 and (await resp.json())["error"] == "node_lost"
        async with http.get(f"{node.base}/browser/nonsense") as resp:
            assert resp.status == 404
            json.loads(await resp.text())


async def test_index_page_lists_every_nodes_leases(shared_cluster: LocalCluster) -> None:
    """The lease list at / of charlie shows a lease of alpha with its node, and its live
    view link opens through charlie."""
    from tests.server.test_view import CHROMIUM_ARGS

    alpha, charlie = shared_cluster.nodes["alpha"], shared_cluster.nodes["charlie"]
    async with aiohttp.ClientSession() as http, async_playwright() as pw:
        lease = await allocate(http, alpha.base)
        sid = lease["session_id"]
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(charlie.base + "/")
            row = page.locator("#leases tbody tr", has_text=sid)
            await row.wait_for(timeout=10_000)
            assert lease["node"] in await row.inner_text()
            await row.locator("a").click()
            await page.wait_for_url(f"{charlie.base}/session/{sid}/view")
        finally:
            await browser.close()
            await release_all(http, alpha.base, [sid])
        await wait_used(http, alpha.base, 0)


async def test_a_caller_who_gave_up_gets_nothing_started(shared_cluster: LocalCluster) -> None:
    """A queued allocation whose client goes away (disconnect) leaves the queue at once and
    is not served when a slot frees within ACQUIRE_TIMEOUT: the slot stays free, no lease
    is made for it."""
    entry = shared_cluster.nodes["bravo"]
    async with aiohttp.ClientSession() as http:
        sids = [(await allocate(http, entry.base))["session_id"] for _ in range(6)]
        async with aiohttp.ClientSession() as quitter:
            with pytest.raises(TimeoutError):
                async with quitter.post(f"{entry.base}/browser",
                                        timeout=aiohttp.ClientTimeout(total=1.0)):
                    pass
        await asyncio.sleep(0.6)  # the node notices the closed connection within 0.25 s
        async with http.get(f"{entry.base}/health") as resp:
            assert (await resp.json())["cluster"]["queued"] in (0, 1)  # as of a heartbeat ago
        await release_all(http, entry.base, sids[:1])  # well within ACQUIRE_TIMEOUT (4 s)
        await wait_used(http, entry.base, 5, queued=0)
        await asyncio.sleep(0.5)
        assert await used(http, entry.base) == 5
        async with http.get(f"{entry.base}/browsers") as resp:
            leased = {b["session_id"] for b in await resp.json() if b["session_id"]}
        assert leased == set(sids[1:])
        await release_all(http, entry.base, sids[1:])
        await wait_used(http, entry.base, 0)
