"""lkpool: a pool of off-screen Chromium browsers that renders pages into native video frames.

The public names load on first use: each child (and the forkserver they are forked from)
imports `lkpool.proc.main`, and going through this package must not pull livekit's native
library, the pool or the server into it (about 25 MB of every instance's memory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["APIClient", "AudioData", "BrowserContext", "BrowserPage", "Dialog", "Lease",
           "LkpoolError", "PaintData", "Pool", "Settings"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import APIClient
    from .config import Settings
    from .context import BrowserContext
    from .errors import LkpoolError
    from .page import AudioData, BrowserPage, Dialog, PaintData
    from .pool import Lease, Pool

_LAZY = {"Settings": ".config", "AudioData": ".page", "BrowserContext": ".context",
         "BrowserPage": ".page", "Dialog": ".page", "PaintData": ".page",
         "LkpoolError": ".errors",
         "Pool": ".pool", "Lease": ".pool", "APIClient": ".client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lkpool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
