"""Authorization of HTTP routes: one table from (method, route) to the roles that may call it.

``/healthz``, ``/readyz``, ``/metrics``, the Telegram webhook (which carries Telegram's secret)
and the drop-in Bot API routes (which carry a bot's token) are open, as the contract lists them;
``/openapi.json`` takes a key of any role. A route not in the table is for admins only, so a new
route is closed until it is listed. Every refusal, and every other HTTP error of the app, is
answered in JSON.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter

from shared.access import UNCHECKED, Authenticator, Principal, Unauthenticated
from shared.api_keys import Role
from shared.broker import BrokerUnavailable

log = logging.getLogger("floodgate.auth")

PRINCIPAL = web.RequestKey("principal", Principal)

# The drop-in Bot API routes carry a bot's token, which is their credential (checked there).
OPEN = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/webhook/telegram/{bot_id}",
        "/bot{token}/{method}",
        "/file/bot{token}/{path}",
        "/bot{rest}",
        "/file/bot{rest}",
    }
)
ANYONE = frozenset(Role)
SENDERS = frozenset({Role.PRODUCER, Role.ADMIN})
READERS = frozenset({Role.VIEWER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})

ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/v1/messages"): SENDERS,
    ("POST", "/v1/messages/batch"): SENDERS,
    ("GET", "/v1/messages/{id}"): ANYONE,
    ("GET", "/queue/stats"): READERS,
    ("GET", "/v1/dlq"): READERS,
    ("GET", "/openapi.json"): ANYONE,
}


def roles_for(method: str, route: str) -> frozenset[Role]:
    """Who may call ``method route`` (HEAD as GET); admins only when it is not listed."""
    return ROLES.get(("GET" if method == "HEAD" else method, route), ADMINS)


def principal_of(request: web.Request) -> Principal:
    """The caller of a request the middleware let through."""
    principal: Principal = request.get(PRINCIPAL, UNCHECKED)
    return principal


def refuse(status: int, error: str) -> web.Response:
    """A JSON refusal."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(
        {"error": error, "errors": [{"field": "Authorization", "reason": error}]},
        status=status,
        headers=headers,
    )


REFUSALS = ("401", "403", "503")
CROSS_SITE = "a browser's request from another site is refused while FLOODGATE_AUTH=off"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def _cross_site(request: web.Request) -> bool:
    """Whether a browser sent the request from a page of another site. With keys checked, a
    page cannot send one (the Authorization header needs a preflight nobody answers); with
    FLOODGATE_AUTH=off, any page open in a developer's browser could post a form or a text
    body to a floodgate on localhost and send as any bot, unless its Origin is refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    scheme, sep, host = origin.partition("://")
    if not sep or scheme not in ("http", "https") or host != request.host:
        return True
    # the same name in Origin and Host is no proof of the same site: a page whose name was
    # rebound to 127.0.0.1 (DNS rebinding) sends its own name in both. Only a page served from
    # this machine's own loopback names counts as this site.
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() not in LOOPBACK_NAMES


def auth_middleware(auth: Authenticator, registry: CollectorRegistry) -> Middleware:
    """Checks every request's key against ``ROLES`` before its handler runs; counts refusals
    (401: no or a bad key, 403: a key of the wrong role, 503: the key store unreachable)."""
    refused = Counter(
        "floodgate_http_auth_refused_total",
        "Requests refused by the API key check, by HTTP status (401 no or bad key, 403 wrong "
        "role, 503 key store unreachable).",
        ["status"],
        registry=registry,
    )
    for status in REFUSALS:  # at 0 from the start, so a rate over them sees the first
        refused.labels(status)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else request.path
        if canonical not in OPEN:
            if not auth.enabled and _cross_site(request):
                refused.labels("403").inc()
                return refuse(403, CROSS_SITE)
            try:
                principal = await auth.check(request.headers.get("Authorization"))
            except Unauthenticated as exc:
                refused.labels("401").inc()
                return refuse(401, str(exc))
            except BrokerUnavailable:
                log.warning("key store unreachable, refused with 503")
                refused.labels("503").inc()
                return refuse(503, "key store unavailable, retry later")
            if principal.role not in roles_for(request.method, canonical):
                refused.labels("403").inc()
                return refuse(
                    403, f"a {principal.role.value} key may not {request.method} {canonical}"
                )
            request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
