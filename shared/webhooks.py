"""Webhook secrets: one per bot, configured or derived from the bot's token."""

from __future__ import annotations

import hashlib
import hmac

SECRET_LABEL = b"floodgate webhook secret"


def derived_secret(token: str) -> str:
    """A secret only the token's holder can compute: 48 hex characters, valid for Telegram's
    ``secret_token`` (1-256 of A-Z, a-z, 0-9, _ and -)."""
    return hmac.new(token.encode(), SECRET_LABEL, hashlib.sha256).hexdigest()[:48]


def parse_pairs(spec: str, what: str) -> dict[int, str]:
    """``"123=value,456=value"`` as {123: "value", ...}; errors name the variable, not values."""
    pairs: dict[int, str] = {}
    for position, item in enumerate(filter(None, (p.strip() for p in spec.split(","))), 1):
        bot, sep, value = item.partition("=")
        if not sep or not bot.strip().isdigit() or not value:
            raise ValueError(f"{what}: item #{position} is not of the form BOT_ID=VALUE")
        pairs[int(bot)] = value.strip()
    return pairs


def secrets_for(bots: dict[int, str], configured: dict[int, str]) -> dict[int, str]:
    """Every configured bot's webhook secret: the configured one, else the derived one."""
    return {bot: configured.get(bot) or derived_secret(token) for bot, token in bots.items()}


def matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the secret header."""
    if given is None:
        return False
    # a header may carry any bytes (read as surrogate escapes): never an error, just no match
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))
