"""``/v1/keys``: key management over HTTP, for admins (``floodgate keys --url``)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.api_keys import KeyStore, Role, new_key
from shared.broker import BrokerUnavailable
from shared.http_errors import field_errors, summary
from shared.models import Priority
from shared.validation import BotId, Text

# A key id is 24 hex digits: an answer quotes no more of whatever was asked for
SHOWN_ID_CHARS = 64


# The latest expiry a key may be given: the end of year 9999, as far as every store's time goes
LATEST_EXPIRY = 253_402_300_799.0


class NewKey(BaseModel):
    """Body of ``POST /v1/keys``: every value within what each key store keeps as given (a
    value one cannot take is a 422 naming it, never a store error)."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    name: Text = Field("", max_length=200)
    bots: list[BotId] = Field(default_factory=list, max_length=10_000)
    rate: int | None = Field(None, ge=1, le=2**31 - 1)
    expires_at: float | None = Field(None, allow_inf_nan=False, le=LATEST_EXPIRY)
    max_priority: Priority | None = None

    @field_validator("expires_at")
    @classmethod
    def _ahead(cls, value: float | None) -> float | None:
        if value is not None and value <= time.time():
            raise ValueError("must be in the future (seconds since the epoch)")
        return value


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda o: orjson.dumps(o).decode())


def _unavailable() -> web.Response:
    reason = "key store unavailable"
    return _json({"error": reason, "errors": [{"field": "body", "reason": reason}]}, 503)


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
            return _unavailable()
        return _json({"keys": [k.describe() for k in keys]})

    async def create_key(self, request: web.Request) -> web.Response:
        """``POST /v1/keys``: 201 with the new key, shown this once."""
        try:
            spec = NewKey.model_validate_json(await request.read())
        except ValidationError as exc:
            errors = field_errors(exc)
            return _json({"error": f"invalid key: {summary(errors)}", "errors": errors}, 422)
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
            return _unavailable()
        return _json({"key": token, **key.describe()}, 201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        """``DELETE /v1/keys/{id}``."""
        key_id = request.match_info["id"]
        try:
            found = await self._store.revoke(key_id)
        except BrokerUnavailable:
            return _unavailable()
        if not found:
            shown = key_id[:SHOWN_ID_CHARS] + ("…" if len(key_id) > SHOWN_ID_CHARS else "")
            return _json(
                {
                    "error": f"no key with id {shown}",
                    "errors": [{"field": "id", "reason": "no such key"}],
                },
                404,
            )
        return _json({"revoked": key_id})
