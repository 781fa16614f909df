"""What happens to an instance when its lease ends: replaced (the default) or reused after a
reset (opt-in, the object-pool model: `MAX_REUSABLE` uses, `EXPIRES` seconds of age, and a
`check_invalid(stats)` hook that can veto reuse).

Reuse is off by default because a reset is best effort: a fresh `--user-data-dir` is the only
way to be sure nothing of one session reaches the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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


async def reset_browser(port: int, origins: set[str], timeout: float,
                        browser_path: str | None = None, downloads: str | None = None) -> None:
    """Clears what a session left in a browser through its browser-level CDP endpoint, once
    the primary page shows about:blank: other tabs closed, cookies cleared, the storage
    of every origin seen cleared, and downloads sent to `downloads` again (a client may
    have sent them elsewhere; the caller empties that folder). `browser_path` (known from
    the instance's start) saves a /json/version round trip. Each clearing step is best
    effort: Chromium answers `Storage.clearDataForOrigin` with "Internal error" for storage
    types an origin never used, having cleared the others. A browser that stops answering
    fails the reset."""
    from .proc.cdp import CDPClosed, CDPConnection, CDPError, CDPTimeout
    from .proc.chromium import browser_ws_url

    url = (f"ws://127.0.0.1:{port}{browser_path}" if browser_path
           else await browser_ws_url(port, timeout))
    if url is None:
        raise ConnectionError(f"the instance's DevTools on port {port} does not answer")
    async with await CDPConnection.connect(url, timeout) as cdp:

        async def step(method: str, **params: Any) -> None:
            try:
                await cdp.send(method, params, timeout=timeout)
            except (CDPTimeout, CDPClosed):
                raise
            except CDPError as exc:
                logger.debug("reset: %s", exc)

        targets = (await cdp.send("Target.getTargets", timeout=timeout))["targetInfos"]
        for t in targets:
            if t.get("type") != "page":
                continue
            if (origin := origin_of(t.get("url", ""))) is not None:
                origins.add(origin)
            # "" is a page whose navigation has not committed: the primary page on its way
            # to about:blank (navigate answers before that commit). Closing it would close
            # the last tab, and Chromium quits with it.
            if t.get("url") not in ("about:blank", ""):
                await step("Target.closeTarget", targetId=t["targetId"])
        await step("Storage.clearCookies")
        if downloads:
            await step("Browser.setDownloadBehavior", behavior="allow", downloadPath=downloads)
        for origin in sorted(origins):
            await step("Storage.clearDataForOrigin", origin=origin, storageTypes="all")

