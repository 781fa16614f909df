"""Cross-origin WebSockets to every socket route of a session, from raw clients and from a
real Chromium page of evil.example; and the cap on sockets per session."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.security.conftest import EVIL, REBOUND, chromium, host_of
from tests.server.conftest import run_server
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(120)


async def _routes(srv, sid: str) -> list[str]:
    async with srv.http.get(srv.url(f"/session/{sid}/json/list")) as resp:
        target = next(t for t in await resp.json() if t["type"] == "page")
    return [f"/session/{sid}", f"/session/{sid}/devtools/page/{target['id']}",
            f"/session/{sid}/frames", f"/session/{sid}/input"]


async def test_cross_origin_websockets_are_refused(edge) -> None:
    """Origin evil.example (or null) cannot open any socket of a session; the server's own
    origin (the live view) and Origin-less clients (Playwright, Puppeteer) can."""
    async with run_server(edge) as srv, aiohttp.ClientSession() as http:
        sid = (await srv.allocate(timeout=60))["session_id"]
        ws_base = "ws://" + host_of(srv.base)
        for path in await _routes(srv, sid):
            for origin in (f"http://{EVIL}", "null", f"http://{REBOUND}"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                    async with http.ws_connect(ws_base + path, origin=origin):
                        pass
                assert info.value.status == 403, (path, origin)
            for origin in (srv.base, None):
                async with http.ws_connect(ws_base + path, origin=origin) as ws:
                    assert not ws.closed, (path, origin)
        assert srv.pool.get(sid).active


ATTACK = """<html><body><script>
window.results = {};
const target = "http://127.0.0.1:%(port)s";
async function attack() {
  // a cross-site form post, as a page can send it with no preflight
  try {
    await fetch(target + "/browser?timeout=60", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: '{"url":"about:blank"}'});
    window.results.post = "sent";
  } catch (e) { window.results.post = "failed"; }
  const opened = (url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = () => resolve("refused");
  });
  for (const path of %(paths)s) {
    window.results[path] = await opened("ws://127.0.0.1:%(port)s" + path);
  }
  window.done = true;
}
attack();
</script></body></html>"""


async def test_a_hostile_page_in_real_chromium_gets_nothing(edge) -> None:
    """A page of evil.example in a real Chromium posts a form and opens every socket of a
    known session: no browser is allocated and no socket opens; a rebound name reads no
    lease list."""
    async with run_server(edge) as srv:
        sid = (await srv.allocate(timeout=60))["session_id"]
        port = host_of(srv.base).rsplit(":", 1)[1]
        paths = await _routes(srv, sid)
        page_html = ATTACK % {"port": port, "paths": repr(paths)}
        async with serve_pages({"/attack": page_html}) as site, chromium() as browser:
            page = await browser.new_page()
            site_port = site.rsplit(":", 1)[1]
            await page.goto(f"http://{EVIL}:{site_port}/attack")
            await page.wait_for_function("window.done === true", timeout=30_000)
            results = await page.evaluate("window.results")
            assert all(results[p] == "refused" for p in paths), results
            # the rebound name: what the attacker's page would read as its own origin
            await page.goto(f"http://{REBOUND}:{port}/browsers")
            text = await page.inner_text("body")
            assert "host_not_allowed" in text and sid not in text
        await asyncio.sleep(0.5)
        assert [lease.session_id for lease in srv.pool.list()] == [sid]  # nothing allocated


async def test_sockets_per_session_are_capped(edge) -> None:
    """Past MAX_SESSION_SOCKETS a session's new socket is closed with 1008 and a reason that
    names the limit; once one closes, a new one opens."""
    async with run_server(edge.replace(max_session_sockets=3)) as srv, \
            aiohttp.ClientSession() as http:
        sid = (await srv.allocate(timeout=60))["session_id"]
        url = "ws://" + host_of(srv.base) + f"/session/{sid}/input"
        held = [await http.ws_connect(url) for _ in range(3)]
        for ws in held:
            assert (await ws.receive_json(timeout=10))["type"] == "state"
        for path in ("/input", "/frames", ""):
            ws = await http.ws_connect("ws://" + host_of(srv.base) + f"/session/{sid}{path}")
            msg = await ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.CLOSE, (path, msg)
            assert ws.close_code == 1008 and "MAX_SESSION_SOCKETS" in msg.extra, (path, msg)
            await ws.close()
        await held.pop().close()
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "state"
        for ws in held:
            await ws.close()
