"""The configured bots: tokens by bot id, parsed from ``FLOODGATE_BOTS``."""

from __future__ import annotations

import re
from pathlib import Path

from shared.redact import BOT_ID, SECRET

TOKEN_RE = re.compile(rf"({BOT_ID}):{SECRET}")


def parse_bots(spec: str | None) -> dict[int, str]:
    """Tokens from a comma-separated list, or ``@path`` to a file with one token per line.

    Errors name the position of a bad token, never the token itself.
    """
    if not spec:
        return {}
    if spec.startswith("@"):
        lines = Path(spec[1:]).read_text(encoding="utf-8").splitlines()
        tokens = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    else:
        tokens = [part.strip() for part in spec.split(",") if part.strip()]
    bots: dict[int, str] = {}
    for position, token in enumerate(tokens, start=1):
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            raise ValueError(
                f"FLOODGATE_BOTS: token #{position} is not of the form <bot id>:<secret>"
            )
        bots[int(match.group(1))] = token
    return bots
