"""What happens to an instance when its lease ends: replaced (the default) or reused after a
reset (opt-in, the object-pool model: `MAX_REUSABLE` uses, `EXPIRES` seconds of age, and a
`check_invalid(stats)` hook that can veto reuse).

Reuse is off by default: a fresh `--user-data-dir` is the surest way that nothing of one
session reaches the next. A reset clears everything a session can leave that we know of
(tests/security/test_sandbox_reuse.py plays a session that leaves one of each), and fails,
so that the instance is replaced, the moment any step of it fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import Settings

logger = logging.getLogger(__name__)

CheckInvalid = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class ReusePolicy:
    """Decides, from an instance's stats, whether it may serve another lease."""

    max_reusable: int = 0
    expires: float = 0.0
    check_invalid: CheckInvalid | None = None

    @classmethod
    def from_settings(cls, settings: Settings, check_invalid: CheckInvalid | None = None
                      ) -> ReusePolicy:
        return cls(settings.max_reusable, settings.expires, check_invalid)

    def expired(self, stats: dict[str, Any]) -> bool:
        return self.expires > 0 and stats["age"] >= self.expires

    def allows(self, stats: dict[str, Any]) -> bool:
        """True when an instance with these stats may be reset and handed out again."""
        if self.max_reusable <= 0 or stats["count"] >= self.max_reusable or self.expired(stats):
            return False
        if self.check_invalid is not None:
            try:
                return not self.check_invalid(dict(stats))
            except Exception:
                logger.exception("check_invalid raised: the instance is replaced")
                return False
        return True


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


# Chromium's on-disk stores key their records by origin ("META:https://a.example", folder
# names such as "https_a.example_0.indexeddb.leveldb"): the origins a session stored
# anything under, whether or not the pool saw a page of theirs (an iframe, a popup since
# closed, a navigation between two health checks)
STORES = ("Local Storage", "Session Storage", "IndexedDB", "Service Worker", "Storage",
          "File System", "shared_proto_db", "WebStorage", "blob_storage")
ORIGIN_IN_TEXT = re.compile(rb"(https?)://([A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9a-fA-F:.]+\]"
                            rb"(?::[0-9]{1,5})?)")
ORIGIN_IN_NAME = re.compile(r"^(https?)_(.+)_(\d+)\.(?:indexeddb|localstorage)")
MAX_SCAN_BYTES = 8 << 20


def stored_origins(profile: str) -> set[str]:
    """The http(s) origins named in the profile's storage folders (best effort)."""
    found: set[str] = set()
    default = os.path.join(profile, "Default")
    for store in STORES:
        for folder, _dirs, files in os.walk(os.path.join(default, store)):
            if (m := ORIGIN_IN_NAME.match(os.path.basename(folder))) is not None:
                scheme, host, port = m.groups()
                found.add(f"{scheme}://{host}" + (f":{port}" if port != "0" else ""))
            for name in files:
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        data = f.read(MAX_SCAN_BYTES)
                except OSError:
                    continue
                for hit in ORIGIN_IN_TEXT.finditer(data):
                    found.add(f"{hit.group(1).decode()}://{hit.group(2).decode().lower()}")
    return found


async def reset_browser(port: int, origins: set[str], timeout: float,
                        browser_path: str | None = None, downloads: str | None = None) -> None:
    """Clears what a session left in a browser, once the primary page shows about:blank,
    so that the next lease finds what a fresh instance has: every other target closed
    (tabs, popups, workers), every permission granted reset, cookies, cache, and the
    storage of every origin seen or found in the profile's stores (`stored_origins`),
    service workers included, cleared through the primary page's session (on the
    browser's own session Chromium answers `Storage.clearDataForOrigin` with "Internal
    error" and clears nothing), the page's history (and so its back-forward cache, whose
    pages keep renderers alive) forgotten, and downloads sent to `downloads` again (a
    client may have sent them elsewhere; the caller empties that folder; the profile is
    its parent). Every step must succeed: any error fails the reset, and the pool then
    replaces the instance rather than hand out a half-cleaned one."""
    from .proc.cdp import CDPConnection
    from .proc.chromium import browser_ws_url

    url = (f"ws://127.0.0.1:{port}{browser_path}" if browser_path
           else await browser_ws_url(port, timeout))
    if url is None:
        raise ConnectionError(f"the instance's DevTools on port {port} does not answer")
    async with await CDPConnection.connect(url, timeout) as cdp:

        async def send(method: str, session: str | None = None, **params: Any) -> Any:
            return await cdp.send(method, params, session_id=session, timeout=timeout)

        primary = await _close_all_but_the_primary_page(send, origins)
        session = (await send("Target.attachToTarget", targetId=primary,
                              flatten=True))["sessionId"]
        try:
            await send("Browser.resetPermissions")
            await send("Storage.clearCookies")
            await send("Network.clearBrowserCache", session)
            await send("Network.clearBrowserCookies", session)
            if downloads:
                origins |= await asyncio.to_thread(stored_origins, os.path.dirname(downloads))
            for origin in sorted(origins):
                await send("Storage.clearDataForOrigin", session, origin=origin,
                           storageTypes="all")
            await _when_active(lambda: send("Page.resetNavigationHistory", session))
            if downloads:
                await send("Browser.setDownloadBehavior", behavior="allow",
                           downloadPath=downloads, eventsEnabled=True)
        finally:
            await send("Target.detachFromTarget", sessionId=session)
        left = [t for t in (await send("Target.getTargets"))["targetInfos"]
                if t["targetId"] != primary and t.get("type") in RESET_CLOSES]
        if left:
            raise RuntimeError("targets survived the reset: "
                               + ", ".join(f"{t['type']} {t.get('url', '')}" for t in left))


async def _when_active(call: Callable[[], Awaitable[Any]], tries: int = 40) -> Any:
    """`call`, again while Chromium answers that the page is not active yet: right after
    the navigation to about:blank the page's new frame may still be taking over from the
    old one (seen when the reset follows a lease at once; a slower reset never met it)."""
    from .proc.cdp import CDPError

    for _ in range(tries - 1):
        try:
            return await call()
        except CDPError as exc:
            if "Not attached to an active page" not in str(exc):
                raise
        await asyncio.sleep(0.05)
    return await call()


# target types a reset closes: everything a session can leave running but the primary page
RESET_CLOSES = ("page", "iframe", "service_worker", "shared_worker", "worker", "other",
                "background_page", "webview")


async def _close_all_but_the_primary_page(send, origins: set[str]) -> str:
    """Closes every target but the primary page (the one at about:blank, which must stay:
    closing the last tab would quit Chromium) and returns the primary page's id. A service
    worker closed here may come back until its registration is cleared below: the check
    at the end of the reset catches one that does."""
    targets = (await send("Target.getTargets"))["targetInfos"]
    primary = None
    for t in targets:
        if (origin := origin_of(t.get("url", ""))) is not None:
            origins.add(origin)
        # "" is a page whose navigation has not committed: the primary page on its way
        # to about:blank (navigate answers before that commit)
        if primary is None and t.get("type") == "page" and t.get("url") in ("about:blank", ""):
            primary = t["targetId"]
    if primary is None:
        raise RuntimeError("no page at about:blank to keep")
    for t in targets:
        if t["targetId"] != primary and t.get("type") in RESET_CLOSES:
            await send("Target.closeTarget", targetId=t["targetId"])
    return primary

