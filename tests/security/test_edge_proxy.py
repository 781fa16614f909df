"""Chromium's own guards kept through the proxy: /json/new is PUT only, /json/close and
/json/activate reach only the lease's own targets."""

from __future__ import annotations

import pytest

from tests.security.conftest import request
from tests.server.conftest import run_server

pytestmark = pytest.mark.timeout(120)


async def test_json_new_is_put_only_and_targets_are_the_leases_own(edge) -> None:
    """GET /json/new (what a web page can send) creates no target; PUT does; close and
    activate of an id the instance does not list are 404 and reach nothing."""
    async with run_server(edge) as srv:
        sid = (await srv.allocate(timeout=60))["session_id"]

        async def targets() -> list[dict]:
            status, body = await request(srv.base, "GET", f"/session/{sid}/json/list")
            assert status == 200
            return body

        before = await targets()
        status, body = await request(srv.base, "GET", f"/session/{sid}/json/new?about:blank")
        assert (status, body["error"]) == (405, "method_not_allowed"), body
        assert len(await targets()) == len(before)
        status, created = await request(srv.base, "PUT", f"/session/{sid}/json/new?about:blank")
        assert status == 200 and created["id"]
        for action in ("close", "activate"):
            status, body = await request(srv.base, "GET",
                                         f"/session/{sid}/json/{action}/NOT-A-TARGET")
            assert (status, body["error"]) == (404, "not_found"), body
        status, body = await request(srv.base, "GET", f"/session/{sid}/json/activate/"
                                     f"{created['id']}")
        assert status == 200, body
        status, body = await request(srv.base, "GET", f"/session/{sid}/json/close/"
                                     f"{created['id']}")
        assert status == 200 and "closing" in str(body), body
