"""One error middleware: every failure becomes JSON `{"error": code, "detail": message}`.

lkpool's own errors carry their status and code; aiohttp's HTTP errors keep their status and
headers (Allow, Retry-After...) with a code named after the status. Anything else is a bug:
it is logged here, once, and answered 500 without details.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import LkpoolError
from .appkeys import SETTINGS

logger = logging.getLogger(__name__)

# codes of the HTTP errors that aiohttp raises itself (routing, body size)
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large",
    415: "unsupported_media_type", 502: "bad_gateway",
    503: "unavailable", 504: "timeout",
}


# a session id is a capability: logs show its first characters only
_SESSION_ID = re.compile(r"(?<![A-Za-z0-9_-])([A-Za-z0-9_-]{6})[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """`text` with every session-id-like token cut to its first 6 characters."""
    return _SESSION_ID.sub(r"\1…", text)


def json_error(status: int, code: str, detail: str, headers: Any = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def retry_after(request: web.Request) -> str:
    """Seconds a client should wait before asking a full pool again."""
    return str(max(1, math.ceil(request.app[SETTINGS].acquire_timeout)))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else (
            exc.reason)
        return json_error(exc.status, HTTP_CODES.get(exc.status, "http_error"), detail or "",
                          headers)
    except LkpoolError as exc:
        retry = {"Retry-After": retry_after(request)} if exc.status == 503 else None
        if exc.status >= 500:
            logger.warning("%s %s: %s: %s", request.method, redact(request.path), exc.code,
                           redact(str(exc)))
        return json_error(exc.status, exc.code, str(exc) or exc.code, retry)
    except Exception:
        logger.exception("unexpected error in %s %s", request.method, redact(request.path))
        return json_error(500, "internal_error", "unexpected server error (logged)")
