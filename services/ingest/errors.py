"""Error answers of the public API: a status, a sentence, and the fields at fault."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


def problem(status: int, error: str, field: str = "body", **extra: Any) -> web.Response:
    """A JSON error answer: ``error`` a sentence, ``errors`` the fields at fault (by default
    ``field`` with ``error`` as the reason)."""
    errors = extra.pop("errors", None) or [{"field": field, "reason": error}]
    return web.json_response({"error": error, "errors": errors, **extra}, status=status)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each pydantic error as {"field": "a.b", "reason": "..."}; model-level ones name "body"."""
    result = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "body"
        reason = err["msg"].removeprefix("Value error, ")
        result.append({"field": field, "reason": reason})
    return result


def summary(errors: list[dict[str, str]]) -> str:
    """One sentence naming every field at fault."""
    return "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
