"""Engines: which class runs one browser instance, picked from a table by `Settings.engine`.

    ENGINES = {"chromium": lkpool.context.BrowserContext    (ours; Debian's Chromium)
               "cef":      lkpool.cef.CefContext}           (livekit.browser over CEF)

The pool, the server and the publisher only call `create_context(settings)` and then use the API
of `lkpool.context.BrowserContext` (README, "Python library"); lkpool/cef.py makes livekit.browser
fit it. `check(settings)` says at start-up, with what to do, when an engine cannot run here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .config import Settings

EngineName = Literal["chromium", "cef"]


def _chromium(settings: Settings, port: int) -> Any:
    from .context import BrowserContext
    return BrowserContext(settings=settings, remote_debugging_port=port)


def _cef(settings: Settings, port: int) -> Any:
    from .cef import CefContext
    return CefContext(settings=settings, remote_debugging_port=port)


def _cef_resources(settings: Settings) -> Any:
    from .cef import cef_resources_dir
    return cef_resources_dir()


ENGINES: dict[EngineName, Callable[[Settings, int], Any]] = {"chromium": _chromium,
                                                             "cef": _cef}
# what each engine needs on this machine, checked once at start-up
CHECKS: dict[EngineName, Callable[[Settings], Any]] = {
    "chromium": lambda s: None,  # the chromium engine checks its binary when it starts
    "cef": _cef_resources,
}


def check(settings: Settings) -> None:
    """Raises EngineError (with what to do) when `settings.engine` cannot run here."""
    CHECKS[settings.engine](settings)


def create_context(settings: Settings, *, remote_debugging_port: int = 0) -> Any:
    """A not yet initialised context of `settings.engine`; call `await ctx.initialize()`.
    A port of 0 lets the browser pick a free one."""
    check(settings)
    return ENGINES[settings.engine](settings, remote_debugging_port)

