"""Keys kept in this process (the embedded backend of ``floodgate run all``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from shared.api_keys import ApiKey


class MemoryKeyStore:
    """A dict of keys; gone when the process ends."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}

    async def add(self, key: ApiKey) -> None:
        """Store a new key."""
        self._keys[key.id] = key

    async def find(self, key_id: str, now: float) -> ApiKey | None:
        """The key with this id, if usable at ``now``."""
        key = self._keys.get(key_id)
        return key if key is not None and key.usable(now) else None

    async def list(self) -> Sequence[ApiKey]:
        """Every key, oldest first."""
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked."""
        key = self._keys.get(key_id)
        if key is None:
            return False
        self._keys[key_id] = dataclasses.replace(key, revoked=True)
        return True

    async def touch(self, key_id: str, when: float) -> None:
        """Record the key's last use."""
        key = self._keys.get(key_id)
        if key is not None:
            self._keys[key_id] = dataclasses.replace(key, last_used_at=when)

    async def close(self) -> None:
        """Nothing to release."""
