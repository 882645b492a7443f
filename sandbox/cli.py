"""Command line of the sandbox: ``floodgate sandbox`` and ``python -m sandbox``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from sandbox.config import SandboxConfig
from sandbox.server import start_sandbox

log = logging.getLogger("sandbox")

DEFAULT_PORT = 8081  # as documented; on one host with a scheduler, give one of them --port
# argparse destination -> config field, for the options that map one to one.
_DIRECT = {
    "seed": "seed",
    "window_scale": "window_scale",
    "bot_rate": "bot_rate",
    "chat_rate": "chat_rate",
    "group_rate": "group_rate",
    "fault_5xx": "fault_5xx_rate",
    "fault_5xx_after_send": "fault_5xx_after_send_rate",
    "fault_timeout": "fault_timeout_rate",
    "timeout_seconds": "timeout_seconds",
    "blocked_chats": "blocked_chats",
    "missing_chats": "missing_chats",
    "migrated_chats": "migrated_chats",
}


def _id_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated chat ids, got {text!r}"
        ) from None


def _latency(text: str) -> tuple[float, float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX milliseconds, got {text!r}")
    return values[0], values[1]


def _migrations(text: str) -> dict[int, int]:
    try:
        pairs = (part.split(":") for part in text.split(",") if part.strip())
        return {int(old): int(new) for old, new in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected OLD:NEW[,OLD:NEW...], got {text!r}") from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options to ``parser``, in groups."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port, 0 for any free one (default: %(default)s)",
    )
    _add_limit_options(parser.add_argument_group("limits").add_argument)
    _add_fault_options(parser.add_argument_group("faults").add_argument)
    _add_chat_options(parser.add_argument_group("chats").add_argument)


def _add_limit_options(add: Callable[..., Any]) -> None:
    add("--no-limits", action="store_true", help="answer every send; never 429")
    add(
        "--window-scale",
        type=float,
        metavar="X",
        help="multiply every limit window by X, e.g. 0.1 makes a group's 60 s window 6 s",
    )
    add("--bot-rate", type=int, metavar="N", help="sends per bot per 1 s window (default: 30)")
    add(
        "--chat-rate",
        type=int,
        metavar="N",
        help="sends per private chat per 1 s window (default: 1)",
    )
    add(
        "--group-rate",
        type=int,
        metavar="N",
        help="sends per group, supergroup or channel per 60 s window (default: 20)",
    )


def _add_fault_options(add: Callable[..., Any]) -> None:
    add("--seed", type=int, help="seed of the fault and latency draws (default: 0)")
    add(
        "--fault-5xx",
        type=_fraction,
        metavar="P",
        help="fraction of sends answered 500/502/503/504 with an HTML page, not delivered",
    )
    add(
        "--fault-5xx-after-send",
        type=_fraction,
        metavar="P",
        help="fraction of sends delivered but answered 502 (the duplicate trap)",
    )
    add(
        "--fault-timeout",
        type=_fraction,
        metavar="P",
        help="fraction of sends left unanswered for --timeout-seconds, not delivered",
    )
    add("--timeout-seconds", type=float, metavar="S", help="how long a timeout hangs (default: 30)")
    add(
        "--latency-ms",
        type=_latency,
        metavar="MIN,MAX",
        help="random latency added to every API answer, in milliseconds (MIN,MAX or one value)",
    )


def _add_chat_options(add: Callable[..., Any]) -> None:
    add(
        "--blocked-chats",
        type=_id_list,
        metavar="IDS",
        help="comma-separated chat ids answered 403 'bot was blocked by the user'",
    )
    add(
        "--missing-chats",
        type=_id_list,
        metavar="IDS",
        help="comma-separated chat ids answered 400 'chat not found' "
        "(negative ids need the = form: --missing-chats=-100,-200)",
    )
    add(
        "--migrated-chats",
        type=_migrations,
        metavar="OLD:NEW,...",
        help="groups answered 400 'upgraded to a supergroup' with migrate_to_chat_id NEW "
        "(use the = form: --migrated-chats=-100:-1001234)",
    )
    add(
        "--strict-message-refs",
        action="store_true",
        help="refuse replies, copies, forwards and edits of messages the sandbox does not know",
    )


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Build the configuration the options ask for (raises pydantic.ValidationError)."""
    changes: dict[str, Any] = {
        field: getattr(args, dest)
        for dest, field in _DIRECT.items()
        if getattr(args, dest, None) is not None
    }
    if args.no_limits:
        changes["limits_enabled"] = False
    if args.strict_message_refs:
        changes["strict_message_refs"] = True
    if args.latency_ms is not None:
        changes["latency_min_ms"], changes["latency_max_ms"] = args.latency_ms
    return SandboxConfig.model_validate(changes)


async def serve(config: SandboxConfig, host: str, port: int) -> int:
    """Serve until SIGINT or SIGTERM, then close; return the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        sandbox = await start_sandbox(config, host, port)
    except OSError as exc:
        log.error("sandbox cannot listen on %s:%s: %s", host, port, exc)
        return 1
    log.info("sandbox serving the Bot API at %s (%s)", sandbox.url, config.limits_summary())
    try:
        await stop.wait()
    finally:
        await sandbox.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def _runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415  (optional speed-up, absent on some platforms)
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run(args: argparse.Namespace) -> int:
    """Run the sandbox the parsed options describe; blocks until a signal, returns 0."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValidationError as exc:
        log.error("invalid sandbox options: %s", exc)
        return 2
    with _runner() as runner:
        return runner.run(serve(config, args.host, args.port))
