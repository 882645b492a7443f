"""Seeded fault injection: the same seed and request sequence give the same faults."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from sandbox.config import SandboxConfig

GATEWAY_CODES = (502, 500, 503, 504)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class FaultKind(enum.Enum):
    """What goes wrong with one send request."""

    NONE = "none"
    GATEWAY = "5xx"  # answered by the proxy in front; never reaches the API
    AFTER_SEND = "5xx_after_send"  # delivered, but the answer is lost behind a 502
    TIMEOUT = "timeout"  # no answer for timeout_seconds; not delivered


@dataclass(frozen=True, slots=True)
class Fault:
    """A drawn fault and the HTTP status it answers with (0 for none)."""

    kind: FaultKind
    status: int = 0


NO_FAULT = Fault(FaultKind.NONE)


class Faults:
    """Draws faults for send requests and latencies for every request, from the seed."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart both random sequences from ``seed``."""
        self._faults = random.Random(seed)
        # A separate stream, so that turning latency on does not shift the fault sequence.
        self._latency = random.Random(f"latency:{seed}")

    def draw(self, config: SandboxConfig) -> Fault:
        """Draw the fault of one send request."""
        roll = self._faults.random()
        threshold = config.fault_5xx_rate
        if roll < threshold:
            return Fault(FaultKind.GATEWAY, self._faults.choice(GATEWAY_CODES))
        threshold += config.fault_timeout_rate
        if roll < threshold:
            return Fault(FaultKind.TIMEOUT, 504)
        threshold += config.fault_5xx_after_send_rate
        if roll < threshold:
            return Fault(FaultKind.AFTER_SEND, 502)
        return NO_FAULT

    def latency(self, config: SandboxConfig) -> float:
        """Seconds of added latency for one request (0.0 when latency is off)."""
        if config.latency_max_ms <= 0.0:
            return 0.0
        low, high = config.latency_min_ms, config.latency_max_ms
        return self._latency.uniform(low, high) / 1000.0


def gateway_page(status: int) -> bytes:
    """The HTML error page a reverse proxy such as nginx answers with."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
