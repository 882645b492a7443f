"""Settings of the command-line tools that talk to a running service (``floodgate dlq``,
``floodgate keys --url``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings

from shared.settings import ENV_CONFIG


class CliSettings(BaseSettings):
    """Read once per command; flags win over these."""

    model_config = ENV_CONFIG

    stats_url: str = Field(
        "http://127.0.0.1:8083",
        validation_alias=AliasChoices("FLOODGATE_STATS_URL"),
        description="the stats service that `floodgate dlq` talks to",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("FLOODGATE_API_KEY"),
        description="the key the CLI sends as Authorization: Bearer",
    )

    def bearer(self) -> str:
        """The API key as sent, or an empty string."""
        return self.api_key.get_secret_value() if self.api_key else ""
