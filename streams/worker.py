"""The stream worker: a faust app whose agent applies batches under the checkpoint protocol.

faust facts this module is built around (faust-streaming 0.15.3):
- a stream acks each event in a `finally` after `yield`, even when the body raised, and
  commits acked offsets every 2.8 s. So the agent uses `Stream.noack_take`, which acks
  nothing, and acks each event itself only after its fate is durable in Postgres.
- faust commits a partition only up to its first unacked offset, so every event whose
  fate is durable (applied, dropped as a duplicate, dead-lettered) is acked.
- an exception escaping the agent loop would crash the agent with a batch in hand, so
  transient failures are retried here, with backoff, until they pass or the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import asyncpg
import faust
from faust.streams import Stream
from faust.types import EventT, StreamT

from cronstream import db, kafka, shutdown
from cronstream.settings import Settings
from handlers.checkpoints import (
    BatchApplier,
    Outcome,
    Record,
    RetryPolicy,
    Router,
)
from handlers.projection import project
from handlers.registry import Handler, Registry
from streams import consumer
from streams.deadletter import DeadLetterProducer

log = logging.getLogger(__name__)


def router(settings: Settings, registry: Registry) -> Router:
    """Registered handlers by type; the projection for unregistered external change events."""
    external = set(settings.external_topics)

    def route(topic: str, event_type: str) -> Handler | None:
        handler = registry.get(event_type)
        if handler is None and topic in external:
            return project
        return handler

    return route


def to_record(event: EventT[Any]) -> Record:
    message = event.message
    headers = message.headers or []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        value=message.value,
        key=message.key,
        headers=tuple((name, _bytes(value)) for name, value in pairs),
    )


def _bytes(value: bytes | str | None) -> bytes:
    if value is None:  # Kafka allows a header without a value
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


class BatchLoop:
    """One agent's state: its Postgres connection and the batch retry loop."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.dead_letters = DeadLetterProducer(settings)
        self.applier = BatchApplier(
            consumer=settings.consumer_group,
            route=router(settings, registry),
            dead_letter=self.dead_letters,
            dlq_topic=settings.dlq_topic,
            retry=RetryPolicy(
                settings.handler_attempts, settings.retry_backoff, settings.retry_backoff_max
            ),
        )
        self.connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        await self.dead_letters.start()

    async def stop(self) -> None:
        await self.dead_letters.stop()
        if self.connection is not None:
            await self.connection.close(timeout=5)

    async def _connection(self) -> asyncpg.Connection:
        if self.connection is None or self.connection.is_closed():
            self.connection = await db.connect(self.settings)
        return self.connection

    def _drop_connection(self) -> None:
        if self.connection is not None:
            self.connection.terminate()
            self.connection = None

    async def apply(self, records: Sequence[Record]) -> Outcome:
        """Apply a batch, retrying while Postgres or Kafka are unavailable."""
        attempt = 0
        while True:
            try:
                return await self.applier.apply(await self._connection(), records)
            except Exception as error:
                # Postgres or Kafka unavailable (ConnectionLost, DatabaseUnavailable,
                # KafkaError), or anything else: nothing of the batch was committed, and
                # an exception escaping the agent would crash it with the batch in hand.
                attempt += 1
                delay = self.applier.retry.delay(min(attempt, 16))
                log.warning(
                    "batch of %d not applied, retrying in %.1fs: %s: %s",
                    len(records),
                    delay,
                    type(error).__name__,
                    error,
                )
                self._drop_connection()
                await asyncio.sleep(delay)


def create_app(settings: Settings, registry: Registry) -> faust.App:
    """The faust app: one agent on the sync_required and external topics, one group."""
    app = faust.App(
        settings.consumer_group,
        broker=";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")),
        broker_credentials=kafka_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        datadir=str(Path(tempfile.gettempdir()) / f"cronstream-{settings.consumer_group}"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(settings.session_timeout / 5, 0.5),
        broker_rebalance_timeout=max(settings.session_timeout * 2, 20.0),
        broker_request_timeout=max(settings.request_timeout, settings.session_timeout * 2),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    consumer.install(app, settings)
    topic = app.topic(
        *settings.input_topics,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.topic_partitions,
    )
    loop = BatchLoop(settings, registry)

    async def ack(stream: Stream[Any], events: Sequence[EventT[Any]]) -> None:
        # Every event of an applied batch is decided: applied, duplicate or dead-lettered.
        for event in events:
            await stream.ack(event)

    async def apply_batch(stream: Stream[Any], events: Sequence[EventT[Any]]) -> None:
        batch = asyncio.ensure_future(loop.apply([to_record(e) for e in events]))
        try:
            # Shielded: on shutdown the in-flight batch commits or rolls back whole,
            # within the shutdown timeout, rather than being cut off.
            outcome = await asyncio.shield(batch)
        except asyncio.CancelledError:
            if await _drain(batch, settings.shutdown_timeout / 2) is not None:
                await ack(stream, events)
            raise
        await ack(stream, events)
        log.info(
            "batch applied",
            extra={
                "events": len(events),
                "applied": outcome.applied,
                "duplicates": outcome.duplicates,
                "dead_lettered": len(outcome.dead_letters),
            },
        )

    async def apply_events(agent_stream: StreamT[Any]) -> None:
        stream = cast(Stream[Any], agent_stream)  # noack_take is on the concrete class
        await loop.start()
        try:
            async for events in stream.noack_take(
                settings.batch_size, within=settings.batch_max_wait
            ):
                try:
                    await apply_batch(stream, events)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # faust would restart the agent on the same stream with this batch
                    # unacked while later batches move the checkpoints past it: its
                    # events would then be dropped as duplicates. Exit instead; Kafka
                    # redelivers from its committed offset, which is never ahead.
                    log.critical("unexpected error in the batch loop; exiting", exc_info=True)
                    logging.shutdown()
                    os._exit(70)
        finally:
            await loop.stop()

    app.agent(topic, name="cronstream.apply", concurrency=1)(apply_events)
    return app


async def _drain(batch: asyncio.Future[Outcome], seconds: float) -> Outcome | None:
    """Let the in-flight batch finish within `seconds`; None when it was abandoned."""
    try:
        return await asyncio.wait_for(batch, seconds)
    except (Exception, asyncio.CancelledError) as error:
        log.warning("in-flight batch abandoned at shutdown, rolled back: %r", error)
        return None


def kafka_credentials(settings: Settings) -> Any:
    """faust's credentials object for the configured SASL / TLS options, if any."""
    options = kafka.connection_options(settings)
    context = options.get("ssl_context")
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class Worker(faust.Worker):
    """faust's worker, with a hard deadline once a shutdown signal arrived."""

    def __init__(self, app: faust.App, shutdown_timeout: float, **options: Any) -> None:
        super().__init__(app, **options)
        self.shutdown_timeout = shutdown_timeout

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            log.info(
                "%s received: draining, exiting within %.0fs", signal.name, self.shutdown_timeout
            )
            shutdown.start_watchdog(self.shutdown_timeout)
        super()._schedule_shutdown(signal)


def run(
    settings: Settings,
    registry: Registry,
    companion: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Create the topics, then run the worker until SIGINT or SIGTERM.

    `companion` runs beside the agent in the same loop (`cronstream run` puts the
    scheduler there) and is cancelled when the worker stops.
    """
    topics = settings.input_topics + [settings.dlq_topic(t) for t in settings.input_topics]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(kafka.ensure_topics(settings, topics))
    app = create_app(settings, registry)
    if companion is not None:
        app.task(companion)
    worker = Worker(
        app,
        settings.shutdown_timeout,
        loop=loop,
        loglevel=logging.getLevelName(logging.getLogger().level),
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.spinner = None  # a terminal spinner; worker output goes to logs
    worker.execute_from_commandline()
