"""One settings object, read from CRONSTREAM_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CRONSTREAM_"
REPO_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by ***, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Settings(BaseSettings):
    """Everything cronstream reads from its environment; each field is CRONSTREAM_<NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    database_url: SecretStr = Field(
        SecretStr("postgresql://cronstream:cronstream@127.0.0.1:5432/cronstream"),
        description="PostgreSQL URL; its password is never logged",
    )
    migrations_dir: Path = REPO_MIGRATIONS
    jobs_file: Path | None = Field(None, description="TOML file of cron jobs")

    sync_topic: str = Field("cronstream.sync_required", min_length=1)
    external_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="external change topics, comma-separated"
    )
    dlq_suffix: str = Field(".dlq", min_length=1)
    topic_partitions: int = Field(6, ge=1)
    topic_replication: int = Field(1, ge=1)
    consumer_group: str = Field("cronstream", min_length=1)

    handlers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="modules with a register(registry), comma-separated"
    )
    session_timeout: float = Field(10.0, ge=1, description="seconds before Kafka drops a worker")
    worker_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="a stable, unique name per worker: Kafka static membership, so a "
        "restarted worker gets its partitions back without waiting for a rebalance",
    )
    engine: Literal["batch", "faust"] = Field(
        "batch",
        description="worker engine: batch (aiokafka, whole polls) or faust (a faust agent)",
    )
    handler_attempts: int = Field(
        3, ge=1, description="tries before a failing event is dead-lettered"
    )
    handler_timeout: float = Field(
        60.0, gt=0, le=86_400, description="seconds one handler attempt may take"
    )
    db_lock_timeout: float = Field(
        10.0, gt=0, le=86_400, description="seconds a worker statement waits for a row lock"
    )
    db_statement_timeout: float = Field(
        300.0, gt=0, le=86_400, description="seconds one worker statement may run"
    )
    retry_backoff: float = Field(0.2, gt=0, description="first retry delay in seconds, doubling")
    retry_backoff_max: float = Field(10.0, gt=0)

    batch_size: int = Field(2000, ge=1, le=100_000, description="most records in one batch")
    batch_max_wait: float = Field(
        0.5, gt=0, le=3600, description="seconds a poll waits for records when there are none"
    )
    connect_timeout: float = Field(10.0, gt=0, description="seconds to open a Postgres connection")
    request_timeout: float = Field(30.0, gt=0, description="seconds for one Kafka request")
    shutdown_timeout: float = Field(30.0, gt=0)

    @field_validator("external_topics", "handlers", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def database_dsn(self) -> str:
        """The database URL with its password, for drivers only."""
        return self.database_url.get_secret_value()

    @property
    def database_url_redacted(self) -> str:
        return redact_url(self.database_dsn)

    @property
    def input_topics(self) -> list[str]:
        """Every topic the workers consume: sync_required first, then the external ones."""
        return list(dict.fromkeys([self.sync_topic, *self.external_topics]))

    def dlq_topic(self, topic: str) -> str:
        return f"{topic}{self.dlq_suffix}"


def env_var(field: str) -> str:
    """The environment variable that sets a Settings field, for --help texts."""
    return f"{ENV_PREFIX}{field.upper()}"
