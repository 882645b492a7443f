"""`python -m services.sender`: the same as `floodgate run sender`."""

import sys

from floodgate.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", "sender", *sys.argv[1:]]))
