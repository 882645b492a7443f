"""`python -m services.ingest`: the same as `floodgate run ingest`."""

import sys

from floodgate.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", "ingest", *sys.argv[1:]]))
