"""Per-key quotas in Redis (``shared/lua/key_rate.lua``), shared by every ingest replica."""

from __future__ import annotations

import secrets

import redis.asyncio as redis
from redis.exceptions import RedisError

from shared.broker import BrokerUnavailable
from shared.key_rate import WINDOW_MS, Grant
from shared.keys import Keys
from shared.scripts import lua


class RedisKeyRate:
    """One sliding log per key, decided in one Lua call with Redis's clock."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._script = client.register_script(lua("key_rate"))

    async def take(self, key_id: str, limit: int, wanted: int) -> Grant:
        """Take up to ``wanted`` places in the key's log."""
        ticket = secrets.token_hex(8)
        try:
            taken, wait = await self._script(
                keys=[self._keys.key_rate(key_id)], args=[limit, WINDOW_MS, wanted, ticket]
            )
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return Grant(int(taken), int(wait), ticket)

    async def give_back(self, key_id: str, grant: Grant) -> None:
        """Remove the grant's places from the log."""
        if grant.taken:
            members = [f"{grant.ticket}:{i}" for i in range(1, grant.taken + 1)]
            try:
                await self._r.zrem(self._keys.key_rate(key_id), *members)
            except RedisError as exc:
                raise BrokerUnavailable(str(exc)) from exc
