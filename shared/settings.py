"""Settings shared by every floodgate service: Redis, PostgreSQL, Telegram and the limits."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Settings are read only under their documented names, exactly as written: neither a field's
# own name (``bot_rate``) nor another spelling (``BOT_RATE``, ``floodgate_bot_rate``), so a
# variable meant for another program in the same environment changes nothing here.
ENV_CONFIG = SettingsConfigDict(extra="ignore", case_sensitive=True)


CLUSTER_PARTITIONS = 16


def _env(name: str) -> AliasChoices:
    """The one environment variable a setting is read from."""
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """Environment of every process; built once in ``main()`` and passed down."""

    model_config = ENV_CONFIG

    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    telegram_api_base: str = Field(
        "https://api.telegram.org", validation_alias=_env("TELEGRAM_API_BASE")
    )
    bots: str | None = Field(None, validation_alias=_env("FLOODGATE_BOTS"))
    # Letters, digits, `_`, `.` and `-` only: the namespace goes into hash tags (`{fg:updates}`)
    # and key patterns, where a brace, a glob character or a colon would change their meaning.
    namespace: str = Field(
        "fg",
        validation_alias=_env("FLOODGATE_NAMESPACE"),
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    telegram_timeout: float = Field(20.0, validation_alias=_env("TELEGRAM_TIMEOUT"), gt=0)
    telegram_max_retries: int = Field(5, validation_alias=_env("TELEGRAM_MAX_RETRIES"), ge=0)
    telegram_base_delay: float = Field(1.0, validation_alias=_env("TELEGRAM_BASE_DELAY"), ge=0)
    telegram_max_delay: float = Field(60.0, validation_alias=_env("TELEGRAM_MAX_DELAY"), ge=0)
    telegram_rate_limit_wait: float = Field(
        2.0, validation_alias=_env("TELEGRAM_RATE_LIMIT_WAIT"), ge=0
    )
    bot_rate: float = Field(30.0, validation_alias=_env("FLOODGATE_BOT_RATE"), gt=0)
    bot_rate_overrides: str = Field(
        "",
        validation_alias=_env("FLOODGATE_BOT_RATE_OVERRIDES"),
        description="per-bot rates, e.g. '123=1000,456=10'",
    )
    chat_rate: float = Field(1.0, validation_alias=_env("FLOODGATE_CHAT_RATE"), gt=0)
    group_rate: float = Field(20.0, validation_alias=_env("FLOODGATE_GROUP_RATE"), gt=0)
    limit_margin: float = Field(
        0.0,
        validation_alias=_env("FLOODGATE_LIMIT_MARGIN"),
        ge=0,
        description=(
            "seconds added to every limiter window; tokens already count from the end of their"
            " call, so this is only extra room"
        ),
    )
    window_scale: float = Field(
        1.0,
        validation_alias=_env("FLOODGATE_WINDOW_SCALE"),
        gt=0,
        description="multiplies every limiter window (tests against a scaled sandbox)",
    )
    record_ttl: int = Field(
        7 * 86400,
        validation_alias=_env("FLOODGATE_RECORD_TTL"),
        gt=0,
        description="seconds a message's status record is kept",
    )
    admin_key: SecretStr | None = Field(
        None,
        validation_alias=_env("FLOODGATE_ADMIN_KEY"),
        description="a key every service accepts with the admin role (at least 32 characters)",
    )
    auth: Literal["on", "off"] = Field(
        "on",
        validation_alias=_env("FLOODGATE_AUTH"),
        description="'off' serves every route without keys (local development only)",
    )
    redis_pool_size: int = Field(
        64,
        validation_alias=_env("FLOODGATE_REDIS_POOL_SIZE"),
        gt=0,
        description="connections to Redis per process, at most",
    )
    redis_pool_wait: float = Field(
        5.0,
        validation_alias=_env("FLOODGATE_REDIS_POOL_WAIT"),
        gt=0,
        description="seconds a call waits for a free Redis connection before it fails",
    )
    http_header_timeout: float = Field(
        15.0,
        validation_alias=_env("FLOODGATE_HTTP_HEADER_TIMEOUT"),
        gt=0,
        description="seconds a connection may take to send a request's headers (also the "
        "longest idle keep-alive)",
    )
    http_body_timeout: float = Field(
        30.0,
        validation_alias=_env("FLOODGATE_HTTP_BODY_TIMEOUT"),
        gt=0,
        description="seconds a request may take to send its whole body",
    )
    http_max_connections: int = Field(
        1000,
        validation_alias=_env("FLOODGATE_HTTP_MAX_CONNECTIONS"),
        gt=0,
        description="open HTTP connections per process; one more is answered 503 and closed",
    )
    durability: Literal["local", "replicated"] = Field(
        "local",
        validation_alias=_env("FLOODGATE_DURABILITY"),
        description="'replicated': ingest answers 202 (the webhook 200) only once a replica has"
        " the write (WAIT 1); 'local': once the primary has it",
    )
    replication_timeout_ms: int = Field(
        1000,
        validation_alias=_env("FLOODGATE_REPLICATION_TIMEOUT_MS"),
        gt=0,
        description="with replicated durability, how long a write waits for a replica before"
        " the answer is 503",
    )
    partitions: int | None = Field(
        None,
        validation_alias=_env("FLOODGATE_PARTITIONS"),
        ge=1,
        le=256,
        description="partitions of the pipeline's keys, a bot's messages always in one; every"
        " process must use the same number (checked at start). Unset: 16 on a Redis Cluster"
        " (redis+cluster://), else 1",
    )
    log_level: str = Field("INFO", validation_alias=_env("FLOODGATE_LOG_LEVEL"))
    log_format: str = Field("json", validation_alias=_env("FLOODGATE_LOG_FORMAT"))
    consumer: str | None = Field(
        None,
        validation_alias=_env("FLOODGATE_CONSUMER"),
        description="consumer name in the stream groups; unset: host and pid",
    )
    host: str = Field(
        "0.0.0.0",  # noqa: S104 - a service listens on its pod IP
        validation_alias=_env("HOST"),
        description="address a service listens on (--host wins)",
    )
    port: int | None = Field(
        None,
        validation_alias=_env("PORT"),
        gt=0,
        lt=65536,
        description="HTTP port (--port wins); unset: the service's own default",
    )

    @property
    def pipeline_partitions(self) -> int:
        """``FLOODGATE_PARTITIONS``, or its default for the topology of ``REDIS_URL``."""
        if self.partitions is not None:
            return self.partitions
        if self.redis_url and self.redis_url.startswith("redis+cluster"):
            return CLUSTER_PARTITIONS
        return 1

    def rate_overrides(self) -> dict[int, float]:
        """Per-bot messages-per-second overrides parsed from ``FLOODGATE_BOT_RATE_OVERRIDES``."""
        result: dict[int, float] = {}
        for item in filter(None, (part.strip() for part in self.bot_rate_overrides.split(","))):
            bot, _, rate = item.partition("=")
            try:
                result[int(bot)] = float(rate)
            except ValueError as exc:
                raise ValueError(
                    f"FLOODGATE_BOT_RATE_OVERRIDES: {item!r} is not of the form BOT_ID=RATE"
                ) from exc
        return result
