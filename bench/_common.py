"""What every bench prints about the code it measured."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """The commit measured, and how many files outside bench/ differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line for line in dirty if not line[3:].startswith("bench/")]
    return f"{head} + {len(changed)} uncommitted files" if changed else head
