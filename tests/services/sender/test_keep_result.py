"""The status record keeps Telegram's answer for the messages that ask for it (the drop-in Bot
API endpoint answers with it), and only for those."""

from __future__ import annotations

import orjson
import pytest

from services.sender.decision import Decision, Verdict, apply
from shared.broker import Commit, Entry
from shared.keys import Keys
from shared.models import Envelope

KEYS = Keys("t")
MESSAGE = {"message_id": 7, "chat": {"id": 5, "type": "private"}, "text": "a"}


def _record(verdict: Verdict, keep: bool, **decided: object) -> dict[str, str]:
    env = Envelope(
        id="m1",
        bot_id=1,
        method="sendMessage",
        params={"chat_id": 5, "text": "a"},
        accepted_at=0,
        keep_result=keep,
        sent_ids=[7],
    )
    records: dict[str, dict[str, str]] = {}
    decision = Decision(Entry("s", "1-0", env.dumps()), env, verdict, **decided)  # type: ignore[arg-type]
    apply(KEYS, decision, Commit(), records)
    return records[KEYS.record("m1")]


@pytest.mark.parametrize("keep", [True, False])
def test_a_sent_message_keeps_telegrams_result_when_asked(keep: bool) -> None:
    record = _record(Verdict.SENT, keep, result=MESSAGE if keep else None)
    assert record["status"] == "sent"
    assert ("result" in record) == keep
    if keep:
        assert orjson.loads(record["result"]) == MESSAGE


@pytest.mark.parametrize("keep", [True, False])
def test_a_dead_message_keeps_telegrams_error_code_when_asked(keep: bool) -> None:
    record = _record(Verdict.DEAD, keep, error="Bad Request: chat not found", error_code=400)
    assert record["status"] == "dead"
    assert record["error"] == "Bad Request: chat not found"
    assert record.get("error_code") == ("400" if keep else None)


def test_the_flag_travels_with_the_envelope() -> None:
    env = Envelope(id="m", bot_id=1, method="sendMessage", params={}, accepted_at=0)
    assert b"keep_result" not in env.dumps()
    env.keep_result = True
    assert Envelope.loads(env.dumps()).keep_result
