"""The ``floodgate`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _parser() -> argparse.ArgumentParser:
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

    sandbox = sub.add_parser("sandbox", help="run the local Telegram Bot API stand-in")
    from sandbox.cli import add_arguments  # noqa: PLC0415 - keep `floodgate run` light

    add_arguments(sandbox)

    demo = sub.add_parser(
        "demo", help="sandbox + pipeline + a seeded workload; prints a delivery report"
    )
    from floodgate.demo import add_arguments as demo_arguments  # noqa: PLC0415

    demo_arguments(demo)

    dlq = sub.add_parser(
        "dlq", help="list, replay or drop dead letters (talks to the stats service)"
    )
    from floodgate.dlq_cli import add_arguments as dlq_arguments  # noqa: PLC0415

    dlq_arguments(dlq)

    webhook = sub.add_parser(
        "webhook", help="register, remove or show the bots' webhooks (setWebhook) with Telegram"
    )
    from floodgate.webhook_cli import add_arguments as webhook_arguments  # noqa: PLC0415

    webhook_arguments(webhook)

    keys = sub.add_parser(
        "keys", help="create, list or revoke API keys (in the key store, or --url over the API)"
    )
    from floodgate.keys_cli import add_arguments as keys_arguments  # noqa: PLC0415

    keys_arguments(keys)

    loadtest = sub.add_parser(
        "loadtest",
        help="a seeded day of traffic against the sandbox at Telegram's limits; "
        "writes summary.json and report.html",
    )
    from floodgate.loadtest.command import add_arguments as loadtest_arguments  # noqa: PLC0415

    loadtest_arguments(loadtest)

    partitions = sub.add_parser(
        "partitions",
        help="show the pipeline's stored number of partitions, or change it while drained",
    )
    from floodgate.partitions_cli import add_arguments as partitions_arguments  # noqa: PLC0415

    partitions_arguments(partitions)

    db = sub.add_parser("db", help="the PostgreSQL message store (DATABASE_URL)")
    db.add_argument("action", choices=["migrate"], help="apply the SQL migrations not yet applied")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``floodgate`` console script."""
    args = _parser().parse_args(argv)
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
