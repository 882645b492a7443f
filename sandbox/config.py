"""Runtime configuration of the sandbox: limits, faults and bookkeeping sizes."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SandboxConfig(BaseModel):
    """Everything that shapes how the sandbox answers; changeable at runtime.

    Rates are counts of successful sends; windows are seconds and are all multiplied by
    ``window_scale`` (tests use a small scale so a group's 60 s window passes quickly).
    Fault rates are fractions of send requests and together may not exceed 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits_enabled: bool = True
    bot_rate: int = Field(default=30, ge=1)
    bot_window: float = Field(default=1.0, gt=0)
    chat_rate: int = Field(default=1, ge=1)
    chat_window: float = Field(default=1.0, gt=0)
    group_rate: int = Field(default=20, ge=1)
    group_window: float = Field(default=60.0, gt=0)
    window_scale: float = Field(default=1.0, gt=0)
    bot_rate_overrides: dict[int, int] = Field(default_factory=dict)

    seed: int = 0
    fault_5xx_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_5xx_after_send_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    timeout_seconds: float = Field(default=30.0, ge=0)
    latency_min_ms: float = Field(default=0.0, ge=0)
    latency_max_ms: float = Field(default=0.0, ge=0)
    blocked_chats: frozenset[int] = frozenset()
    missing_chats: frozenset[int] = frozenset()
    migrated_chats: dict[int, int] = Field(default_factory=dict)
    revoked_tokens: frozenset[str] = frozenset()
    revoked_bot_ids: frozenset[int] = frozenset()
    strict_message_refs: bool = False

    webhook_timeout: float = Field(default=10.0, gt=0)
    webhook_retry_min: float = Field(default=0.05, gt=0)
    webhook_retry_max: float = Field(default=2.0, gt=0)
    request_log_size: int = Field(default=200_000, ge=1)
    message_log_size: int = Field(default=1_000_000, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        faults = self.fault_5xx_rate + self.fault_5xx_after_send_rate + self.fault_timeout_rate
        if faults > 1.0:
            raise ValueError("fault rates add up to more than 1")
        if self.latency_min_ms > self.latency_max_ms:
            raise ValueError("latency_min_ms is above latency_max_ms")
        if self.webhook_retry_min > self.webhook_retry_max:
            raise ValueError("webhook_retry_min is above webhook_retry_max")
        if any(rate < 1 for rate in self.bot_rate_overrides.values()):
            raise ValueError("bot_rate_overrides values must be at least 1")
        return self

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        """Return a validated copy with ``changes`` applied (raises pydantic.ValidationError)."""
        return SandboxConfig.model_validate({**self.model_dump(), **changes})

    def limits_summary(self) -> str:
        """One human line describing the active limits, for the start-up log."""
        if not self.limits_enabled:
            return "limits off"
        scale = self.window_scale
        return (
            f"bot {self.bot_rate}/{self.bot_window * scale:g}s, "
            f"private chat {self.chat_rate}/{self.chat_window * scale:g}s, "
            f"group {self.group_rate}/{self.group_window * scale:g}s"
        )
