"""Bot tokens as FLOODGATE_BOTS gives them: only ASCII digits make a bot id, and a token that
does not parse is named by its position, never echoed."""

from __future__ import annotations

import pytest

from shared.api_keys import Role, new_key
from shared.bots import parse_bots
from shared.redact import REDACTED, redact

SECRET = "A" * 35


def test_tokens_parse_to_their_bot_ids() -> None:
    assert parse_bots(f"123:{SECRET}, 45:{SECRET}") == {123: f"123:{SECRET}", 45: f"45:{SECRET}"}


@pytest.mark.parametrize(
    "token",
    [
        f"\u0663\u0663:{SECRET}",  # Arabic-Indic digits: int() would take them, Telegram not
        f"\u00b2:{SECRET}",  # a superscript two: a digit to \d, not to int()
        f"12:{SECRET[:19]}",
        f"12 :{SECRET}",
    ],
)
def test_a_token_that_is_not_one_is_refused_by_position(token: str) -> None:
    with pytest.raises(ValueError, match="token #2 is not of the form") as raised:
        parse_bots(f"1:{SECRET},{token}")
    assert SECRET not in str(raised.value)


def test_redaction_hides_even_what_is_not_accepted() -> None:
    assert SECRET not in redact(f"/bot\u0663\u0663:{SECRET}/sendMessage")
    assert redact(f"/bot12%3A{SECRET}/getMe") == f"/bot12:{REDACTED}/getMe"


def test_redaction_hides_a_token_with_any_character_percent_encoded() -> None:
    encoded = f"/bot12:%41{SECRET[1:]}/getMe"
    assert redact(encoded) == f"/bot12:{REDACTED}/getMe"
    assert SECRET[1:] not in redact(encoded.replace(":", "%3a"))


def test_redaction_hides_the_secret_of_an_api_key() -> None:
    key, _ = new_key(Role.PRODUCER)
    key_id = key.split("_")[1]
    shown = redact(f"Authorization: Bearer {key}\x01")
    assert shown == f"Authorization: Bearer fg_{key_id}_{REDACTED}\x01"
