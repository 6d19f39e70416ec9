from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cronstream.cli import app
from cronstream.config import settings as settings_module
from cronstream.config.env import SettingsError, env_var
from cronstream.config.redact import redact_url, scrub
from cronstream.config.settings import Settings, host_name
from cronstream.config.topics import TopicFormat
from cronstream.pg.connections import unavailable
from cronstream.web.access import check_exposure

PASSWORD = "pw#S3cr/et?x"


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("CRONSTREAM_EXTERNAL_TOPICS", "crm.changes, dbz.public.customers:debezium,")
    monkeypatch.setenv("CRONSTREAM_BATCH_SIZE", "50")
    settings = Settings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.external_topics == {
        "crm.changes": TopicFormat("envelope"),
        "dbz.public.customers": TopicFormat("debezium"),
    }
    assert settings.batch_size == 50


def test_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_password_never_in_repr_or_redacted_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_DATABASE_URL", "postgresql://app:hunter2@db:5432/app")
    monkeypatch.setenv("CRONSTREAM_KAFKA_SASL_PASSWORD", "kafka-secret")
    settings = Settings()
    assert "hunter2" not in repr(settings) and "kafka-secret" not in repr(settings)
    assert settings.database_url_redacted == "postgresql://app:***@db:5432/app"
    assert settings.database_dsn == "postgresql://app:hunter2@db:5432/app"


REDACTED = [
    ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h:5/db", "postgresql://u@h:5/db"),
    ("postgresql://h/db", "postgresql://h/db"),
    (
        "postgresql://u@h/db?password=p1&sslmode=require",
        "postgresql://u@h/db?password=***&sslmode=require",
    ),
    ("postgresql://u@h/db?sslpassword=p1", "postgresql://u@h/db?sslpassword=***"),
    ("postgresql://u@h/db?passwor%64=p1", "postgresql://u@h/db?passwor%64=***"),  # decoded
    ("postgresql://u:p1@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
    ("postgres://u:p1@[::1]:5432/db", "postgres://u:***@[::1]:5432/db"),
    ("postgresql://u:a#b@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:a/b?c@d@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:a%23b@h/db", "postgresql://u:***@h/db"),
    ("host=h user=u password=p1 dbname=db", "host=h user=u password=*** dbname=db"),
    ("host=h password = 'p 1\\' x' dbname=db", "host=h password = *** dbname=db"),
    ("", ""),
    ("postgresql://", "postgresql://"),
    ("postgresql://[", "postgresql://["),
]


@pytest.mark.parametrize(("url", "redacted"), REDACTED)
def test_redact_url_handles_every_dsn_form_and_never_raises(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_driver_messages_are_scrubbed_of_every_form_of_the_password() -> None:
    url = "postgresql://u:a%23b@h/db?sslpassword=k%26ey"
    message = scrub("bad 'a%23b' / 'a#b' / 'k%26ey' / 'k&ey'", url)
    assert message == "bad '***' / '***' / '***' / '***'"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p1@h1:5432,h2:5433/db",
        "postgresql://u@h/db?password=p1",
        "postgresql://u:p1@[::1]:1/db",
    ],
)
def test_a_connection_error_never_raises_and_hides_the_password(url: str) -> None:
    settings = Settings(database_url=url)
    error = unavailable(settings, OSError("refused by p1 (p1)"))
    assert "p1" not in str(error)
    assert "cannot connect to postgresql://" in str(error)


BAD_SETTINGS: list[tuple[dict[str, str], str]] = [
    ({"CRONSTREAM_DATABASE_URL": f"host=h password={PASSWORD}"}, "CRONSTREAM_DATABASE_URL"),
    ({"CRONSTREAM_DATABASE_URL": f"postgresql://u:{PASSWORD}@h/db"}, "percent-encode"),
    ({"CRONSTREAM_DATABASE_URL": f"postgresql://u:{PASSWORD}@[::1/db"}, "CRONSTREAM_DATABASE_URL"),
    ({"CRONSTREAM_DATABASE_URL": f"mysql://u:{PASSWORD}@h/db"}, "postgresql:// URL"),
    (
        {"CRONSTREAM_KAFKA_SASL_MECHANISM": "PLAIN", "CRONSTREAM_KAFKA_SASL_PASSWORD": PASSWORD},
        "CRONSTREAM_KAFKA_SASL_MECHANISM is set but CRONSTREAM_KAFKA_SECURITY_PROTOCOL is "
        "PLAINTEXT",
    ),
    (
        {"CRONSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        "CRONSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs CRONSTREAM_KAFKA_SASL_MECHANISM",
    ),
    (
        {
            "CRONSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CRONSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "CRONSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        },
        "needs CRONSTREAM_KAFKA_SASL_USERNAME",
    ),
    (
        {"CRONSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "CRONSTREAM_KAFKA_SSL_CAFILE": "/no/ca.pem"},
        "CRONSTREAM_KAFKA_SSL_CAFILE: no such file: /no/ca.pem",
    ),
    (
        {"CRONSTREAM_KAFKA_SSL_CAFILE": "/no/ca.pem"},
        "CRONSTREAM_KAFKA_SSL_CAFILE is set but CRONSTREAM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
    ),
    ({"CRONSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CRONSTREAM_KAFKA_SECURITY_PROTOCOL: Input"),
    ({"CRONSTREAM_BATCH_SIZE": "many"}, "CRONSTREAM_BATCH_SIZE: Input should be a valid integer"),
]


@pytest.mark.parametrize(("env", "reason"), BAD_SETTINGS, ids=[r for _, r in BAD_SETTINGS])
@pytest.mark.parametrize("command", [["migrate"], ["publish", "--entity", "a", "--key", "1"]])
def test_bad_settings_are_one_line_naming_the_variable_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str, command: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: invalid settings: ")
    assert reason in result.output
    assert result.output.count("\n") == 1
    assert PASSWORD not in result.output and "Traceback" not in result.output


def test_an_ssl_file_that_will_not_load_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    (tmp_path / "events.jsonl").write_bytes(
        b'{"type": "t", "entity": "a", "key": 1, "payload": {}}\n'
    )
    monkeypatch.setenv("CRONSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CRONSTREAM_KAFKA_SSL_CAFILE", str(garbage))
    result = CliRunner().invoke(app, ["publish", "--file", str(tmp_path / "events.jsonl")])
    assert result.exit_code == 2, result.output
    assert "error: invalid settings: CRONSTREAM_KAFKA_SSL_CAFILE: cannot load it" in result.output
    assert "events.jsonl" not in result.output


def test_dlq_topic_and_env_var_names() -> None:
    assert Settings().dlq_topic("orders") == "orders.dlq"
    assert env_var("database_url") == "CRONSTREAM_DATABASE_URL"


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("LocalHost:8080", "localhost"),
        ("[::1]:8080", "[::1]"),
        ("::1", "[::1]"),
        ("10.0.0.5", "10.0.0.5"),
        ("example.org:443", "example.org"),
        ("", ""),
    ],
)
def test_a_host_header_is_compared_by_its_name(given: str, name: str) -> None:
    assert host_name(given) == name


def test_allowed_hosts_are_names_without_their_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_HTTP_ALLOWED_HOSTS", "Cronstream.internal:8080, 10.0.0.5,")
    assert Settings().http_allowed_hosts == ["cronstream.internal", "10.0.0.5"]
    monkeypatch.setenv("CRONSTREAM_HTTP_ALLOWED_HOSTS", "ok.example, not a name")
    with pytest.raises(ValidationError, match="'not a name' is not a host name"):
        Settings()


@pytest.mark.parametrize(
    ("host", "exposed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("10.0.0.5", True),
        ("worker.example", True),  # a name may resolve to anything
    ],
)
def test_a_network_address_needs_the_ingress_token(host: str, exposed: bool) -> None:
    open_ingress = Settings(http_host=host, ingress_open=True)
    if exposed:
        with pytest.raises(SettingsError, match="CRONSTREAM_INGRESS_TOKEN"):
            check_exposure(open_ingress)
    else:
        check_exposure(open_ingress)
    check_exposure(Settings(http_host=host, ingress_token="t"))
    check_exposure(Settings(http_host=host, http_port=0))  # nothing served


def test_worker_processes_is_a_number_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().worker_processes == 1
    monkeypatch.setenv("CRONSTREAM_WORKER_PROCESSES", " Auto ")
    assert Settings().worker_processes == settings_module.cores() >= 1
    monkeypatch.setenv("CRONSTREAM_WORKER_PROCESSES", "3")
    assert Settings().worker_processes == 3


@pytest.mark.parametrize("value", ["0", "-1", "many", "2.5", "257"])
def test_a_bad_worker_processes_ends_the_worker_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CRONSTREAM_WORKER_PROCESSES", value)
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "invalid settings: CRONSTREAM_WORKER_PROCESSES: " in result.output
    assert "Traceback" not in result.output
