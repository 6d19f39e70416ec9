"""Kafka clients built from Settings: connection options, the producer, topic creation."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cronstream.settings import Settings, SettingsError, env_var

# The producer's max_request_size (aiokafka's default), which publish checks each event
# against before sending anything; the broker's default message.max.bytes is 1 MiB too.
MAX_REQUEST_SIZE = 1_048_576


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """The SSL context of the settings' files; a file that will not load is named by variable."""
    cafile, certfile, keyfile = (
        settings.kafka_ssl_cafile,
        settings.kafka_ssl_certfile,
        settings.kafka_ssl_keyfile,
    )
    names = env_var("kafka_ssl_cafile")
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if certfile:
            names = env_var("kafka_ssl_certfile")
            if keyfile:
                names += f" or {env_var('kafka_ssl_keyfile')}"
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except OSError as error:  # missing, unreadable, not PEM, a key that does not match
        raise SettingsError(f"{names}: cannot load it: {error.strerror or error}") from None
    return context


def connection_options(settings: Settings) -> dict[str, Any]:
    """bootstrap, security and timeout options shared by every aiokafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": int(settings.request_timeout * 1000),
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer with acks=all: a retried send never duplicates a record."""
    options = connection_options(settings) | {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": MAX_REQUEST_SIZE,
    }
    return AIOKafkaProducer(**(options | overrides))


async def ensure_topics(settings: Settings, topics: list[str]) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
        if not missing:
            return []
        new = [
            NewTopic(topic, settings.topic_partitions, settings.topic_replication)
            for topic in missing
        ]
        # Another process may create one between our list and our create.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        return missing
    finally:
        await admin.close()
