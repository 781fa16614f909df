"""A lease holder reads no file of the host: canaries planted in the server's folder, $HOME,
/tmp and another lease's profile stay unreadable by every way CDP offers, and no process of
an instance carries the server's secrets in its environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import psutil

from tests.security.sandbox_support import (
    Lease,
    instance_of,
    lease,
    plant,
    run_server,
    serve_site,
    tree,
)
from tests.server.conftest import serve_subprocess

READ_FILE_INPUT = """(async () => {
  const f = document.getElementById('f').files[0];
  if (!f) return '';
  try { return await f.text(); } catch (e) { return ''; }
})()"""


async def _through_a_new_target(a: Lease, url: str) -> str:
    target = (await a.send("Target.createTarget", url=url))["targetId"]
    try:
        session = (await a.send("Target.attachToTarget", targetId=target,
                                flatten=True))["sessionId"]
        for _ in range(40):
            res = await a.cdp.send("Runtime.evaluate", {
                "expression": "document.readyState + '|' + (document.documentElement ? "
                              "document.documentElement.innerText : '')",
                "returnByValue": True}, session_id=session, timeout=30)
            state, _, text = str(res["result"].get("value", "")).partition("|")
            if state == "complete":
                return text
            await asyncio.sleep(0.05)
        return text
    finally:
        await a.send("Target.closeTarget", targetId=target)


async def _through_a_file_input(a: Lease, site: str, path: str) -> str:
    await a.goto(site + "/")
    root = (await a.page("DOM.getDocument"))["root"]["nodeId"]
    node = (await a.page("DOM.querySelector", nodeId=root, selector="#f"))["nodeId"]
    try:
        await a.page("DOM.setFileInputFiles", files=[path], nodeId=node)
    except Exception as exc:  # refused outright is as good as unreadable
        return f"refused: {exc}"
    return str(await a.js(READ_FILE_INPUT))


async def _through_fetch(a: Lease, url: str) -> str:
    return str(await a.js(f"fetch({url!r}).then(r => r.text()).catch(e => '')"))


async def test_canaries_stay_unreadable(sandboxed) -> None:
    """file:// through Target.createTarget, Page.navigate (files and folder listings),
    DOM.setFileInputFiles and fetch() shows no canary: not the server's folder, $HOME,
    /tmp, nor the other lease's profile."""
    async with serve_site() as site, run_server(sandboxed) as srv, \
            lease(srv) as a, lease(srv) as b:
        other = instance_of(srv.pool, b.id).profile_dir
        with plant(os.getcwd(), os.path.expanduser("~"), "/tmp", other) as canaries:
            read: dict[str, list[str]] = {}
            for path in canaries.files:
                url = "file://" + path
                folder = "file://" + os.path.dirname(path) + "/"
                seen = {
                    "Target.createTarget": await _through_a_new_target(a, url),
                    "Page.navigate": await a.text_of(url),
                    "Page.navigate folder": await a.text_of(folder),
                    "DOM.setFileInputFiles": await _through_a_file_input(a, site, path),
                    "fetch": await _through_fetch(a, url),
                }
                for how, text in seen.items():
                    if canaries.leaked_in(text):
                        read.setdefault(path, []).append(how)
            assert read == {}, f"canaries read: {read}"


async def test_no_instance_process_holds_the_servers_secrets(tmp_path) -> None:
    """A server started with TOKEN-like secrets in its environment: none of them is in the
    environment of Chromium or of any helper its instance starts (Xvfb, PulseAudio, parec,
    pasta); only lkpool's own child process, the trusted side, has it."""
    secret = "canary-env-" + os.urandom(8).hex()
    env_before = dict(os.environ)
    os.environ.update({"TOKEN": secret, "LIVEKIT_API_SECRET": secret,
                       "LKPOOL_TEST_CANARY": secret,
                       "CHROMIUM_PROFILE_BASE_DIR": str(tmp_path / "profiles"),
                       "NUM_WARM": "1", "CAPTURE": "x11", "ACQUIRE_TIMEOUT": "90"})
    try:
        async with serve_subprocess() as served:
            async with aiohttp.ClientSession() as http:
                async with http.post(served.base + "/browser?timeout=60",
                                     headers={"Authorization": f"Bearer {secret}"}) as resp:
                    assert resp.status == 200, await resp.text()
                helpers, carriers = [], []
                for proc in tree(served.proc.pid)[1:]:
                    try:
                        if _is_python(proc):
                            continue  # lkpool's child (and the forkserver): ours
                        helpers.append(proc.name())
                        with open(f"/proc/{proc.pid}/environ", "rb") as f:
                            if secret.encode() in f.read():
                                carriers.append(f"{proc.pid}({proc.name()})")
                    except (psutil.Error, OSError):
                        continue
                assert {"Xvfb"} <= set(helpers) and any("chrom" in n for n in helpers), \
                    helpers
                assert carriers == [], f"processes with the server's secret: {carriers}"
            served.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(served.proc.wait(), 30)
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def _is_python(proc: psutil.Process) -> bool:
    try:
        exe = proc.exe()
    except psutil.Error:
        return False
    return os.path.realpath(exe) == os.path.realpath(sys.executable) or "python" in exe


def test_the_profile_folders_are_closed_to_other_users(tmp_path) -> None:
    """The base folder of the profiles (made or found wide open) and each profile are 0700:
    another local user cannot list the leases' cookies, storage and downloads."""
    from lkpool import profiles

    base = tmp_path / "open"
    base.mkdir(mode=0o777)
    os.chmod(base, 0o777)
    made = profiles.create(str(base))
    fresh = profiles.create(str(tmp_path / "new" / "base"))
    try:
        for folder in (base, made, os.path.dirname(fresh), fresh):
            assert os.stat(folder).st_mode & 0o077 == 0, oct(os.stat(folder).st_mode)
    finally:
        profiles.remove(made)
        profiles.remove(fresh)
