"""TOKEN holds on every node of a cluster, and the node-to-node path is no way around it:
each test plays the attacker against two real nodes with TOKEN set."""

from __future__ import annotations

import aiohttp
import pytest

from tests.cluster.conftest import GUARD_TOKEN, SECRET, LocalCluster

pytestmark = pytest.mark.timeout(120)
AUTH = {"Authorization": f"Bearer {GUARD_TOKEN}"}


async def test_token_holds_through_every_node(guarded_cluster: LocalCluster) -> None:
    """Without the token nothing is allocated, listed or released on any node, also for a
    session of the other node and with a forged forwarding header; the cluster secret
    opens only the internal endpoints, never the public ones."""
    alpha, bravo = guarded_cluster.nodes["alpha"], guarded_cluster.nodes["bravo"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bravo.base}/browser", params={"timeout": 60},
                             headers=AUTH) as resp:
            sid = (await resp.json())["session_id"]
        assert sid.startswith("bravo.")
        try:
            forged = [{}, {"Authorization": "Bearer wrong"},
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
            async with http.get(f"{alpha.base}/browser/{sid}", headers=AUTH) as resp:
                assert resp.status == 200 and (await resp.json())["active"] is True
            async with http.get(f"{alpha.base}/browsers", headers=AUTH) as resp:
                assert [b["node"] for b in await resp.json() if b["session_id"] == sid]
        finally:
            async with http.delete(f"{alpha.base}/browser/{sid}", headers=AUTH) as resp:
                assert resp.status == 200
