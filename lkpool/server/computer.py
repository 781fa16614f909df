"""Computer use over REST, in Anthropic's computer-use vocabulary (lkpool/computer.py):

    POST /session/{id}/computer   {"actions": [...], "screenshot": "png" | "jpeg" | null,
                                   "scale": 0.5, "quality": 80}
        -> {"screenshot": {"media_type", "data", "width", "height"} | null,
            "cursor": [x, y], "applied": n}
    GET  /session/{id}/screenshot?format=png|jpeg&scale=&quality=
        -> {"screenshot": {...}}

The whole batch is checked before any of it runs: a bad action is a 400 naming its index,
name and field. The caller is an agent: it acts with the page's focus (lkpool/focus.py),
and when a person holds it (someone in the room, the live view) the request is a 409
`focus_held` naming them: the agent was interrupted. The answer's screenshot is taken
from the page's own frame once it settled, ready to hand back to the model as a tool
result's image. Under /session/{id}/ the
session id is the capability, as for the proxy and the input socket.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import computer
from ..errors import InvalidArgument
from ..images import FORMATS, ImageFormat
from .appkeys import POOL
from .edge import read_json


def _options(params: dict[str, Any], fmt_key: str, default: ImageFormat | None
             ) -> tuple[ImageFormat | None, float, int]:
    raw = params.get(fmt_key, default)
    fmt = next((f for f in FORMATS if f == raw), None)
    if raw is not None and fmt is None:
        raise InvalidArgument(f"{fmt_key} must be one of {', '.join(FORMATS)} or null, "
                              f"got {raw!r}")
    scale = _number(params, "scale", 0.05, 1.0, 1.0)
    quality = int(_number(params, "quality", 1, 100, 80, integer=True))
    return fmt, scale, quality


def _number(params: dict[str, Any], name: str, lo: float, hi: float, default: float, *,
            integer: bool = False) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if integer and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        value = float("nan")
    if not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise InvalidArgument(f"{name} must be {what} in {lo:g}..{hi:g}, got {raw!r}")
    return value


async def computer_post(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    lease = pool.get(request.match_info["session_id"])
    page = lease.page
    params = await read_json(request, types=(dict,))
    if params is None:
        raise InvalidArgument('the body must be a JSON object: {"actions": [...]}')
    unknown = sorted(set(params) - {"actions", "screenshot", "scale", "quality"})
    if unknown:
        raise InvalidArgument(f"{unknown[0]} is not a field of a computer request")
    fmt, scale, quality = _options(params, "screenshot", "png")
    steps = computer.parse(params.get("actions", []), (page.width, page.height))
    if steps:
        computer.take_focus(page)
    pool.touch(lease.session_id)
    cursor = await computer.run(page, steps)
    shot = (await computer.screenshot(page, fmt, scale=scale, quality=quality,
                                      settle=not steps)).as_json() \
        if fmt is not None else None
    return web.json_response({"screenshot": shot, "cursor": list(cursor),
                              "applied": len(steps)})


async def screenshot_get(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    lease = pool.get(request.match_info["session_id"])
    fmt, scale, quality = _options(dict(request.query), "format", "png")
    if fmt is None:
        raise InvalidArgument("format must be png or jpeg")
    pool.touch(lease.session_id)
    shot = await computer.screenshot(lease.page, fmt, scale=scale, quality=quality)
    return web.json_response({"screenshot": shot.as_json()})


def setup(app: web.Application) -> None:
    app.router.add_post("/session/{session_id}/computer", computer_post)
    app.router.add_get("/session/{session_id}/screenshot", screenshot_get)
