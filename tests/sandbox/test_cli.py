"""Command-line options, and a real ``python -m sandbox`` process."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from sandbox.cli import add_arguments, config_from_args

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8081)
    config = config_from_args(args)
    assert config.limits_enabled
    assert (config.bot_rate, config.chat_rate, config.group_rate) == (30, 1, 20)


def test_every_option_reaches_the_config() -> None:
    config = config_from_args(
        parse(
            "--seed",
            "9",
            "--no-limits",
            "--window-scale",
            "0.1",
            "--bot-rate",
            "100",
            "--chat-rate",
            "2",
            "--group-rate",
            "40",
            "--fault-5xx",
            "0.1",
            "--fault-5xx-after-send",
            "0.05",
            "--fault-timeout",
            "0.01",
            "--timeout-seconds",
            "3",
            "--latency-ms",
            "5,20",
            "--blocked-chats",
            "1,2",
            "--missing-chats=-3,-5",
            "--migrated-chats=-4:-1004",
            "--strict-message-refs",
        )
    )
    assert config.seed == 9
    assert not config.limits_enabled
    assert config.window_scale == 0.1
    assert (config.bot_rate, config.chat_rate, config.group_rate) == (100, 2, 40)
    assert config.fault_5xx_rate == 0.1
    assert config.fault_5xx_after_send_rate == 0.05
    assert config.fault_timeout_rate == 0.01
    assert config.timeout_seconds == 3
    assert (config.latency_min_ms, config.latency_max_ms) == (5, 20)
    assert config.blocked_chats == {1, 2}
    assert config.missing_chats == {-3, -5}
    assert config.migrated_chats == {-4: -1004}
    assert config.strict_message_refs


@pytest.mark.parametrize(
    "argv",
    [
        ("--fault-5xx", "2"),
        ("--latency-ms", "9,1"),
        ("--blocked-chats", "a,b"),
        ("--migrated-chats", "-4"),
    ],
)
def test_bad_values_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


@pytest.mark.timeout(20)
def test_module_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--group-rate", "7"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert found, line
        assert "group 7/60s" in line
        with urllib.request.urlopen(f"{found.group(1)}/_sandbox/stats", timeout=5) as answer:
            assert orjson.loads(answer.read())["requests"] == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
