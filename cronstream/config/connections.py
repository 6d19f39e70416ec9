"""How cronstream reaches its two services: the Kafka connection and the database one.

Both are read from the flat CRONSTREAM_KAFKA_* / CRONSTREAM_DATABASE_URL / timeout
settings (`Settings.kafka`, `Settings.database`), so no variable is renamed; clients
take what they need to connect from these models alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from cronstream.config.env import SettingsError, env_var
from cronstream.config.redact import redact_url

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseModel):
    """Bootstrap servers, security (TLS files, SASL credentials) and the request timeout
    every Kafka client shares; each field is the setting `kafka_<name>`, the timeout
    `request_timeout`."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    request_timeout: float = 30.0

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def check(self) -> None:
        """Refuse combinations a client would ignore (no auth, no TLS) or crash on,
        naming the variables."""
        protocol = self.security_protocol
        is_set = f"is set but {env_var('kafka_security_protocol')} is {protocol}"
        if protocol.startswith("SASL_"):
            missing = [
                env_var(f"kafka_{name}")
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise SettingsError(
                    f"{env_var('kafka_security_protocol')}={protocol} needs {', '.join(missing)}"
                    " (mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                )
        elif self.sasl_mechanism is not None:
            raise SettingsError(
                f"{env_var('kafka_sasl_mechanism')} {is_set}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is None:
                continue
            if not self.uses_ssl:
                raise SettingsError(f"{env_var(f'kafka_{name}')} {is_set}: use SSL or SASL_SSL")
            if not path.is_file():
                raise SettingsError(f"{env_var(f'kafka_{name}')}: no such file: {path}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise SettingsError(
                f"{env_var('kafka_ssl_keyfile')} needs {env_var('kafka_ssl_certfile')}"
            )


class DatabaseConnection(BaseModel):
    """The Postgres URL (its password never shown: `redacted`) and the bounds on a
    connection: seconds to open one (`connect_timeout`), and per statement, seconds to
    wait for a lock (`db_lock_timeout`) and to run (`db_statement_timeout`)."""

    model_config = ConfigDict(frozen=True)

    url: SecretStr
    connect_timeout: float = 10.0
    lock_timeout: float = 10.0
    statement_timeout: float = 300.0

    @property
    def dsn(self) -> str:
        """The URL with its password, for drivers only."""
        return self.url.get_secret_value()

    @property
    def redacted(self) -> str:
        return redact_url(self.dsn)


def check_database_url(url: str) -> None:
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
