"""The Bot API route: ``/bot{token}/{method}``, GET or POST, answered in Telegram's shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from sandbox.call import Call, Described
from sandbox.errors import ApiError, GatewayFault, not_found, unauthorized
from sandbox.faults import gateway_page
from sandbox.methods import find_method
from sandbox.params import read_params
from sandbox.state import STATE_KEY

API_PATH = "/bot{token}/{method}"


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer serialized with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _success(result: Any) -> web.Response:
    if isinstance(result, Described):
        return json_response(
            {"ok": True, "result": result.result, "description": result.description}
        )
    return json_response({"ok": True, "result": result})


def _gateway_response(status: int) -> web.Response:
    return web.Response(
        body=gateway_page(status),
        status=status,
        content_type="text/html",
        headers={"Server": "nginx"},
    )


async def handle_api(request: web.Request) -> web.Response:
    """Authenticate, dispatch, answer; then add latency and note the request.

    The hot path of every benchmark: no logging, no scans, one JSON encode.
    """
    state = request.app[STATE_KEY]
    method = request.match_info["method"]
    bot_id = state.bot_id_for(request.match_info["token"])
    call: Call | None = None
    try:
        if bot_id is None:
            raise unauthorized()
        found = find_method(method)
        if found is None:
            raise not_found()
        method, handler = found
        call = Call(state, bot_id, method, await read_params(request))
        response, outcome = _success(await handler(call)), "ok"
    except ApiError as exc:
        response, outcome = json_response(exc.body(), exc.status), exc.outcome
    except GatewayFault as exc:
        response, outcome = _gateway_response(exc.status), exc.outcome
    delay = state.faults.latency(state.config)
    if delay > 0.0:
        await asyncio.sleep(delay)
    chat_id = call.chat_id if call is not None else None
    state.note_request(bot_id, chat_id, method, response.status, outcome)
    return response


def add_api_routes(app: web.Application) -> None:
    """Serve the Bot API on GET and POST, as Telegram does."""
    app.router.add_route("GET", API_PATH, handle_api)
    app.router.add_route("POST", API_PATH, handle_api)
