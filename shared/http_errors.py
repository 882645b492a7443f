"""Every error answer is JSON: unknown routes, wrong methods, and anything a handler raised."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("floodgate.http")

KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text error answers and unexpected exceptions into JSON bodies with
    ``error`` and ``errors: [{field, reason}]``; an exception's text never leaves the process."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
        reason = exc.reason or "error"
        field = "path" if exc.status in (404, 405) else "body"
        return web.json_response(
            {"error": reason, "errors": [{"field": field, "reason": reason}]},
            status=exc.status,
            headers=headers,
        )
    except Exception:
        log.exception("request failed", extra={"method": request.method, "route": _route(request)})
        reason = "internal error"
        return web.json_response(
            {"error": reason, "errors": [{"field": "body", "reason": reason}]}, status=500
        )


def _route(request: web.Request) -> str:
    """The route's pattern, not the path: the path may carry anything."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"
