"""GET /openapi.json: the REST API described for clients and for schemathesis."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import MAX_FRAMERATE, MAX_HEIGHT, MAX_WIDTH

_ERROR = {"type": "object", "required": ["error", "detail"],
          "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
_LEASE = {"type": "object", "properties": {
    "session_id": {"type": ["string", "null"]}, "debugging_port": {"type": "integer"},
    "active": {"type": "boolean"}, "last_used": {"type": "number"},
    "timeout": {"type": "number"}, "end_reason": {"type": ["string", "null"]}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for s in statuses}


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_TIMEOUT = _query("timeout", {"type": "number", "minimum": 1}, "lease length in seconds")
_SESSION = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}

_SHOT = {"type": "object", "required": ["media_type", "data", "width", "height"],
         "properties": {"media_type": {"type": "string", "enum": ["image/png", "image/jpeg"]},
                        "data": {"type": "string", "format": "byte"},
                        "width": {"type": "integer"}, "height": {"type": "integer"}}}
_COMPUTER = {"type": "object", "properties": {
    "actions": {"type": "array", "maxItems": 100, "items": {
        "type": "object", "required": ["action"],
        "properties": {"action": {"type": "string"},
                       "coordinate": {"type": "array", "items": {"type": "integer"}},
                       "start_coordinate": {"type": "array", "items": {"type": "integer"}},
                       "text": {"type": "string"}, "scroll_direction": {
                           "type": "string", "enum": ["up", "down", "left", "right"]},
                       "scroll_amount": {"type": "integer"}, "duration": {"type": "number"}}}},
    "screenshot": {"type": "string", "enum": ["png", "jpeg"], "nullable": True},
    "scale": {"type": "number", "minimum": 0.05, "maximum": 1},
    "quality": {"type": "integer", "minimum": 1, "maximum": 100}}}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "lkpool", "version": "0.1.0",
             "description": "A pool of Chromium instances; chrome-pool compatible API."},
    "components": {
        "schemas": {"Error": _ERROR, "Lease": _LEASE},
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "paths": {
        "/browser": {"post": {
            "summary": "allocate a browser",
            "parameters": [
                _TIMEOUT,
                _query("url", {"type": "string"}, "page to open"),
                _query("width", {"type": "integer", "minimum": 1, "maximum": MAX_WIDTH}, ""),
                _query("height", {"type": "integer", "minimum": 1, "maximum": MAX_HEIGHT}, ""),
                _query("framerate", {"type": "integer", "minimum": 1,
                                     "maximum": MAX_FRAMERATE}, ""),
            ],
            "responses": _ok({"type": "object", "required": ["session_id", "proxy_url",
                                                            "ws_url", "debugging_port",
                                                            "expires_at"]})
            | _errors(400, 401, 413, 502, 503, 504),  # 502/504: a cluster's owner node
        }},
        "/browser/{session_id}": {
            "parameters": [_SESSION],
            "get": {"summary": "one lease", "responses": _ok(_LEASE) | _errors(401, 404)},
            "delete": {"summary": "release", "responses": _ok({"type": "object"})
                       | _errors(401, 404)},
        },
        "/browser/{session_id}/timeout": {
            "parameters": [_SESSION],
            "post": {"summary": "extend a lease", "parameters": [_TIMEOUT],
                     "responses": _ok({"type": "object"}) | _errors(400, 401, 404)},
        },
        "/browsers": {"get": {"summary": "list instances",
                              "responses": _ok({"type": "array", "items": _LEASE})
                              | _errors(401)}},
        "/health": {"get": {"summary": "pool health",
                            "responses": _ok({"type": "object"}) | _errors(401, 503)}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "text format"}} | _errors(401)}},
        # under /session/{id}/ the session id is the capability: no token needed
        "/session/{session_id}/input": {
            "parameters": [_SESSION],
            "post": {"summary": "input events (mouse, key, text, navigate, back, forward, "
                                "reload, resize, dialog), one or a list; all checked before "
                                "any is applied; answered once the page handled them",
                     "security": [],
                     "requestBody": _json_body({"oneOf": [{"type": "object"},
                                                          {"type": "array",
                                                           "items": {"type": "object"}}]}),
                     "responses": _ok({"type": "object", "required": ["ok", "applied"]})
                     | _errors(400, 403, 404, 409, 413)},
        },
        "/session/{session_id}/computer": {
            "parameters": [_SESSION],
            "post": {"summary": "computer-use actions in Anthropic's vocabulary (left_click, "
                                "right_click, middle_click, double_click, triple_click, "
                                "mouse_move, left_click_drag, left_mouse_down, "
                                "left_mouse_up, scroll, type, key, hold_key, wait, "
                                "screenshot, cursor_position), all checked before any runs "
                                "(a bad one is a 400 naming its index and field), applied in "
                                "order; answered with the page's frame once it settled",
                     "security": [],
                     "requestBody": _json_body(_COMPUTER),
                     "responses": _ok({"type": "object", "required": ["screenshot", "cursor",
                                                                     "applied"],
                                       "properties": {"screenshot": _SHOT | {
                                           "nullable": True},
                                           "cursor": {"type": "array",
                                                      "items": {"type": "integer"}},
                                           "applied": {"type": "integer"}}})
                     | _errors(400, 403, 404, 409)},
        },
        "/session/{session_id}/screenshot": {
            "parameters": [_SESSION],
            "get": {"summary": "the page's current frame as an image", "security": [],
                    "parameters": [
                        _query("format", {"type": "string", "enum": ["png", "jpeg"]}, ""),
                        _query("scale", {"type": "number", "minimum": 0.05, "maximum": 1},
                               "scale factor, at most 1"),
                        _query("quality", {"type": "integer", "minimum": 1, "maximum": 100},
                               "JPEG quality")],
                    "responses": _ok({"type": "object", "required": ["screenshot"],
                                      "properties": {"screenshot": _SHOT}})
                    | _errors(400, 403, 404)},
        },
        "/session/{session_id}/publish": {
            "parameters": [_SESSION],
            "post": {"summary": "publish the lease's page into a LiveKit room: "
                                "{livekit_url, token} or {room, identity}",
                     "security": [],
                     "requestBody": _json_body({"type": "object"}),
                     "responses": _ok({"type": "object"})
                     | _errors(400, 401, 403, 404, 409, 413, 502)},
            "get": {"summary": "the publication, if any", "security": [],
                    "responses": _ok({"type": "object"}) | _errors(403, 404)},
            "delete": {"summary": "stop publishing", "security": [],
                       "responses": _ok({"type": "object"}) | _errors(403, 404, 409)},
        },
    },
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
