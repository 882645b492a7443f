"""``python -m sandbox``: the local Telegram Bot API stand-in."""

from __future__ import annotations

import argparse
import sys

from sandbox.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the sandbox."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="A local stand-in for the Telegram Bot API, with Telegram's limits and "
        "injectable faults. Point TELEGRAM_API_BASE at the URL it prints.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
