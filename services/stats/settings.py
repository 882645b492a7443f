"""Settings of the stats service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import ENV_CONFIG, _env


class StatsSettings(BaseSettings):
    """How often queue depths are refreshed for /metrics; how long updates and idle consumer
    names are kept."""

    model_config = ENV_CONFIG

    refresh_interval: float = Field(1.0, validation_alias=_env("FLOODGATE_STATS_INTERVAL"), gt=0)
    updates_retention: float = Field(
        86_400.0,
        validation_alias=_env("FLOODGATE_UPDATES_RETENTION"),
        gt=0,
        description="seconds an update stays on the {ns}:updates stream for applications",
    )
    dlq_retention: float = Field(
        30 * 86_400.0,
        validation_alias=_env("FLOODGATE_DLQ_RETENTION"),
        ge=0,
        description="seconds a dead letter is kept unless replayed or dropped first (0: for good)",
    )
    forget_consumers_after: float = Field(
        3_600.0,
        validation_alias=_env("FLOODGATE_FORGET_CONSUMERS_AFTER"),
        gt=0,
        description="seconds after which an idle consumer holding nothing leaves its group",
    )
    housekeeping_interval: float = Field(
        60.0, validation_alias=_env("FLOODGATE_HOUSEKEEPING_INTERVAL"), gt=0
    )
