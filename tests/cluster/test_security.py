"""Auth and the edge hold on every node of a cluster, and the node-to-node path is no way
around them: each test plays the attacker against two real nodes that each have their own
TOKEN, reach each other at a name and are reached by clients at another."""

from __future__ import annotations

import aiohttp
import pytest

from tests.cluster.conftest import GUARD_HOST, GUARD_TOKENS, SECRET, LocalCluster

pytestmark = pytest.mark.timeout(120)


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {GUARD_TOKENS[name]}"}


async def test_token_holds_through_every_node(guarded_cluster: LocalCluster) -> None:
    """Without alpha's token nothing is allocated, listed or released through alpha, also
    for bravo's sessions and with bravo's token, a forged forwarding header or the cluster
    secret itself (which opens only the internal endpoints)."""
    alpha, bravo = guarded_cluster.nodes["alpha"], guarded_cluster.nodes["bravo"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bravo.base}/browser", params={"timeout": 60},
                             headers=auth("bravo")) as resp:
            sid = (await resp.json())["session_id"]
        assert sid.startswith("bravo.")
        try:
            forged = [{}, {"Authorization": "Bearer wrong"}, auth("bravo"),
                      {"X-Lkpool-Cluster-Secret": SECRET},  # a leaked secret is no token
                      {"X-Lkpool-Cluster-Secret": "x", "X-Forwarded-Proto": "https"}]
            for headers in forged:
                for method, url in (("POST", f"{alpha.base}/browser"),
                                    ("GET", f"{alpha.base}/browsers"),
                                    ("GET", f"{alpha.base}/browser/{sid}"),
                                    ("DELETE", f"{alpha.base}/browser/{sid}"),
                                    ("POST", f"{alpha.base}/browser/{sid}/timeout")):
                    async with http.request(method, url, headers=headers) as resp:
                        assert resp.status == 401, (method, url, headers, resp.status)
            async with http.get(f"{alpha.base}/browser/{sid}", headers=auth("bravo")) as resp:
                assert resp.status == 401
        finally:
            async with http.delete(f"{bravo.base}/browser/{sid}",
                                   headers=auth("bravo")) as resp:
                assert resp.status == 200


async def test_routing_through_the_edge_at_names(guarded_cluster: LocalCluster) -> None:
    """A client that calls alpha at its public name reaches bravo's session through alpha:
    the edge on bravo serves the forwarded request (bravo's token is never asked for), the
    URLs name the node called, and a name that is not served is refused on the entry."""
    alpha = guarded_cluster.nodes["alpha"]
    public = {"Host": f"{GUARD_HOST}:{alpha.port}"}
    async with aiohttp.ClientSession() as http:
        # alpha's two slots, then one on bravo, all asked of alpha with alpha's token: bravo
        # makes the third at alpha's request (over the channel), never asking for a token
        sids = []
        try:
            for _ in range(3):
                async with http.post(f"{alpha.base}/browser", params={"timeout": 60},
                                     headers=auth("alpha") | public) as resp:
                    lease = await resp.json()
                    assert resp.status == 200, lease
                sids.append(lease["session_id"])
                assert lease["proxy_url"].startswith(f"http://{GUARD_HOST}:{alpha.port}/")
            held = sids[-1]
            assert [s.split(".")[0] for s in sids] == ["alpha", "alpha", "bravo"]
            async with http.get(f"{alpha.base}/session/{held}/json/version",
                                headers=public) as resp:
                version = await resp.json()
                assert resp.status == 200, version
            assert version["webSocketDebuggerUrl"].startswith(
                f"ws://{GUARD_HOST}:{alpha.port}/session/{held}/")
            async with http.get(f"{alpha.base}/browser/{held}",
                                headers=auth("alpha") | public) as resp:
                assert resp.status == 200 and (await resp.json())["active"] is True
            async with http.get(f"{alpha.base}/browsers",
                                headers=auth("alpha") | public) as resp:
                listed = {b["session_id"] for b in await resp.json() if b["session_id"]}
            assert set(sids) <= listed
            async with http.get(f"{alpha.base}/session/{held}/json/version",
                                headers={"Host": "evil.example:80"}) as resp:
                assert resp.status == 403  # DNS rebinding: refused at the entry
            async with http.ws_connect(
                    f"ws://127.0.0.1:{alpha.port}/session/{held}/frames",
                    headers=public | {"Origin": "http://evil.example"}) as ws:
                pytest.fail(f"a foreign page's socket was accepted: {ws}")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403
        finally:
            for sid in sids:
                owner = guarded_cluster.nodes[sid.split(".")[0]]
                async with http.delete(f"{owner.base}/browser/{sid}",
                                       headers=auth(owner.name)) as resp:
                    assert resp.status == 200
