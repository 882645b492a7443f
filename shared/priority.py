"""How a message's priority is chosen when the request names none."""

from __future__ import annotations

from shared.models import Envelope, Kind, Priority

KIND_PRIORITY = {Kind.SYSTEM: Priority.HIGH, Kind.BACKGROUND: Priority.LOW}


def decide_priority(envelope: Envelope) -> Priority:
    """The request's priority, else one from its kind: system high, background low, else normal."""
    if envelope.priority is not None:
        return envelope.priority
    if envelope.kind is None:
        return Priority.NORMAL
    return KIND_PRIORITY.get(envelope.kind, Priority.NORMAL)
