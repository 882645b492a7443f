"""Reading a request body whole, however it arrives, within a size limit and a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from services.ingest.errors import problem


class BodyError(Exception):
    """The body cannot be read as JSON; carries the answer to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


async def read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """Every byte of the body, refusing more than ``limit`` (413) or slower than ``seconds``
    seconds (408). ``content.read(n)`` returns what is buffered so far, not ``n`` bytes, so a
    body that arrives in several TCP writes is read on until its end."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(
            problem(413, f"body too large: {request.content_length} bytes, limit {limit}")
        )
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while len(body) <= limit:
                chunk = await request.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError as exc:
        raise BodyError(problem(408, f"body not received within {seconds:g} s")) from exc
    if len(body) > limit:
        raise BodyError(problem(413, f"body too large: over {limit} bytes"))
    return bytes(body)


async def read_json(request: web.Request, limit: int, seconds: float) -> Any:
    """The body parsed as JSON (see ``read_body``); 422 naming ``body`` if it is not JSON."""
    body = await read_body(request, limit, seconds)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(
            problem(422, f"invalid JSON: {exc}", errors=[{"field": "body", "reason": str(exc)}])
        ) from exc
