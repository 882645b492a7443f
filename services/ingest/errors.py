"""Error answers of the public API: a status, a sentence, and the fields at fault."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.http_errors import MAX_ERRORS, field_errors, summary

__all__ = ["MAX_ERRORS", "field_errors", "problem", "summary"]


def problem(status: int, error: str, field: str = "body", **extra: Any) -> web.Response:
    """A JSON error answer: ``error`` a sentence, ``errors`` the fields at fault (by default
    ``field`` with ``error`` as the reason)."""
    errors = extra.pop("errors", None) or [{"field": field, "reason": error}]
    return web.json_response({"error": error, "errors": errors, **extra}, status=status)
