"""One settings object, read from CRONSTREAM_* environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cronstream.config.topics import TopicFormat, comma_list, parse_topic_formats
from cronstream.errors import CronstreamError

ENV_PREFIX = "CRONSTREAM_"

# A query parameter: `?password=...`, `&sslpassword=...`, or a name percent-encoded
# (`passwor%64`), which drivers decode; a value runs to the next `&`, as drivers read it.
_QUERY_PARAM = re.compile(r"([?&][^=&?]*=)([^&]*)")
# `password=...` in a key=value connection string, quoted or not.
_KEYWORD_SECRET = re.compile(r"(?i)(\b[a-z]*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


class SettingsError(CronstreamError, ValueError):
    """A setting cannot be used; the message names its CRONSTREAM_* variable."""

    exit_code = 2

    def cli_line(self) -> str:
        return f"invalid settings: {self}"


def _userinfo_end(url: str) -> int:
    """Where the user:password part of a URL ends (its last '@'), or -1.

    The last '@' of the whole URL, not urlsplit's: an unencoded '#', '/' or '?' in a
    password makes urlsplit end the netloc inside it. Too far is safe: more is hidden.
    """
    return url.rfind("@", url.find("://") + 3) if "://" in url else -1


def _secret_param(match: re.Match[str]) -> bool:
    return "password" in unquote(match.group(1)).lower()


def secrets_of(url: str) -> list[str]:
    """Every text that `redact_url` hides, raw and percent-decoded, longest first."""
    found: list[str] = []
    end = _userinfo_end(url)
    if end >= 0:
        userinfo = url[url.find("://") + 3 : end]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    if "://" in url:
        found.extend(m.group(2) for m in _QUERY_PARAM.finditer(url) if _secret_param(m))
    else:
        found.extend(match.group(2) for match in _KEYWORD_SECRET.finditer(url))
    found.extend([unquote(text) for text in found] + [text.strip("'") for text in found])
    return sorted({text for text in found if text}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """`url` (any DSN form) with every password replaced by ***; never raises.

    For logs and error messages: `user:password@`, `?password=` and key=value
    `password=` forms, multi-host URLs, and passwords with unencoded special characters.
    """
    if "://" not in url:
        return _KEYWORD_SECRET.sub(r"\1***", url)
    end = _userinfo_end(url)
    if end >= 0:
        start = url.find("://") + 3
        user, colon, _ = url[start:end].partition(":")
        url = f"{url[:start]}{user}{':***' if colon else ''}{url[end:]}"
    return _QUERY_PARAM.sub(lambda m: f"{m.group(1)}***" if _secret_param(m) else m[0], url)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message, say) with every secret of `url` replaced by ***."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


def _check_database_url(url: str) -> None:
    """Refuse URLs a driver would misread; never quote the URL, which holds a password."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError(
            "must be a postgresql:// URL, e.g. postgresql://user:password@host:5432/db "
            "(key=value connection strings are not supported)"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL (check the [...] around an IPv6 host)") from None
    after_netloc = url[url.find("://") + 3 + len(parts.netloc) :]
    at_signs = parts.netloc.count("@")
    if "#" in url or at_signs > 1 or (at_signs == 0 and "@" in after_netloc):
        raise ValueError(
            "has special characters in its user or password: percent-encode them "
            "(# as %23, / as %2F, ? as %3F, @ as %40)"
        )


class Settings(BaseSettings):
    """Everything cronstream reads from its environment; each field is CRONSTREAM_<NAME>."""

    # hide_input_in_errors: a refused URL or password must not appear in the error text.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

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
    http_host: str = Field(
        "127.0.0.1", min_length=1, description="address the HTTP surface binds to"
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

    @field_validator("handlers", "external_topics", "http_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        if info.field_name == "external_topics":
            return parse_topic_formats(value)
        return comma_list(value)

    @field_validator("http_allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = []
        for item in value:
            name = host_name(item)
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(f"'{item}' is not a host name, IP address or [IPv6] address")
            names.append(name)
        return names

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        _check_database_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        """Refuse combinations a client would ignore (no auth, no TLS) or crash on."""
        protocol = self.kafka_security_protocol
        is_set = f"is set but {env_var('kafka_security_protocol')} is {protocol}"
        if protocol.startswith("SASL_"):
            missing = [
                env_var(name)
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise SettingsError(
                    f"{env_var('kafka_security_protocol')}={protocol} needs {', '.join(missing)}"
                    " (mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                )
        elif self.kafka_sasl_mechanism is not None:
            raise SettingsError(
                f"{env_var('kafka_sasl_mechanism')} {is_set}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is None:
                continue
            if protocol not in ("SSL", "SASL_SSL"):
                raise SettingsError(f"{env_var(name)} {is_set}: use SSL or SASL_SSL")
            if not path.is_file():
                raise SettingsError(f"{env_var(name)}: no such file: {path}")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise SettingsError(
                f"{env_var('kafka_ssl_keyfile')} needs {env_var('kafka_ssl_certfile')}"
            )
        return self

    @property
    def database_dsn(self) -> str:
        """The database URL with its password, for drivers only."""
        return self.database_url.get_secret_value()

    @property
    def database_url_redacted(self) -> str:
        return redact_url(self.database_dsn)

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


# Kafka's own rule for topic names ("." and ".." excepted, below).


# What a Host header's name may be: a DNS name, an IPv4 address or a bracketed IPv6 one.
_HOST_NAME = re.compile(r"[a-z0-9.\-_]{1,253}|\[[0-9a-f:.]{2,45}\]")


def host_name(host: str) -> str:
    """A Host header (or an address) as its lower-case name, without a port."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:8080
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") == 1:  # name:port; a bare IPv6 address has more colons
        return host.split(":")[0]
    return f"[{host}]" if ":" in host else host


def env_var(field: str) -> str:
    """The environment variable that sets a Settings field, for --help texts."""
    return f"{ENV_PREFIX}{field.upper()}"
