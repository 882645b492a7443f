"""Settings of the ingest service."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Limits of the public HTTP API."""

    model_config = SettingsConfigDict(extra="ignore")

    max_body_bytes: int = Field(
        1024 * 1024, validation_alias=AliasChoices("FLOODGATE_MAX_BODY_BYTES"), gt=0
    )
    max_batch_body_bytes: int = Field(
        16 * 1024 * 1024, validation_alias=AliasChoices("FLOODGATE_MAX_BATCH_BODY_BYTES"), gt=0
    )
