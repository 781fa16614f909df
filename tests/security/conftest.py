"""Shared helpers of the attacker tests: the real server (`run_server`, from the server
tests), small settings, raw requests with the headers a hostile page's browser would send,
and a real Chromium whose resolver sends foreign names to 127.0.0.1 (so a page of
`evil.example` runs in a real browser without any network)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from lkpool.config import Settings

# the attacker's names, all resolved to 127.0.0.1 inside the test's Chromium
EVIL = "evil.example"
REBOUND = "rebind.attacker.example"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--host-resolver-rules=MAP {EVIL} 127.0.0.1, "
                 f"MAP {REBOUND} 127.0.0.1"]


@pytest.fixture
def edge(settings: Settings) -> Settings:
    """Small, quiet settings: pages of 320x240, no audio, no warm instance (so a lease is
    a cold start: ACQUIRE_TIMEOUT leaves room for a loaded machine)."""
    return settings.replace(width=320, height=240, framerate=10, audio=False, num_warm=0,
                            max_instances=2, health_check_interval=0.5, acquire_timeout=30.0)


async def request(base: str, method: str, path: str, *, headers: dict[str, str] | None = None,
                  data: Any = None) -> tuple[int, Any]:
    """One raw request with exactly these headers; (status, JSON body or text)."""
    async with aiohttp.ClientSession() as http, http.request(
            method, base + path, headers=headers or {}, data=data,
            skip_auto_headers=["Content-Type"]) as resp:
        text = await resp.text()
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, text


def host_of(base: str) -> str:
    return base.split("://", 1)[1]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A real Chromium (Playwright) for attacks that need a browser's own behaviour."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
