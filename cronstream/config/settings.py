"""One settings object, read from CRONSTREAM_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cronstream.config.connections import (
    DatabaseConnection,
    KafkaConnection,
    SaslMechanism,
    SecurityProtocol,
    check_database_url,
)
from cronstream.config.env import ENV_PREFIX, SettingsError, env_var
from cronstream.config.hosts import allowed_host, host_name
from cronstream.config.topics import TopicFormat, comma_list, parse_topic_formats

# SettingsError and env_var live in config/env.py; callers of Settings find them here too.
__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "env_var", "host_name"]


MAX_WORKER_PROCESSES = 256


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container's cpuset
    narrows), at most MAX_WORKER_PROCESSES."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_WORKER_PROCESSES))


class Settings(BaseSettings):
    """Everything cronstream reads from its environment; each field is CRONSTREAM_<NAME>."""

    # hide_input_in_errors: a refused URL or password must not appear in the error text.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port"
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    database_url: SecretStr = Field(
        SecretStr("postgresql://cronstream:cronstream@127.0.0.1:5432/cronstream"),
        description="PostgreSQL URL; its password is never logged",
    )
    migrations_dir: Path | None = Field(
        None, description="folder of NNNN_name.sql files (default: the packaged migrations)"
    )
    jobs_file: Path | None = Field(None, description="TOML file of cron jobs")
    run_retention: float = Field(
        14.0,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description="days of cron_runs history the leading scheduler keeps (it deletes "
        "older runs in small batches; each job's newest run always stays)",
    )

    sync_topic: str = Field("cronstream.sync_required", min_length=1)
    external_topics: Annotated[dict[str, TopicFormat], NoDecode] = Field(
        default_factory=dict,
        description="external change topics, comma-separated, each topic[:format[:entity]]: "
        "format envelope (the default), debezium or cloudevents; entity overrides the "
        "records' own (debezium, cloudevents)",
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
    worker_processes: int = Field(
        1,
        ge=1,
        le=MAX_WORKER_PROCESSES,
        description="worker processes `cronstream worker` runs under one supervisor, "
        "which serves the one HTTP surface; `auto`: one per core this process may use",
    )
    handler_attempts: int = Field(
        3, ge=1, description="tries before a failing event is dead-lettered"
    )
    handler_timeout: float = Field(
        60.0, gt=0, le=86_400, description="seconds one handler attempt may take"
    )
    db_lock_timeout: float = Field(
        10.0,
        gt=0,
        le=86_400,
        description="seconds a worker or scheduler statement waits for a lock",
    )
    db_statement_timeout: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="seconds one worker or scheduler statement may run",
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

    http_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="port of the worker's HTTP surface (/healthz, /readyz, /metrics, "
        "POST /events, the status page at /); 0 turns it off",
    )
    scheduler_http_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="port of `cronstream scheduler`'s HTTP surface (/healthz, /readyz, "
        "/metrics); 0 turns it off. `cronstream run` serves on the worker's port only",
    )
    http_host: str = Field(
        "127.0.0.1", min_length=1, description="address the HTTP surfaces bind to"
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header names the HTTP surface answers besides localhost, "
        "127.0.0.1, [::1] and CRONSTREAM_HTTP_HOST, comma-separated (a port is ignored)",
    )
    http_header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a new connection has to send its headers"
    )
    http_body_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds to receive a POST /events body"
    )
    http_keepalive_timeout: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="seconds an idle connection stays open after a response",
    )
    http_max_connections: int = Field(
        100, ge=1, le=100_000, description="open HTTP connections; more are answered 503"
    )
    http_max_ingress: int = Field(
        8, ge=1, le=1000, description="POST /events handled at once; more are answered 503"
    )
    ingress_token: SecretStr | None = Field(
        None,
        min_length=1,
        description="the bearer token POST /events needs ('Authorization: Bearer <token>'); "
        "with it set, / and the reasons of /readyz need it too",
    )
    ingress_open: bool = Field(
        False,
        description="take POST /events without a token (a loopback address only; logged "
        "as a warning at start)",
    )
    ingress_max_bytes: int = Field(
        4 * 1_048_576, ge=1024, le=256 * 1_048_576, description="largest POST /events body"
    )
    status_sample_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="seconds between the status page's samples of checkpoints and log "
        "ends (an hour of them is kept in memory for its plots)",
    )
    stall_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="seconds a partition's checkpoint may stand still while it has lag "
        "before it is reported stalled",
    )

    @field_validator("handlers", "external_topics", "http_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        if info.field_name == "external_topics":
            return parse_topic_formats(value)
        return comma_list(value)

    @field_validator("worker_processes", mode="before")
    @classmethod
    def _auto_processes(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "auto":
            return cores()
        if not value.strip().isdigit():
            raise ValueError(f"a number from 1 to {MAX_WORKER_PROCESSES}, or auto")
        return value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        return [allowed_host(item) for item in value]

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        check_database_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        self.kafka.check()
        return self

    @property
    def kafka(self) -> KafkaConnection:
        """What every Kafka client connects with."""
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            request_timeout=self.request_timeout,
        )

    @property
    def database(self) -> DatabaseConnection:
        """What every Postgres connection is opened with."""
        return DatabaseConnection(
            url=self.database_url,
            connect_timeout=self.connect_timeout,
            lock_timeout=self.db_lock_timeout,
            statement_timeout=self.db_statement_timeout,
        )

    @property
    def database_dsn(self) -> str:
        """The database URL with its password, for drivers only."""
        return self.database.dsn

    @property
    def database_url_redacted(self) -> str:
        return self.database.redacted

    @model_validator(mode="after")
    def _sync_topic_is_an_envelope_topic(self) -> Self:
        given = self.external_topics.get(self.sync_topic)
        if given is not None and given.name != "envelope":
            raise SettingsError(
                f"{env_var('external_topics')}: {self.sync_topic} is the sync_required topic "
                f"({env_var('sync_topic')}), which carries envelopes, not {given.name}"
            )
        return self

    @property
    def input_topics(self) -> list[str]:
        """Every topic the workers consume: sync_required first, then the external ones."""
        return list(dict.fromkeys([self.sync_topic, *self.external_topics]))

    def dlq_topic(self, topic: str) -> str:
        return f"{topic}{self.dlq_suffix}"
