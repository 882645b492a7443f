"""Settings of the sender pool."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import ENV_CONFIG, _env


class SenderSettings(BaseSettings):
    """Concurrency, prefetch and recovery timing of one sender process."""

    model_config = ENV_CONFIG

    concurrency: int = Field(
        128,
        validation_alias=_env("FLOODGATE_SENDER_CONCURRENCY"),
        gt=0,
        description="Bot API calls in flight at once in this process (connection pool size)",
    )
    prefetch: int = Field(
        512,
        validation_alias=_env("FLOODGATE_SENDER_PREFETCH"),
        gt=0,
        description="messages read and not yet settled, at most",
    )
    batch: int = Field(256, validation_alias=_env("FLOODGATE_SENDER_BATCH"), gt=0)
    block_ms: int = Field(500, validation_alias=_env("FLOODGATE_SENDER_BLOCK_MS"), gt=0)
    promote_interval: float = Field(
        0.05, validation_alias=_env("FLOODGATE_SENDER_PROMOTE_INTERVAL"), gt=0
    )
    expected_replicas: int = Field(
        1,
        validation_alias=_env("FLOODGATE_SENDER_REPLICAS"),
        gt=0,
        description="while Redis is unreachable each sender limits itself to 1/N of every "
        "bot's rate, N the senders alive just before (as Redis said) but at least this many",
    )
    max_deliveries: int = Field(
        5,
        validation_alias=_env("FLOODGATE_MAX_DELIVERIES"),
        gt=0,
        description="an entry delivered to consumers this often without being settled "
        "(it keeps crashing them) is dead-lettered",
    )
    max_internal_failures: int = Field(
        3,
        validation_alias=_env("FLOODGATE_MAX_INTERNAL_FAILURES"),
        gt=0,
        description="a message whose delivery fails this often for a reason that is neither "
        "Telegram's nor Redis' (a bug, a value nothing can take) is dead-lettered with it",
    )
    claim_idle_ms: int | None = Field(
        None,
        validation_alias=_env("FLOODGATE_SENDER_CLAIM_IDLE_MS"),
        gt=0,
        description="idle time before another sender claims an entry; "
        "default TELEGRAM_TIMEOUT + TELEGRAM_RATE_LIMIT_WAIT + 10 s",
    )

    def claim_idle(self, telegram_timeout: float, rate_limit_wait: float) -> int:
        """Idle time that exceeds the longest a healthy sender holds an entry."""
        if self.claim_idle_ms is not None:
            return self.claim_idle_ms
        return int((telegram_timeout + rate_limit_wait + 10.0) * 1000)
