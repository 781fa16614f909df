"""The download cap of an instance (DOWNLOAD_MAX_BYTES): downloads stop being written once
they total that many bytes, and the browser and its lease go on.

Chromium writes downloads wherever `Browser.setDownloadBehavior` says, which a lease holder
may call too: inside the sandbox that is its profile or its private /tmp (memory), never
the host's folders, but without a cap a lease could still fill either. The child follows
`Browser.downloadProgress` on its own DevTools session (events are per session: a client
turning them off for itself does not turn off ours) and cancels every download in progress
once the bytes received by all of them pass the cap. The count is the instance's: a fresh
instance per lease (the default) makes it the lease's.
"""

from __future__ import annotations

import logging
from typing import Any

from ..tasks import spawn
from .cdp import CDPConnection, CDPError

logger = logging.getLogger(__name__)


class DownloadCap:
    def __init__(self, cdp: CDPConnection, max_bytes: int) -> None:
        self.cdp = cdp
        self.max_bytes = max_bytes
        self.received: dict[str, int] = {}
        self.cancelled: set[str] = set()
        self._tasks: set = set()
        cdp.on("Browser.downloadProgress", self._on_progress)

    @property
    def total(self) -> int:
        return sum(self.received.values())

    def _on_progress(self, params: dict[str, Any], _session: str | None = None) -> None:
        guid = params.get("guid", "")
        self.received[guid] = max(self.received.get(guid, 0),
                                  int(params.get("receivedBytes", 0)))
        if (params.get("state") == "inProgress" and self.total > self.max_bytes
                and guid not in self.cancelled):
            self.cancelled.add(guid)
            logger.warning("download %s cancelled: downloads passed DOWNLOAD_MAX_BYTES=%d",
                           guid, self.max_bytes)
            spawn(self._cancel(guid), into=self._tasks, log=logger)

    async def _cancel(self, guid: str) -> None:
        try:
            await self.cdp.send("Browser.cancelDownload", {"guid": guid})
        except CDPError as exc:  # it ended meanwhile
            logger.debug("cancel of download %s: %s", guid, exc)
