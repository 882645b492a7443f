"""Settings of the stats service."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StatsSettings(BaseSettings):
    """How often queue depths are refreshed for /metrics."""

    model_config = SettingsConfigDict(extra="ignore")

    refresh_interval: float = Field(
        1.0, validation_alias=AliasChoices("FLOODGATE_STATS_INTERVAL"), gt=0
    )
