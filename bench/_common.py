"""What every bench prints about the code it measured, and how it cleans up after itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.redis_broker import connect


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


async def delete_namespace(redis_url: str, namespace: str) -> int:
    """Delete every key of a run's namespace (status records would stay for their 7 days);
    how many there were."""
    client = connect(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{namespace}:*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted
