"""Helpers of the fault and load tests: an instance's processes by role, CDP through the
proxy, and the state a killed instance must not leave behind."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
import pytest

from lkpool.config import Settings
from lkpool.context import BrowserContext
from tests.support import leaks

# role of a process in an instance -> how to find its pid
ROLES = {
    "child": lambda ctx: ctx.pid,
    "chromium": lambda ctx: ctx.browser_pid,
    "xvfb": lambda ctx: _by_name(ctx, "Xvfb"),
    "parec": lambda ctx: _by_name(ctx, "parec"),
}


def group(ctx: BrowserContext) -> list[psutil.Process]:
    """Every live process of the instance: its process group (the child leads it) and the
    child's descendants (a sandboxed Chromium runs in a session of its own)."""
    out: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == ctx.pid and proc.status() != psutil.STATUS_ZOMBIE:
                out[proc.pid] = proc
        except (ProcessLookupError, psutil.Error):
            continue
    try:
        for proc in psutil.Process(ctx.pid).children(recursive=True):
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.setdefault(proc.pid, proc)
    except (psutil.Error, TypeError):
        pass
    return list(out.values())


def _by_name(ctx: BrowserContext, name: str) -> int:
    found = [p.pid for p in group(ctx) if _name(p) == name]
    assert len(found) == 1, f"expected one {name} in instance {ctx.instance_id}: {found}"
    return found[0]


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


@dataclass
class Remains:
    """What an instance owned, taken while it ran, to check it is all gone afterwards."""
    pids: set[int]
    profile_dir: str
    sink: str

    @classmethod
    def of(cls, ctx: BrowserContext) -> Remains:
        return cls({p.pid for p in group(ctx)}, ctx.profile_dir, ctx.audio_sink)

    def left(self) -> list[str]:
        """What is still there (empty when the instance ended cleanly)."""
        out = [f"pid {pid}" for pid in self.pids if leaks._pid_alive(pid)]
        if self.profile_dir and os.path.exists(self.profile_dir):
            out.append(f"profile {self.profile_dir}")
        if self.sink and self.sink in leaks.pulse_sinks():
            out.append(f"sink {self.sink}")
        return out


class CDP:
    """A raw CDP WebSocket (through the proxy) with numbered commands."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method,
                                           "params": params}))
        while True:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.extra)
            reply = json.loads(msg.data)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]


async def page_ws_url(http: aiohttp.ClientSession, proxy_url: str) -> str:
    """The proxied DevTools WebSocket of the lease's page (the first page target)."""
    async with http.get(f"{proxy_url}/json/list") as resp:
        targets = await resp.json()
    pages = [t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"]
    assert pages, f"no page target: {targets}"
    return pages[0]


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Settings for fault tests: small pages, no audio, quick health checks."""
    return settings.replace(width=320, height=240, framerate=10, audio=False,
                            health_check_interval=0.5, health_check_timeout=3.0,
                            acquire_timeout=2.0)
