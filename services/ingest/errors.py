"""Error answers of the public API: a status, a sentence, and the fields at fault."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

# Errors listed per request (or per message of a batch): a hostile body with thousands of bad
# fields would otherwise get an answer ten times its size, built while nothing else runs
MAX_ERRORS = 10


def problem(status: int, error: str, field: str = "body", **extra: Any) -> web.Response:
    """A JSON error answer: ``error`` a sentence, ``errors`` the fields at fault (by default
    ``field`` with ``error`` as the reason)."""
    errors = extra.pop("errors", None) or [{"field": field, "reason": error}]
    return web.json_response({"error": error, "errors": errors, **extra}, status=status)


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
