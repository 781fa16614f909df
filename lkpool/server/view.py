"""The live view (/session/{id}/view) and the lease list (/): two self-contained HTML pages.

No build step and no external assets: each page is one file in `static/` with its script inline,
read on each request (they are small, and an edit shows without a restart). The view talks to the
frames and input sockets of its own session (their URLs are relative, and carry no token: under
/session/{id}/ the session id is the capability), so it works behind any prefix.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from . import appkeys

STATIC = Path(__file__).with_name("static")
PAGES = {"view": "view.html", "index": "index.html"}
_HEADERS = {
    "Cache-Control": "no-store",
    # the pages only ever talk to this server, and no other site may frame them (a framed
    # view could be clicked through by the site around it)
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    # links out of a page (there are none, but a session id is in the view's own URL) and
    # its requests send no Referer
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _page(name: str) -> str:
    return (STATIC / PAGES[name]).read_text(encoding="utf-8")


async def view_page(request: web.Request) -> web.Response:
    # an unknown session is a plain 404 (the error middleware makes it JSON)
    request.app[appkeys.POOL].get(request.match_info["session_id"])
    return web.Response(text=_page("view"), content_type="text/html", headers=_HEADERS)


async def index_page(request: web.Request) -> web.Response:
    return web.Response(text=_page("index"), content_type="text/html", headers=_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/session/{session_id}/view", view_page)
    app.router.add_get("/", index_page)
