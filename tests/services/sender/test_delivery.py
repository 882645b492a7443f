"""Delivery through the whole pipeline to the sandbox: sends, splits, methods, failures, limits."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from sandbox import SandboxConfig, start_sandbox
from tests.helpers import TOKENS, eventually
from tests.services.sender.harness import (
    BOT,
    ZERO_STATS,
    Pipeline,
    backend,
    metric,
    pipeline_context,
    running,
    serving_pipeline,
)

__all__ = ["backend"]  # the parametrized backend fixture, re-exported for pytest

pytestmark = pytest.mark.timeout(60)

GROUP = -5001
# Retries a test can watch; floodgate's private-chat window would space them 1 s apart.
RETRY_FAST = {"TELEGRAM_MAX_RETRIES": 50, "TELEGRAM_BASE_DELAY": 0.05, "FLOODGATE_CHAT_RATE": 1000}
MIGRATED_FROM, MIGRATED_TO = -100, -1001000000000


def _requests_to(p: Pipeline, chat_id: int) -> list[dict]:
    return [r for r in p.sandbox.state.requests.last(10_000) if r["chat_id"] == chat_id]


def _assert_no_token(text: str) -> None:
    for token in TOKENS.values():
        assert token.split(":")[1] not in text


async def test_plain_send_is_delivered_and_queues_drain(backend, namespace) -> None:
    async with running(backend, namespace) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 42, "text": "hello"})
        doc = await p.wait_status(ident, "sent")
        [record] = p.delivered(42)
        assert (record.bot_id, record.method, record.text) == (BOT, "sendMessage", "hello")
        assert type(doc["telegram_message_id"]) is int
        assert doc["telegram_message_id"] == record.message_id
        assert doc["attempts"] == 0
        assert doc["priority"] == "normal"
        stats = await p.wait_idle()
        assert set(stats) == {"stats", "total_queued", "total_failed"}
        assert set(ZERO_STATS) <= set(stats["stats"])
        assert all(type(v) is int and v == 0 for v in stats["stats"].values()), stats
        assert (stats["total_queued"], stats["total_failed"]) == (0, 0)
        assert p.sandbox.state.stats.too_many_requests == 0


async def test_long_text_arrives_as_three_messages_in_order(backend, namespace) -> None:
    words = [f"word{i}" + ("\n" if i % 40 == 39 else " ") for i in range(2000)]
    text = "".join(words)[:9_999] + "!"
    assert len(text) == 10_000
    async with running(backend, namespace) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": GROUP, "text": text})
        doc = await p.wait_status(ident, "sent")
        records = p.delivered(GROUP)
        assert len(records) == 3
        texts = [r.text or "" for r in records]
        assert all(len(t) <= 4096 for t in texts)
        assert " ".join(texts).split() == text.split()
        assert texts[0].startswith("word0 ")
        assert texts[-1].endswith("!")
        assert doc["telegram_message_ids"] == [r.message_id for r in records]
        assert doc["telegram_message_id"] == records[0].message_id
        await p.wait_idle()


async def test_generic_methods_pass_through(backend, namespace) -> None:
    photo = "https://example.com/cat.jpg"
    async with running(backend, namespace) as p:
        ident = await p.submit(
            {
                "bot_id": BOT,
                "method": "sendPhoto",
                "params": {"chat_id": 43, "photo": photo, "caption": "a cat"},
            }
        )
        photo_doc = await p.wait_status(ident, "sent")
        [sent_photo] = p.delivered(43)
        assert sent_photo.method == "sendPhoto"
        assert sent_photo.params["photo"] == photo
        assert sent_photo.message_id == photo_doc["telegram_message_id"]

        copy = await p.submit(
            {
                "bot_id": BOT,
                "method": "copyMessage",
                "params": {"chat_id": 44, "from_chat_id": 43, "message_id": sent_photo.message_id},
            }
        )
        copy_doc = await p.wait_status(copy, "sent")
        [copied] = p.delivered(44)
        assert copied.method == "copyMessage"
        assert copy_doc["telegram_message_id"] == copied.message_id

        action = await p.submit(
            {
                "bot_id": BOT,
                "method": "sendChatAction",
                "params": {"chat_id": 45, "action": "typing"},
            }
        )
        await p.wait_status(action, "sent")
        calls = _requests_to(p, 45)
        assert [(c["method"], c["status"]) for c in calls] == [("sendChatAction", 200)]
        await p.wait_idle()


async def test_chat_action_reports_no_message_id(namespace) -> None:
    async with running(None, namespace) as p:
        action = await p.submit(
            {
                "bot_id": BOT,
                "method": "sendChatAction",
                "params": {"chat_id": 45, "action": "typing"},
            }
        )
        doc = await p.wait_status(action, "sent")
        assert doc.get("telegram_message_id") is None, doc


async def test_status_is_sending_while_its_call_is_under_way(backend, namespace) -> None:
    """Telegram has the request and has not answered: the message is ``sending``."""
    slow = SandboxConfig(latency_min_ms=4000, latency_max_ms=4000, limits_enabled=False)
    async with running(backend, namespace, slow, TELEGRAM_TIMEOUT=20) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 47, "text": "slowly"})

        async def arrived() -> bool:
            return len(p.delivered(47)) >= 1

        await eventually(arrived, 10, step=0.02)
        assert (await p.status(ident))["status"] == "sending"
        await p.wait_status(ident, "sent")


async def test_5xx_is_retried_with_backoff_until_delivered(backend, namespace) -> None:
    faulty = SandboxConfig(fault_5xx_rate=1.0, limits_enabled=False)
    async with running(backend, namespace, faulty, **RETRY_FAST) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 46, "text": "through the storm"})

        async def retried_twice() -> bool:
            return p.sandbox.state.stats.server_errors >= 2

        await eventually(retried_twice, 5, step=0.02)
        assert (await p.status(ident))["status"] in {"retrying", "sending"}
        assert p.delivered(46) == []
        p.sandbox.configure(fault_5xx_rate=0.0)
        doc = await p.wait_status(ident, "sent")
        assert doc["attempts"] >= 2
        assert len(p.delivered(46)) == 1
        text = await p.metrics()
        assert metric(text, "floodgate_messages_retried_total") == doc["attempts"]
        assert metric(text, "floodgate_telegram_responses_total", status_class="5xx") == (
            p.sandbox.state.stats.server_errors
        )
        assert metric(text, "floodgate_telegram_responses_total", status_class="2xx") == 1
        assert (await p.wait_idle())["total_failed"] == 0


async def test_retries_used_up_is_dead_with_history(backend, namespace) -> None:
    faulty = SandboxConfig(fault_5xx_rate=1.0, limits_enabled=False)
    async with running(
        backend, namespace, faulty, **{**RETRY_FAST, "TELEGRAM_MAX_RETRIES": 2}
    ) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 47, "text": "doomed"})
        doc = await p.wait_status(ident, "dead")
        assert "retries used up" in doc["error"]
        assert "HTTP 50" in doc["error"]
        assert doc["attempts"] == 3
        assert len(_requests_to(p, 47)) == 3
        assert p.delivered(47) == []
        stats = await p.wait_idle()
        assert stats["stats"]["dlq"] == 1
        assert (stats["total_queued"], stats["total_failed"]) == (0, 1)
        code, listing = await p.call("GET", "/v1/dlq")
        assert code == 200
        [item] = listing["items"]
        assert (item["id"], item["reason"], item["attempts"]) == (ident, "retries_exhausted", 3)
        assert item["error"] == doc["error"]
        assert len(item["history"]) == 3
        assert all(h.startswith("HTTP 50") for h in item["history"])
        assert (item["bot_id"], item["chat_id"], item["method"]) == (BOT, 47, "sendMessage")
        _assert_no_token(str(listing))
        text = await p.metrics()
        assert metric(text, "floodgate_messages_dead_total", reason="retries_exhausted") == 1


async def test_timeouts_are_retried_until_delivered(backend, namespace) -> None:
    slow = SandboxConfig(fault_timeout_rate=1.0, timeout_seconds=10, limits_enabled=False)
    # a call that times out may still have been delivered: the client's timeout is long enough
    # that an answered call (once the faults stop) is never taken for one on a loaded machine
    # (at 0.4 s one was, once in a full run, and the message went twice)
    async with running(backend, namespace, slow, TELEGRAM_TIMEOUT=1.5, TELEGRAM_MAX_RETRIES=5) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 48, "text": "eventually"})
        doc = await p.wait_status(ident, "retrying", timeout=8)
        assert doc["attempts"] >= 1
        assert "timeout" in doc["error"]
        p.sandbox.configure(fault_timeout_rate=0.0)
        doc = await p.wait_status(ident, "sent", timeout=10)
        assert doc["attempts"] >= 1
        assert len(p.delivered(48)) == 1
        text = await p.metrics()
        assert metric(text, "floodgate_telegram_responses_total", status_class="timeout") >= 1
        assert metric(text, "floodgate_messages_retried_total") == doc["attempts"]
        await p.wait_idle()


@pytest.mark.parametrize(
    ("fault", "chat", "description"),
    [
        ("blocked_chats", 77, "Forbidden: bot was blocked by the user"),
        ("missing_chats", 78, "Bad Request: chat not found"),
    ],
)
async def test_permanent_4xx_is_dead_at_once(backend, namespace, fault, chat, description) -> None:
    config = SandboxConfig(**{fault: frozenset({chat})})
    async with running(backend, namespace, config, TELEGRAM_MAX_RETRIES=5) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": chat, "text": "hello?"})
        doc = await p.wait_status(ident, "dead")
        assert description in doc["error"]
        assert doc["attempts"] == 0
        stats = await p.wait_idle()
        assert (stats["total_failed"], stats["stats"]["retry"]) == (1, 0)
        assert len(_requests_to(p, chat)) == 1
        text = await p.metrics()
        assert metric(text, "floodgate_messages_retried_total") == 0
        assert metric(text, "floodgate_messages_dead_total", reason="permanent") == 1
        _, listing = await p.call("GET", "/v1/dlq")
        [item] = listing["items"]
        assert (item["id"], item["reason"], item["history"]) == (ident, "permanent", [])


async def test_revoked_bot_401_is_dead(backend, namespace) -> None:
    config = SandboxConfig(revoked_bot_ids=frozenset({BOT}))
    async with running(backend, namespace, config) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 49, "text": "anyone?"})
        doc = await p.wait_status(ident, "dead")
        assert "Unauthorized" in doc["error"]
        assert doc["attempts"] == 0
        _assert_no_token(doc["error"])
        assert [r["status"] for r in p.sandbox.state.requests.last(100)] == [401]
        assert (await p.wait_idle())["total_failed"] == 1


async def test_migrated_group_is_resent_to_the_new_id(backend, namespace) -> None:
    config = SandboxConfig(migrated_chats={MIGRATED_FROM: MIGRATED_TO})
    async with running(backend, namespace, config) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": MIGRATED_FROM, "text": "moved"})
        doc = await p.wait_status(ident, "sent")
        assert p.delivered(MIGRATED_FROM) == []
        [record] = p.delivered(MIGRATED_TO)
        assert record.text == "moved"
        assert doc["telegram_message_id"] == record.message_id
        assert doc["attempts"] == 0
        assert (await p.wait_idle())["total_failed"] == 0


async def test_429_holds_the_chat_for_retry_after(backend, namespace) -> None:
    strict = SandboxConfig(chat_rate=1, chat_window=1.0)
    async with running(
        backend,
        namespace,
        strict,
        FLOODGATE_BOT_RATE=1000,
        FLOODGATE_CHAT_RATE=1000,
        FLOODGATE_LIMIT_MARGIN=0,
    ) as p:
        ids = [await p.submit({"bot_id": BOT, "chat_id": 50, "text": f"m{i}"}) for i in range(4)]
        docs = [await p.wait_status(ident, "sent", timeout=20) for ident in ids]
        stats = p.sandbox.state.stats
        assert stats.too_many_requests >= 1
        assert stats.sent_during_hold == 0, stats
        assert stats.limit_violations == 0
        assert [r.text for r in p.delivered(50)] == ["m0", "m1", "m2", "m3"]
        assert [d["attempts"] for d in docs] == [0, 0, 0, 0]
        text = await p.metrics()
        assert metric(text, "floodgate_messages_deferred_total", reason="retry_after") >= 1
        assert metric(text, "floodgate_messages_retried_total") == 0
        assert (await p.wait_idle())["total_failed"] == 0


async def test_same_idempotency_key_is_delivered_once(backend, namespace) -> None:
    msg = {"bot_id": BOT, "chat_id": 51, "text": "charge", "idempotency_key": "order-7"}
    async with running(backend, namespace) as p:
        first = await p.submit(msg)
        status, again = await p.call("POST", "/v1/messages", json=msg)
        assert (status, again["id"], again.get("duplicate")) == (202, first, True)
        await p.wait_status(first, "sent")
        status, late = await p.call("POST", "/v1/messages", json=msg)
        assert (status, late["id"]) == (202, first)
        await p.wait_idle()
        assert [r.text for r in p.delivered(51)] == ["charge"]


async def test_send_at_waits_until_its_time(backend, namespace) -> None:
    async with running(backend, namespace) as p:
        due = time.time() + 3.0
        send_at = datetime.fromtimestamp(due, UTC).isoformat().replace("+00:00", "Z")
        ident = await p.submit({"bot_id": BOT, "chat_id": 52, "text": "later", "send_at": send_at})
        await p.wait_status(ident, "scheduled", timeout=2.5)
        stats = await p.stats()
        assert (stats["stats"]["scheduled"], stats["total_queued"]) == (1, 1)

        async def before_due_nothing_sent() -> bool:
            assert p.delivered(52) == []
            assert (await p.status(ident))["status"] == "scheduled"
            return time.time() > due - 0.3

        await eventually(before_due_nothing_sent, 5, step=0.1)
        await p.wait_status(ident, "sent", timeout=10)
        [record] = p.delivered(52)
        assert record.ts >= due - 0.06
        await p.wait_idle()


async def test_message_sent_after_retries_reports_no_error(backend, namespace) -> None:
    faulty = SandboxConfig(fault_5xx_rate=1.0, limits_enabled=False)
    async with running(backend, namespace, faulty, **RETRY_FAST) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 53, "text": "fine in the end"})
        await p.wait_status(ident, "retrying")
        p.sandbox.configure(fault_5xx_rate=0.0)
        doc = await p.wait_status(ident, "sent")
        assert "error" not in doc, "the contract shows error only when dead"


async def test_retried_message_keeps_its_place_in_its_chat(backend, namespace) -> None:
    faulty = SandboxConfig(fault_5xx_rate=1.0, limits_enabled=False)
    async with running(backend, namespace, faulty, **RETRY_FAST) as p:
        first = await p.submit({"bot_id": BOT, "chat_id": 54, "text": "first"})
        second = await p.submit({"bot_id": BOT, "chat_id": 54, "text": "second"})

        async def retried() -> bool:
            return p.sandbox.state.stats.server_errors >= 3

        await eventually(retried, 5, step=0.02)
        p.sandbox.configure(fault_5xx_rate=0.0)
        await p.wait_status(first, "sent")
        await p.wait_status(second, "sent")
        assert [r.text for r in p.delivered(54)] == ["first", "second"]


async def test_messages_handed_back_at_shutdown_keep_their_chat_going(backend, namespace) -> None:
    """Stop while a chat's messages wait in the sender behind a slow call; the next process
    delivers them, and the chat's later messages, in order."""
    sb = await start_sandbox(
        SandboxConfig(limits_enabled=False, latency_min_ms=1500, latency_max_ms=1500)
    )
    try:
        # a call of 1.5 s, well within the timeout: the stop waits for it, nothing is sent twice
        ctx = pipeline_context(
            backend, namespace, sb.url, FLOODGATE_CHAT_RATE=1000, TELEGRAM_TIMEOUT=5
        )
        async with serving_pipeline(ctx, sb) as p:
            batch = [{"bot_id": BOT, "chat_id": 55, "text": f"m{i}"} for i in (1, 2, 3)]
            _, doc = await p.call("POST", "/v1/messages/batch", json={"messages": batch})
            ids = [r["id"] for r in doc["results"]]

            async def all_in_sender() -> bool:
                return metric(await p.metrics(), "floodgate_sender_inflight") == 3

            # m1's call takes 1.5 s; m2 and m3 wait behind it and are handed back
            await eventually(all_in_sender, 10, step=0.01)
        sb.configure(latency_min_ms=0, latency_max_ms=0)
        if backend is None:
            ctx = dataclasses.replace(ctx, registry=CollectorRegistry())
        else:
            ctx = pipeline_context(backend, namespace, sb.url, FLOODGATE_CHAT_RATE=1000)
        async with serving_pipeline(ctx, sb) as p:
            ids.append(await p.submit({"bot_id": BOT, "chat_id": 55, "text": "m4"}))
            for ident in ids:
                await p.wait_status(ident, "sent", timeout=5)
            assert [r.text for r in p.delivered(55)] == ["m1", "m2", "m3", "m4"]
            await p.wait_idle()
    finally:
        await sb.close()


async def test_fresh_start_has_no_loop_errors(backend, namespace) -> None:
    async with running(backend, namespace) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": 57, "text": "first ever"})
        await p.wait_status(ident, "sent")
        await p.wait_idle()
        text = await p.metrics()
        errors = {
            name: metric(text, f"floodgate_{name}_loop_errors_total")
            for name in ("scheduler", "sender", "stats")
        }
        assert errors == dict.fromkeys(errors, 0.0)
