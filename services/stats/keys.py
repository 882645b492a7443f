"""``/v1/keys``: key management over HTTP, for admins (``floodgate keys --url``)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.api_keys import KeyStore, Role, new_key
from shared.broker import BrokerUnavailable
from shared.models import Priority


class NewKey(BaseModel):
    """Body of ``POST /v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    name: str = Field("", max_length=200)
    bots: list[int] = Field(default_factory=list, max_length=10_000)
    rate: int | None = Field(None, ge=1)
    expires_at: float | None = None
    max_priority: Priority | None = None


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda o: orjson.dumps(o).decode())


class KeyRoutes:
    """List, create and revoke keys in the process's key store."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def routes(self) -> list[web.RouteDef]:
        """The routes (admins only: they are not in the authorization table)."""
        return [
            web.get("/v1/keys", self.list_keys),
            web.post("/v1/keys", self.create_key),
            web.delete("/v1/keys/{id}", self.revoke_key),
        ]

    async def list_keys(self, _: web.Request) -> web.Response:
        """``GET /v1/keys``: every key, never its secret."""
        try:
            keys = await self._store.list()
        except BrokerUnavailable:
            return _json({"error": "key store unavailable"}, 503)
        return _json({"keys": [k.describe() for k in keys]})

    async def create_key(self, request: web.Request) -> web.Response:
        """``POST /v1/keys``: 201 with the new key, shown this once."""
        try:
            spec = NewKey.model_validate_json(await request.read())
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            return _json({"error": "invalid key", "errors": errors}, 422)
        token, key = new_key(
            spec.role,
            name=spec.name,
            bots=spec.bots,
            rate=spec.rate,
            expires_at=spec.expires_at,
            max_priority=spec.max_priority,
        )
        try:
            await self._store.add(key)
        except BrokerUnavailable:
            return _json({"error": "key store unavailable"}, 503)
        return _json({"key": token, **key.describe()}, 201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        """``DELETE /v1/keys/{id}``."""
        key_id = request.match_info["id"]
        try:
            found = await self._store.revoke(key_id)
        except BrokerUnavailable:
            return _json({"error": "key store unavailable"}, 503)
        if not found:
            return _json({"error": f"no key with id {key_id}"}, 404)
        return _json({"revoked": key_id})
