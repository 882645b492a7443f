"""API keys: what a key may do, how it looks on the wire, and the store that keeps them.

A key is ``fg_<id>_<secret>``: the id finds the record, the secret proves the holder. Only
``sha256(secret)`` is stored. The secret is 32 random bytes, so a fast hash is enough: slow,
salted hashes protect passwords that people choose and that can be guessed; a 256-bit random
secret cannot be guessed, and its plain hash costs the key check about a microsecond.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.models import Priority

KEY_PREFIX = "fg"
ID_BYTES = 6
SECRET_BYTES = 32
# What new_key makes: the id in hex, the secret in URL-safe base64 without padding.
KEY_ID = re.compile(rf"[0-9a-f]{{{ID_BYTES * 2}}}")
KEY_SECRET = re.compile(rf"[A-Za-z0-9_-]{{{(SECRET_BYTES * 4 + 2) // 3}}}")
MIN_ADMIN_KEY_CHARS = 32
ADMIN_KEY_ID = "admin"


class Role(enum.StrEnum):
    """What a key may do: producers send, viewers read, admins do everything."""

    PRODUCER = "producer"
    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: its public description and the hash of its secret."""

    id: str
    role: Role
    secret_hash: str
    name: str = ""
    bots: tuple[int, ...] = ()
    rate: int | None = None
    expires_at: float | None = None
    max_priority: Priority | None = None
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    revoked: bool = False

    def expired(self, now: float) -> bool:
        """Past its expiry."""
        return self.expires_at is not None and now >= self.expires_at

    def usable(self, now: float) -> bool:
        """Neither revoked nor expired."""
        return not self.revoked and not self.expired(now)

    def describe(self) -> dict[str, object]:
        """What ``floodgate keys list`` shows: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "bots": list(self.bots),
            "rate": self.rate,
            "max_priority": self.max_priority.value if self.max_priority else None,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked,
        }


class KeyStore(Protocol):
    """Where keys live: Redis, PostgreSQL (``api_sessions``) or this process's memory."""

    async def add(self, key: ApiKey) -> None:
        """Store a new key."""

    async def find(self, key_id: str, now: float) -> ApiKey | None:
        """The key with this id if it is usable at ``now`` (not revoked, not expired)."""

    async def list(self) -> Sequence[ApiKey]:
        """Every key, oldest first."""

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; False if there is no such key."""

    async def touch(self, key_id: str, when: float) -> None:
        """Record the key's last use."""

    async def close(self) -> None:
        """Release connections."""


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(
    role: Role,
    *,
    name: str = "",
    bots: Sequence[int] = (),
    rate: int | None = None,
    expires_at: float | None = None,
    max_priority: Priority | None = None,
) -> tuple[str, ApiKey]:
    """A fresh key: the string handed to its holder (shown once) and the record to store."""
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = ApiKey(
        id=key_id,
        role=role,
        secret_hash=hash_secret(secret),
        name=name,
        bots=tuple(sorted(set(bots))),
        rate=rate,
        expires_at=expires_at,
        max_priority=max_priority,
    )
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def split_key(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None: a string that cannot be a key costs no
    lookup in the store (and no cache place), whatever a client sends."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not KEY_ID.fullmatch(key_id) or not KEY_SECRET.fullmatch(secret):
        return None
    return key_id, secret


def secret_matches(key: ApiKey, secret: str) -> bool:
    """Constant-time comparison of the secret's hash with the stored one."""
    return hmac.compare_digest(hash_secret(secret), key.secret_hash)
