"""Kafka clients built from Settings: connection options, the producer, topic creation,
and the one way records are sent: all of a batch, waiting for every ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from cronstream.config.connections import KafkaConnection
from cronstream.config.env import SettingsError, env_var
from cronstream.config.settings import Settings
from cronstream.kafka.batches import Batches

log = logging.getLogger(__name__)

# The producer's max_request_size (aiokafka's default), which publish checks each event
# against before sending anything; the broker's default message.max.bytes is 1 MiB too.
MAX_REQUEST_SIZE = 1_048_576
# A batch of a partition holds up to this (aiokafka's default is 16 KiB): the producer
# has one request in flight per broker, so larger batches carry more records per round
# trip (publish and scans spend less per record). A topic whose max.message.bytes is
# below it refuses batches that are fuller (its default, 1 MiB, takes four).
MAX_BATCH_SIZE = 262_144


def _ssl_context(kafka: KafkaConnection) -> ssl.SSLContext:
    """The SSL context of the connection's files; a file that will not load is named by
    variable."""
    cafile, certfile, keyfile = kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile
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
    kafka = settings.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": int(kafka.request_timeout * 1000),
    }
    if kafka.uses_ssl:
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer with acks=all: a retried send never duplicates a record."""
    options = connection_options(settings) | {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_request_size": MAX_REQUEST_SIZE,
    }
    return AIOKafkaProducer(**(options | overrides))


class Client(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


C = TypeVar("C", bound=Client)


@contextlib.asynccontextmanager
async def started(client: C) -> AsyncIterator[C]:
    """`client` started for the block and stopped after it. A start that fails or is
    cancelled stops it too; an error of the block is not hidden by one of stop(), and a
    Kafka error of stop() after the block succeeded is only logged."""
    try:
        await client.start()
        yield client
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise
    try:
        await client.stop()
    except KafkaError as error:  # the block's work is done (sends were acknowledged)
        log.warning("closing a Kafka client failed: %r", error)


class Admin:
    """aiokafka's admin client (`client`), started and stopped like the other clients."""

    def __init__(self, settings: Settings) -> None:
        self.client = AIOKafkaAdminClient(**connection_options(settings))

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.close()  # the admin client closes rather than stops


class Message(NamedTuple):
    """One record to send (a tuple: they are made by the hundred thousand)."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class Delivery:
    """What became of a batch, by each message's index in it: acknowledged (with the
    partition it landed in), refused by the client unsent, or sent and not acknowledged."""

    acked: dict[int, int] = field(default_factory=dict)
    refused: dict[int, MessageSizeTooLargeError] = field(default_factory=dict)
    failed: dict[int, BaseException] = field(default_factory=dict)

    def errors(self) -> list[tuple[int, BaseException]]:
        """Every message not acknowledged and why, in batch order."""
        return sorted({**self.failed, **self.refused}.items())


async def send(producer: AIOKafkaProducer, messages: Sequence[Message]) -> Delivery:
    """Send `messages` in order and wait for every ack (the producer's acks=all).

    Records go in batches of our own, one per partition at a time (aiokafka's
    create_batch and send_batch): one future per batch rather than per record, and the
    batches of one partition are queued in order, so a key's records keep their order.
    Never raises for a message: a record over MAX_REQUEST_SIZE is `refused` unsent and
    the rest go on; once Kafka does not take a batch (unreachable, or a batch before it
    failed), nothing more is queued and every message not in a batch already queued is
    `failed` with that error; a queued batch not acknowledged fails all its messages.
    """
    delivery = Delivery()
    batches = Batches(producer)
    try:
        for index, message in enumerate(messages):
            headers = message.headers
            if type(headers) is not list:  # aiokafka's record builder takes only lists
                headers = list(headers)
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
                message.key, message.value, headers
            )
            if size > MAX_REQUEST_SIZE:  # what the producer's own send() would refuse
                delivery.refused[index] = MessageSizeTooLargeError(
                    f"The message is {size} bytes when serialized, over the producer's "
                    f"max_request_size of {MAX_REQUEST_SIZE}"
                )
                continue
            await batches.add(index, message, headers)
        await batches.queue_all()
    except KafkaError as error:
        queued = batches.queued_indexes()
        delivery.failed.update(
            (index, error)
            for index in range(len(messages))
            if index not in queued and index not in delivery.refused
        )
    futures = [future for _, future in batches.queued]
    results = await asyncio.gather(*futures, return_exceptions=True)
    for (indexes, _), result in zip(batches.queued, results, strict=True):
        if isinstance(result, BaseException):
            delivery.failed.update(dict.fromkeys(indexes, result))
        else:
            delivery.acked.update(dict.fromkeys(indexes, result.partition))
    return delivery


async def ensure_topics(settings: Settings, topics: list[str]) -> list[str]:
    """Create the topics that do not exist yet, and wait until all have leaders (one just
    created, by us or by another process, may not yet); return the names created."""
    wanted = list(dict.fromkeys(topics))
    async with started(Admin(settings)) as admin:
        existing = set(await admin.client.list_topics())
        missing = [topic for topic in wanted if topic not in existing]
        if missing:
            new = [
                NewTopic(topic, settings.topic_partitions, settings.topic_replication)
                for topic in missing
            ]
            # Another process may create one between our list and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.client.create_topics(new)
        await _until_led(admin, wanted, settings.kafka.request_timeout)
        return missing


async def _until_led(admin: Admin, topics: list[str], seconds: float) -> None:
    """Wait until every partition of `topics` has a leader in the metadata, or
    `seconds` pass. A consumer that subscribes sooner sees no partitions, and is
    assigned none until its next metadata refresh, minutes later (after a broker
    restart the controller takes a moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        described = await admin.client.describe_topics(topics)
        if len(described) == len(topics) and all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
            for topic in described
        ):
            return
        await asyncio.sleep(0.1)
