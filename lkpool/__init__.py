"""lkpool: a pool of off-screen Chromium browsers that renders pages into native video frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings
from .context import AudioData, BrowserContext, BrowserPage, PaintData
from .errors import LkpoolError

__all__ = ["APIClient", "AudioData", "BrowserContext", "BrowserPage", "Lease", "LkpoolError",
           "PaintData", "Pool", "Settings"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import APIClient
    from .pool import Lease, Pool

_LAZY = {"Pool": ".pool", "Lease": ".pool", "APIClient": ".client"}


def __getattr__(name: str) -> Any:
    """The pool and the client load on first use: a plain frame consumer needs neither."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'lkpool' has no attribute {name!r}")
