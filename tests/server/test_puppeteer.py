"""Puppeteer through the proxy (optional: needs node, and puppeteer-core from npm)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import run_server
from tests.support.pages import serve_pages

NODE_DIR = Path(os.environ.get("LKPOOL_NODE_DIR",
                               Path.home() / ".cache" / "lkpool-tests" / "node"))
SCRIPT = """
const puppeteer = require('puppeteer-core');
(async () => {
  const browser = await puppeteer.connect({browserWSEndpoint: process.argv[2]});
  const page = (await browser.pages())[0] || await browser.newPage();
  await page.goto(process.argv[3]);
  const title = await page.evaluate(() => document.title);
  const png = await page.screenshot();
  console.log(JSON.stringify({title, png: png.length}));
  await browser.disconnect();
})().catch(e => { console.error(e); process.exit(1); });
"""


def puppeteer_dir() -> Path | None:
    """A folder with puppeteer-core installed (installed there once), or None."""
    if not shutil.which("node"):
        return None
    if (NODE_DIR / "node_modules" / "puppeteer-core").is_dir():
        return NODE_DIR
    if not shutil.which("npm"):
        return None
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
             "puppeteer-core"], capture_output=True, timeout=180,
            env=os.environ | {"PUPPETEER_SKIP_DOWNLOAD": "1"})
    except subprocess.TimeoutExpired:
        return None
    return NODE_DIR if done.returncode == 0 else None


async def test_puppeteer_connects_with_ws_url(small) -> None:
    """puppeteer.connect({browserWSEndpoint: ws_url}) drives the leased browser: goto a
    local page, read its title, take a screenshot."""
    folder = await asyncio.to_thread(puppeteer_dir)
    if folder is None:
        pytest.skip("node or puppeteer-core (npm) is not available here")
    script = folder / "lkpool_connect.js"
    script.write_text(SCRIPT)
    async with serve_pages({"/p": "<title>puppet</title><body>hi</body>"}) as site, \
            run_server(small) as srv:
        body = await srv.allocate(timeout=60)
        node = await asyncio.create_subprocess_exec(
            "node", str(script), body["ws_url"], f"{site}/p", cwd=folder,
            env=os.environ | {"NODE_PATH": str(folder / "node_modules")},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(node.communicate(), 60)
        assert node.returncode == 0, err.decode(errors="replace")
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["title"] == "puppet" and result["png"] > 100
        assert srv.pool.get(body["session_id"]).active
