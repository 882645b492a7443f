"""Keys kept in Redis: one hash per key and a set of every id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from shared.api_keys import ApiKey, Role
from shared.broker import BrokerUnavailable
from shared.keys import Keys
from shared.models import Priority


def to_fields(key: ApiKey) -> dict[str, str]:
    """A key as the fields of its Redis hash (optional fields left out when unset)."""
    fields = {
        "role": key.role.value,
        "secret_hash": key.secret_hash,
        "name": key.name,
        "bots": ",".join(str(b) for b in key.bots),
        "created_at": repr(key.created_at),
        "revoked": "1" if key.revoked else "0",
    }
    if key.rate is not None:
        fields["rate"] = str(key.rate)
    if key.expires_at is not None:
        fields["expires_at"] = repr(key.expires_at)
    if key.max_priority is not None:
        fields["max_priority"] = key.max_priority.value
    if key.last_used_at is not None:
        fields["last_used_at"] = repr(key.last_used_at)
    return fields


def from_fields(key_id: str, fields: dict[str, str]) -> ApiKey:
    """The key stored in a Redis hash."""

    def number(name: str) -> float | None:
        return float(fields[name]) if fields.get(name) else None

    return ApiKey(
        id=key_id,
        role=Role(fields["role"]),
        secret_hash=fields["secret_hash"],
        name=fields.get("name", ""),
        bots=tuple(int(b) for b in fields.get("bots", "").split(",") if b),
        rate=int(fields["rate"]) if fields.get("rate") else None,
        expires_at=number("expires_at"),
        max_priority=Priority(fields["max_priority"]) if fields.get("max_priority") else None,
        created_at=number("created_at") or 0.0,
        last_used_at=number("last_used_at"),
        revoked=fields.get("revoked") == "1",
    )


class RedisKeyStore:
    """Keys in Redis under the namespace (``{ns}:{auth}:key:<id>``, ``{ns}:{auth}:keys``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    async def add(self, key: ApiKey) -> None:
        """Store a new key."""
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.api_key(key.id), mapping=dict[Any, Any](to_fields(key)))
                pipe.sadd(self._keys.api_key_ids, key.id)
                await pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def find(self, key_id: str, now: float) -> ApiKey | None:
        """The key with this id, if usable at ``now``."""
        try:
            fields = await self._r.hgetall(self._keys.api_key(key_id))
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        key = from_fields(key_id, _text(fields)) if fields else None
        return key if key is not None and key.usable(now) else None

    async def list(self) -> Sequence[ApiKey]:
        """Every key, oldest first."""
        try:
            ids = sorted(_str(i) for i in await self._r.smembers(self._keys.api_key_ids))
            async with self._r.pipeline(transaction=False) as pipe:
                for key_id in ids:
                    pipe.hgetall(self._keys.api_key(key_id))
                found = await pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        keys = [from_fields(i, _text(f)) for i, f in zip(ids, found, strict=True) if f]
        return sorted(keys, key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked (kept, so the list shows it)."""
        name = self._keys.api_key(key_id)
        try:
            if not await self._r.exists(name):
                return False
            await self._r.hset(name, "revoked", "1")
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return True

    async def touch(self, key_id: str, when: float) -> None:
        """Record the key's last use (keys are never deleted, only revoked)."""
        name = self._keys.api_key(key_id)
        try:
            if await self._r.exists(name):
                await self._r.hset(name, "last_used_at", repr(when))
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """The client belongs to the broker, which closes it."""


def _text(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in fields.items()}


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
