"""The errors of lkpool's client (lkpool/client.py): what the server said, what the browser said."""

from __future__ import annotations

from typing import Any

from .errors import LkpoolError


class APIError(LkpoolError):
    """The server answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(f"{status} {error}: {detail}" if detail else f"{status} {error}")
        self.status, self.error, self.detail = status, error, detail
        self.code = error


class CDPError(LkpoolError):
    """A CDP command came back with an error."""

    code = "cdp_error"

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message', error)}")
        self.method, self.error = method, error

