"""`python -m services.stats`: the same as `floodgate run stats`."""

import sys

from floodgate.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", "stats", *sys.argv[1:]]))
