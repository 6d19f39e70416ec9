from __future__ import annotations

import pytest
from pydantic import ValidationError

from cronstream.settings import Settings, env_var, redact_url


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("CRONSTREAM_EXTERNAL_TOPICS", "crm.changes, billing.changes,")
    monkeypatch.setenv("CRONSTREAM_BATCH_SIZE", "50")
    settings = Settings()
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.external_topics == ["crm.changes", "billing.changes"]
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


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h:5/db", "postgresql://u@h:5/db"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_dlq_topic_and_env_var_names() -> None:
    assert Settings().dlq_topic("orders") == "orders.dlq"
    assert env_var("database_url") == "CRONSTREAM_DATABASE_URL"
