"""The one redaction of bot tokens and API keys, for every text that leaves the process or is
stored.

A token is what ``shared.bots`` accepts: a bot id of 1 to 20 digits, ``:``, and at least 20 of
``A-Za-z0-9_-``. It is also found with the colon or any other character URL-encoded (``%3A``,
``%41``), as it appears in a request path that a client wrote so, or an upstream error page
echoes. An API key (``fg_<id>_<secret>``, ``shared.api_keys``) keeps its id and loses its secret.
"""

from __future__ import annotations

import re

BOT_ID = r"[0-9]{1,20}"  # ASCII only: \d would take any Unicode digit
SECRET = r"[A-Za-z0-9_-]{20,}"  # noqa: S105 - the shape of a secret, not one
TOKEN = rf"{BOT_ID}:{SECRET}"

# Wider than what is accepted (any Unicode digit, percent escapes in the secret): redaction
# errs on the side of hiding.
_ANYWHERE = re.compile(r"(\d{1,20})(?::|%3[Aa])[A-Za-z0-9_%-]{20,}")
_API_KEY = re.compile(r"\b(fg_[0-9a-f]{1,64})_[A-Za-z0-9_%-]{16,}")
REDACTED = "<redacted>"


def redact(text: str) -> str:
    """``text`` with the secret half of every bot token and API key in it replaced; the bot
    id and the key id stay."""
    return _API_KEY.sub(rf"\1_{REDACTED}", _ANYWHERE.sub(rf"\1:{REDACTED}", text))


def redact_url(url: str) -> str:
    """``url`` with the password of its user part (``scheme://user:password@host``) replaced,
    for error texts about a connection URL; anything else is left as written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return redact(url)
    authority, slash, path = rest.partition("/")
    user, at, hosts = authority.rpartition("@")
    if at and ":" in user:
        user = f"{user.partition(':')[0]}:{REDACTED}"
    elif at and user:
        user = REDACTED  # a lone user part may be a password (redis://secret@host)
    return redact(f"{scheme}://{user}{at}{hosts}{slash}{path}")
