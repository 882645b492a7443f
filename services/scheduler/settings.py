"""Settings of the scheduler."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import ENV_CONFIG, _env


class SchedulerSettings(BaseSettings):
    """Batch sizes and intervals of the scheduler's loops."""

    model_config = ENV_CONFIG

    batch: int = Field(500, validation_alias=_env("FLOODGATE_SCHEDULER_BATCH"), gt=0)
    block_ms: int = Field(1000, validation_alias=_env("FLOODGATE_SCHEDULER_BLOCK_MS"), gt=0)
    promote_interval: float = Field(
        0.1, validation_alias=_env("FLOODGATE_SCHEDULER_PROMOTE_INTERVAL"), gt=0
    )
    max_deliveries: int = Field(5, validation_alias=_env("FLOODGATE_MAX_DELIVERIES"), gt=0)
    claim_idle_ms: int = Field(
        30_000, validation_alias=_env("FLOODGATE_SCHEDULER_CLAIM_IDLE_MS"), gt=0
    )
