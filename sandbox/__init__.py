"""A local stand-in for the Telegram Bot API, for floodgate's tests, demo and benchmarks.

It serves ``/bot{token}/{method}`` with Telegram's answer shapes, enforces Telegram's
three send limits as exact sliding windows, injects seeded faults, plays users who write
to bots, and records everything it received under ``/_sandbox``.
"""

from sandbox.config import SandboxConfig
from sandbox.server import Sandbox, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "start_sandbox"]
