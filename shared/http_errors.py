"""Every error answer is JSON: unknown routes, wrong methods, and anything a handler raised."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

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


# Errors listed per request (or per message of a batch): a hostile body with thousands of bad
# fields would otherwise get an answer ten times its size, built while nothing else runs
MAX_ERRORS = 10


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each pydantic error as {"field": "a.b", "reason": "..."}; model-level ones name "body".
    At most ``MAX_ERRORS`` of them, then one that says how many more there were."""
    result = []
    for err in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]:
        field = ".".join(str(part) for part in err["loc"]) or "body"
        reason = err["msg"].removeprefix("Value error, ")
        result.append({"field": field, "reason": reason})
    more = exc.error_count() - MAX_ERRORS
    if more > 0:
        result.append({"field": "body", "reason": f"and {more} more errors"})
    return result


def summary(errors: list[dict[str, str]]) -> str:
    """One sentence naming every field at fault."""
    return "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
