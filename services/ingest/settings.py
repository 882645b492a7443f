"""Settings of the ingest service."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from shared.settings import ENV_CONFIG, _env


class IngestSettings(BaseSettings):
    """Limits of the public HTTP API."""

    model_config = ENV_CONFIG

    max_body_bytes: int = Field(
        1024 * 1024, validation_alias=_env("FLOODGATE_MAX_BODY_BYTES"), gt=0
    )
    webhook_secrets: str = Field(
        "",
        validation_alias=_env("FLOODGATE_WEBHOOK_SECRETS"),
        description="per-bot webhook secrets, '123=secret,...'; a bot without one uses a "
        "secret derived from its token (what `floodgate webhook set` registers)",
    )
    bot_usernames: str = Field(
        "",
        validation_alias=_env("FLOODGATE_BOT_USERNAMES"),
        description="per-bot @usernames, '123=my_bot,...', to recognise mentions",
    )
    max_update_bytes: int = Field(
        1024 * 1024, validation_alias=_env("FLOODGATE_MAX_UPDATE_BYTES"), gt=0
    )
    polling_bots: str = Field(
        "",
        validation_alias=_env("FLOODGATE_POLLING_BOTS"),
        description="bots that get their updates by getUpdates long polling instead of a "
        "webhook: 'all' or '123,456'",
    )
    poll_timeout: float = Field(25.0, validation_alias=_env("FLOODGATE_POLL_TIMEOUT"), gt=0, le=50)
    poll_lease_ms: int = Field(30_000, validation_alias=_env("FLOODGATE_POLL_LEASE_MS"), gt=0)
    webhook_port: int | None = Field(
        None,
        validation_alias=_env("FLOODGATE_WEBHOOK_PORT"),
        gt=0,
        lt=65536,
        description="when set, the webhook is served on this port alone, and only there",
    )
    webhook_host: str = Field(
        "0.0.0.0",  # noqa: S104 - the webhook listens on the pod IP, like the API
        validation_alias=_env("FLOODGATE_WEBHOOK_HOST"),
    )
    max_batch_body_bytes: int = Field(
        16 * 1024 * 1024, validation_alias=_env("FLOODGATE_MAX_BATCH_BODY_BYTES"), gt=0
    )
    max_send_at_horizon: float = Field(
        365 * 86400.0,
        validation_alias=_env("FLOODGATE_MAX_SEND_AT_HORIZON"),
        gt=0,
        description="seconds ahead a send_at may lie at most",
    )
    proxy_wait: float = Field(
        60.0,
        validation_alias=_env("FLOODGATE_PROXY_WAIT"),
        gt=0,
        le=3600,
        description="seconds a drop-in Bot API send waits for its delivery before a 502",
    )
    proxy_dedup_window: int = Field(
        300,
        validation_alias=_env("FLOODGATE_PROXY_DEDUP_WINDOW"),
        gt=0,
        description="seconds after acceptance during which a drop-in send whose client left "
        "unanswered is found again by the same request, instead of being sent twice",
    )
    proxy_max_body_bytes: int = Field(
        20 * 1024 * 1024,
        validation_alias=_env("FLOODGATE_PROXY_MAX_BODY_BYTES"),
        gt=0,
        description="largest body forwarded unchanged by the drop-in endpoint (uploads)",
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_round(self) -> Self:
        # the lease is renewed once a round, and a round waits up to the long poll's timeout:
        # a shorter lease passes to another replica mid-call, and the two cut each other off
        if self.poll_lease_ms <= self.poll_timeout * 1000:
            raise ValueError(
                f"FLOODGATE_POLL_LEASE_MS ({self.poll_lease_ms}) must be longer than"
                f" FLOODGATE_POLL_TIMEOUT ({self.poll_timeout:g} s): a round waits that long"
            )
        return self
