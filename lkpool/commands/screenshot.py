"""`lkpool screenshot URL... [--server URL] --concurrency N --out DIR`: one PNG per URL.

Each URL gets its own lease (allocated through the REST API, captured with CDP
`Page.captureScreenshot` over the proxy, released), at most N at a time. Without `--server`
the same code runs against a server started in this process on a free local port, with its
own pool, so both paths are one path. One progress line per URL (status, seconds, file or
error), a total at the end; exit status 1 when any URL failed, 130 on Ctrl-C.

No lease is left behind: each is released in a `finally` that runs to the end even when the
command is cancelled (Ctrl-C); a lease whose allocation was cut off in flight expires after
`--lease-timeout` seconds on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import APIClient, APIError, CDPError
from ..config import MAX_HEIGHT, MAX_WIDTH, ConfigError, Settings
from ..errors import LkpoolError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", nargs="+", metavar="URL", help="pages to capture")
    parser.add_argument("--server", help="lkpool server, e.g. http://127.0.0.1:8888; "
                        "without it a pool runs in this process")
    parser.add_argument("--token", help="the server's TOKEN, if it has one")
    parser.add_argument("--concurrency", type=int, default=2, help="leases at once [2]")
    parser.add_argument("--out", default=".", help="folder for the PNG files [.]")
    parser.add_argument("--full-page", action="store_true",
                        help="capture the whole page, not just the viewport")
    parser.add_argument("--width", type=int, default=1280, help="viewport width [1280]")
    parser.add_argument("--height", type=int, default=720, help="viewport height [720]")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a page has to load [30]")
    parser.add_argument("--lease-timeout", type=float, default=120.0,
                        help="lease length in seconds, the bound on a lost lease [120]")


@dataclass
class Result:
    url: str
    ok: bool
    seconds: float
    path: Path | None = None
    error: str = ""


def file_name(index: int, url: str) -> str:
    """'3', 'https://example.com/a?b' -> '003-example.com-a-b.png' (safe on every system)."""
    slug = re.sub(r"^[a-z]+://", "", url, flags=re.I)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug).strip("-.")[:80] or "page"
    return f"{index:03d}-{slug}.png"


async def capture(client: APIClient, url: str, *, full_page: bool, timeout: float) -> bytes:
    """Loads `url` in the client's attached page and returns a PNG of it."""
    await client.enable_page_events()
    loaded = asyncio.ensure_future(client.wait_for("Page.loadEventFired", timeout=timeout))
    try:
        nav = await client.send_cdp_request("Page.navigate", {"url": url}, timeout=timeout)
        error = nav["result"].get("errorText")
        if error:
            raise APIError(0, "navigation_failed", f"{url}: {error}")
        await loaded
    finally:
        loaded.cancel()
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        metrics = (await client.send_cdp_request("Page.getLayoutMetrics"))["result"]
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        params |= {"captureBeyondViewport": True,
                   "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                            "scale": 1}}
    shot = await client.send_cdp_request("Page.captureScreenshot", params, timeout=timeout)
    return base64.b64decode(shot["result"]["data"])


async def _one(server: str, token: str | None, index: int, url: str, args: Any,
               limit: asyncio.Semaphore, out: Path) -> Result:
    async with limit:
        started = time.monotonic()
        try:
            async with APIClient(server, token=token) as client, \
                    client.session(args.lease_timeout, width=args.width, height=args.height):
                png = await capture(client, url, full_page=args.full_page,
                                    timeout=args.timeout)
            path = out / file_name(index, url)
            await asyncio.to_thread(path.write_bytes, png)
            result = Result(url, True, time.monotonic() - started, path)
        except (LkpoolError, OSError, KeyError) as exc:
            detail = exc.detail if isinstance(exc, APIError) and exc.detail else str(exc)
            result = Result(url, False, time.monotonic() - started, error=detail)
        report(result)
        return result


def report(result: Result) -> None:
    status = "ok  " if result.ok else "FAIL"
    where = str(result.path) if result.ok else result.error
    print(f"{status} {result.seconds:6.2f}s  {result.url}  {where}", flush=True)


@contextlib.asynccontextmanager
async def local_server(concurrency: int, width: int, height: int) -> AsyncIterator[str]:
    """An lkpool server with its own pool on a free port of 127.0.0.1, for this run only."""
    from ..server.app import serve_local  # noqa: PLC0415 (only the local mode needs it)

    settings = Settings.from_env(host="127.0.0.1", port=0, token="",
                                 max_instances=max(concurrency, 1),
                                 num_warm=max(concurrency, 1), width=width, height=height,
                                 audio=False)
    async with serve_local(settings) as (base, _app):
        yield base


async def screenshot_all(urls: list[str], args: Any) -> list[Result]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(args.concurrency)
    server_cm = (contextlib.nullcontext(args.server.rstrip("/")) if args.server
                 else local_server(min(args.concurrency, len(urls)), args.width, args.height))
    async with server_cm as server:
        return list(await asyncio.gather(*(
            _one(server, args.token, i, url, args, limit, out)
            for i, url in enumerate(urls, 1))))


def _check(args: Any) -> str | None:
    if not 1 <= args.concurrency <= 64:
        return "--concurrency must be in 1..64"
    if not (1 <= args.width <= MAX_WIDTH and 1 <= args.height <= MAX_HEIGHT):
        return f"--width/--height must be in 1..{MAX_WIDTH} x 1..{MAX_HEIGHT}"
    if args.timeout <= 0 or args.lease_timeout < 1:
        return "--timeout must be > 0 and --lease-timeout >= 1"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"lkpool screenshot: error: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        results = asyncio.run(screenshot_all(list(args.urls), args))
    except KeyboardInterrupt:
        print("lkpool screenshot: interrupted; leases released", file=sys.stderr)
        return 130
    except (ConfigError, LkpoolError, CDPError) as exc:
        print(f"lkpool screenshot: error: {exc}", file=sys.stderr)
        return 1
    failed = sum(not r.ok for r in results)
    print(f"{len(results)} URLs: {len(results) - failed} ok, {failed} failed in "
          f"{time.monotonic() - started:.2f}s", flush=True)
    return 1 if failed else 0
