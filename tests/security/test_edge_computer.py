"""Attacks on computer use: a hostile page's form or fetch driving a lease's browser through
POST /session/{id}/computer (which clicks and types as an agent would), or reading its
screen through GET /session/{id}/screenshot. Each fails while the attack works."""

from __future__ import annotations

import aiohttp
import pytest

from tests.security.conftest import EVIL, request
from tests.server.conftest import run_server
from tests.support.pages import serve_pages

pytestmark = pytest.mark.timeout(120)

FORM = """<html><body style='margin:0'>
<input id=t style='position:absolute;left:10px;top:10px;width:200px;height:30px'></body></html>"""


async def test_foreign_pages_cannot_drive_or_read_a_lease(edge) -> None:
    """A cross-site form (text/plain) or fetch with a foreign Origin is refused before any
    action runs, a body that is not sent as JSON is a 415, one nested 10,000 deep a 400,
    and the lease's input stays empty throughout; the screen is not readable cross-site
(a safe GET passes the edge, as everywhere; no CORS header lets a page read it)."""
    actions = (b'{"actions": [{"action": "left_click", "coordinate": [50, 25]}, '
               b'{"action": "type", "text": "pwned"}], "x": "="}')
    async with serve_pages({"/form": FORM}) as site, run_server(edge) as srv:
        lease = await srv.allocate(url=f"{site}/form", timeout=60)
        sid = lease["session_id"]
        page = srv.pool.get(sid).page
        path = f"/session/{sid}/computer"
        for headers in ({"Origin": f"http://{EVIL}", "Content-Type": "text/plain",
                         "Sec-Fetch-Site": "cross-site"},
                        {"Origin": f"http://{EVIL}", "Content-Type": "application/json"},
                        {"Origin": "null", "Content-Type": "application/json"}):
            status, body = await request(srv.base, "POST", path, headers=headers,
                                         data=actions)
            assert (status, body["error"]) == (403, "origin_not_allowed"), (headers, body)
        status, body = await request(srv.base, "POST", path, data=actions,
                                     headers={"Content-Type": "text/plain"})
        assert (status, body["error"]) == (415, "unsupported_media_type"), body
        deep = b'{"actions": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
        status, body = await request(srv.base, "POST", path, data=deep,
                                     headers={"Content-Type": "application/json"})
        assert status == 400 and "nested" in body["detail"], body
        assert await page.evaluate("document.getElementById('t').value") == ""
        # a foreign page's fetch of the screen: whatever the status, no CORS header lets
        # its browser hand the image to the page
        async with aiohttp.ClientSession() as http, http.get(
                f"{srv.base}/session/{sid}/screenshot",
                headers={"Origin": f"http://{EVIL}"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers, dict(resp.headers)
        # the same request from a client with no Origin (an agent, curl) works
        status, body = await request(srv.base, "POST", path, data=actions,
                                     headers={"Content-Type": "application/json"})
        assert status == 400 and "x is not a field" in body["detail"], body
