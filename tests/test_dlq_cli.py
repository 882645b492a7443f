"""``floodgate dlq list|replay|drop`` against a running stats service."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import orjson
import pytest

from floodgate.cli import main
from sandbox import SandboxConfig
from tests.helpers import ADMIN_KEY, free_port
from tests.services.sender.harness import BOT, Pipeline, backend, running

__all__ = ["backend"]  # the parametrized backend fixture, re-exported for pytest

pytestmark = pytest.mark.timeout(60)

BLOCKED = 77


@pytest.fixture
async def dead(backend, namespace) -> AsyncIterator[tuple[Pipeline, str]]:
    """A pipeline holding one dead letter (a message to a chat that blocked the bot)."""
    config = SandboxConfig(blocked_chats=frozenset({BLOCKED}))
    async with running(backend, namespace, config) as p:
        ident = await p.submit({"bot_id": BOT, "chat_id": BLOCKED, "text": "hi"})
        await p.wait_status(ident, "dead")
        yield p, ident


async def _dlq(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``floodgate dlq ...`` in a worker thread; exit code, stdout and stderr."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["dlq", *args, "--api-key", ADMIN_KEY])
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_prints_the_dead_letters(dead, capsys) -> None:
    p, ident = dead
    code, out, _ = await _dlq(capsys, "list", "--url", p.url)
    assert code == 0
    doc = orjson.loads(out)
    assert doc["count"] == 1
    [item] = doc["items"]
    assert item["id"] == ident
    assert "blocked" in item["error"]


async def test_replay_puts_the_message_back(dead, capsys) -> None:
    p, ident = dead
    p.sandbox.configure(blocked_chats=frozenset())
    code, out, _ = await _dlq(capsys, "replay", ident, "--url", p.url)
    assert (code, orjson.loads(out)) == (0, {"replayed": 1})
    await p.wait_status(ident, "sent")
    assert len(p.delivered(BLOCKED)) == 1
    code, out, _ = await _dlq(capsys, "replay", "--url", p.url)
    assert (code, orjson.loads(out)) == (0, {"replayed": 0})


async def test_drop_removes_one_and_fails_on_unknown(dead, capsys) -> None:
    p, ident = dead
    code, out, _ = await _dlq(capsys, "drop", ident, "--url", p.url)
    assert (code, orjson.loads(out)) == (0, {"dropped": ident})
    code, out, _ = await _dlq(capsys, "drop", "no-such-id", "--url", p.url)
    assert code == 1
    assert "no-such-id" in orjson.loads(out)["error"]
    assert (await p.stats())["total_failed"] == 0


async def test_drop_needs_an_id_and_a_reachable_service(capsys) -> None:
    code, _, err = await _dlq(capsys, "drop", "--url", "http://127.0.0.1:1")
    assert code == 2
    assert "at least one message id" in err
    code, _, err = await _dlq(capsys, "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach" in err


async def test_module_entry_point_lists(dead) -> None:
    p, ident = dead
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "floodgate.cli",
        "dlq",
        "list",
        "--url",
        p.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "FLOODGATE_API_KEY": ADMIN_KEY},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert [i["id"] for i in orjson.loads(out)["items"]] == [ident]
