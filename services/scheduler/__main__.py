"""`python -m services.scheduler`: the same as `floodgate run scheduler`."""

import sys

from floodgate.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", "scheduler", *sys.argv[1:]]))
