"""A lease reaches no other lease and not the server: from inside lease A's browser, lease B's
DevTools endpoint (its /json/list, its /json/close) and the server's REST port are out of
reach, while a host port in ALLOW_HOST_PORTS is reached at the same URL as on the host."""

from __future__ import annotations

from urllib.parse import urlsplit

from lkpool.proc.cdp import CDPClosed
from tests.security.sandbox_support import instance_of, lease, run_server, serve_site

# what a page can learn of any URL: whether it answers at all (no-cors: opaque, no body)
REACHES = """fetch({url!r}, {{mode: 'no-cors'}}).then(() => 'reached', e => 'unreachable')"""


async def test_a_lease_cannot_reach_another_leases_devtools_nor_the_server(sandboxed) -> None:
    """A's page fetches B's /json/list and GETs B's /json/close/<page> (a no-cors GET is
    enough for that one to act), loads B's /json/list as a page and fetches the server's
    /browsers: none answers, and B's page is still there. The page server, an allowed host
    port, answers: the network itself works."""
    async with serve_site() as site, run_server(sandboxed) as srv, \
            lease(srv) as a, lease(srv) as b:
        b_port = instance_of(srv.pool, b.id).remote_debugging_port
        server_port = urlsplit(srv.base).port
        await a.goto(site + "/")
        assert await a.js(REACHES.format(url=site + "/")) == "reached"

        b_devtools = f"http://127.0.0.1:{b_port}"
        attempts = {
            "B /json/list": f"{b_devtools}/json/list",
            "B /json/close": f"{b_devtools}/json/close/{b.page_target}",
            "server /browsers": f"http://127.0.0.1:{server_port}/browsers",
            "server via localhost": f"http://localhost:{server_port}/health",
        }
        reached = [name for name, url in attempts.items()
                   if await a.js(REACHES.format(url=url)) == "reached"]
        shown = await a.text_of(f"{b_devtools}/json/list")
        try:
            targets = (await b.send("Target.getTargets"))["targetInfos"]
        except CDPClosed:  # B's last tab closed: its whole browser went
            targets = []
        assert reached == []
        assert b.page_target not in shown and "webSocketDebuggerUrl" not in shown
        assert b.page_target in {t["targetId"] for t in targets}, "B's page was closed"
