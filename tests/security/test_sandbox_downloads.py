"""Downloads write nothing outside the instance: `Browser.setDownloadBehavior` pointed at the
host's /tmp leaves it untouched, and a download past DOWNLOAD_MAX_BYTES is cancelled while
the lease goes on."""

from __future__ import annotations

import asyncio
import os
import secrets

from tests.security.sandbox_support import Lease, lease, run_server, serve_site

MB = 1 << 20


async def _download(a: Lease, url: str, timeout: float = 60) -> dict:
    """Starts a download from `url` in A's page and returns its last progress event."""
    events: list[dict] = []
    done = asyncio.Event()

    def progress(params: dict, _session: str | None = None) -> None:
        events.append(params)
        if params.get("state") in ("completed", "canceled"):
            done.set()

    a.cdp.on("Browser.downloadProgress", progress)
    await a.js(f"(() => {{ const l = document.createElement('a'); l.href = {url!r}; "
               "document.body.appendChild(l); l.click(); return 1; })()")
    await asyncio.wait_for(done.wait(), timeout)
    return events[-1]


async def test_downloads_to_the_hosts_tmp_write_nothing_there(sandboxed) -> None:
    """A lease sends downloads to a folder of the host's /tmp and downloads a file: the
    download completes (in the sandbox's own /tmp), and the host's folder stays empty."""
    folder = f"/tmp/lkpool-downloads-{secrets.token_hex(6)}"
    os.makedirs(folder)
    try:
        async with serve_site() as site, run_server(sandboxed) as srv, lease(srv) as a:
            await a.goto(site + "/")
            await a.send("Browser.setDownloadBehavior", behavior="allow",
                         downloadPath=folder, eventsEnabled=True)
            last = await _download(a, site + "/download?bytes=4096")
            assert last["state"] == "completed"
        assert os.listdir(folder) == []
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


async def test_a_download_past_the_cap_is_cancelled_and_the_lease_lives_on(sandboxed) -> None:
    """DOWNLOAD_MAX_BYTES=1 MB, downloads sent to the sandbox's own /tmp: an 8 MB download
    is cancelled short of its end; the lease still answers and is still active."""
    settings = sandboxed.replace(download_max_bytes=MB)
    async with serve_site() as site, run_server(settings) as srv, lease(srv) as a:
        await a.goto(site + "/")
        await a.send("Browser.setDownloadBehavior", behavior="allow",
                     downloadPath="/tmp/mine", eventsEnabled=True)
        last = await _download(a, site + f"/download?bytes={8 * MB}&pause=0.01")
        assert last["state"] == "canceled"
        assert last["receivedBytes"] < 8 * MB
        assert await a.js("1 + 1") == 2
        status, body = await srv.json("GET", f"/browser/{a.id}")
        assert status == 200 and not body.get("end_reason"), body
