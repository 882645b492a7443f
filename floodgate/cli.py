"""The ``floodgate`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from pydantic import ValidationError

DESCRIPTION = """\
floodgate: send Telegram messages from fleets of bots as fast as Telegram allows, never faster.

Configuration comes from the environment (REDIS_URL, FLOODGATE_BOTS, TELEGRAM_API_BASE, ...);
see the README for the full table.
"""

RUN_HELP = """\
Run one service, or all four in one process. Each service scales horizontally: start as many
processes of it as you like against the same REDIS_URL. Without REDIS_URL only 'all' runs, on an
embedded in-memory backend.
"""


# Commands whose flags a module of their own defines (its add_arguments), with their one-line
# help. Only the module of the command given is imported: `floodgate run` then loads neither the
# sandbox nor the load test's plotting (0.6 s of CPU and 45 MiB in every service process).
COMMANDS = {
    "sandbox": ("run the local Telegram Bot API stand-in", "sandbox.cli"),
    "demo": (
        "sandbox + pipeline + a seeded workload; prints a delivery report",
        "floodgate.demo",
    ),
    "dlq": (
        "list, replay or drop dead letters (talks to the stats service)",
        "floodgate.dlq_cli",
    ),
    "webhook": (
        "register, remove or show the bots' webhooks (setWebhook) with Telegram",
        "floodgate.webhook_cli",
    ),
    "keys": (
        "create, list or revoke API keys (in the key store, or --url over the API)",
        "floodgate.keys_cli",
    ),
    "loadtest": (
        "a seeded day of traffic against the sandbox at Telegram's limits; "
        "writes summary.json and report.html",
        "floodgate.loadtest.command",
    ),
    "partitions": (
        "show the pipeline's stored number of partitions, or change it while drained",
        "floodgate.partitions_cli",
    ),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line parser, with the flags of ``command`` (the other commands are listed
    with their help only)."""
    parser = argparse.ArgumentParser(
        prog="floodgate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run a service (ingest, scheduler, sender, stats) or all", description=RUN_HELP
    )
    run.add_argument("service", choices=["ingest", "scheduler", "sender", "stats", "all"])
    run.add_argument(
        "--port",
        type=int,
        default=None,
        help="HTTP port (default: env PORT, else ingest 8080, scheduler 8081, "
        "sender 8082, stats 8083, all 8080)",
    )
    run.add_argument(
        "--host", default=None, help="address to listen on (default: env HOST, else 0.0.0.0)"
    )

    for name, (text, module) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=text)
        if name == command:
            import_module(module).add_arguments(command_parser)

    db = sub.add_parser("db", help="the PostgreSQL message store (DATABASE_URL)")
    db.add_argument("action", choices=["migrate"], help="apply the SQL migrations not yet applied")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``floodgate`` console script."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = _parser(command).parse_args(words)
    try:
        return _dispatch(args)
    except ValidationError as exc:
        if not exc.title.endswith(("Settings", "Config")):
            raise
        # The settings' names and what is wrong with each; never the values, which may be
        # tokens, keys or URLs with passwords.
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or exc.title
            print(f"floodgate: {name}: {error['msg']}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "run":
            from floodgate.launch import run  # noqa: PLC0415

            return run(args.service, args.host, args.port)
        case "sandbox":
            from sandbox.cli import run as run_sandbox  # noqa: PLC0415

            return run_sandbox(args)
        case "demo":
            from floodgate.demo import main as run_demo  # noqa: PLC0415

            return run_demo(args)
        case "dlq":
            from floodgate.dlq_cli import main as run_dlq  # noqa: PLC0415

            return run_dlq(args)
        case "db":
            from floodgate.db_cli import main as run_db  # noqa: PLC0415

            return run_db(args)
        case "partitions":
            from floodgate.partitions_cli import main as run_partitions  # noqa: PLC0415

            return run_partitions(args)
        case "keys":
            from floodgate.keys_cli import main as run_keys  # noqa: PLC0415

            return run_keys(args)
        case "loadtest":
            from floodgate.loadtest.command import main as run_loadtest  # noqa: PLC0415

            return run_loadtest(args)
        case "webhook":
            from floodgate.webhook_cli import main as run_webhook  # noqa: PLC0415

            return run_webhook(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
