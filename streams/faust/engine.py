"""The faust engine: a checkpointed agent, for users who run cronstream handlers in their own
faust app (`add_agent`), and for `cronstream worker --engine faust` (`create_app`).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from faust.streams import Stream
from faust.types import TP, EventT, StreamT

from cronstream.config.settings import Settings
from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import ConsumedRecord, consumed
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients, health
from cronstream.runtime import metrics, shutdown
from cronstream.streams.batches import BatchLoop, log_batch
from cronstream.streams.faust import consumer
from cronstream.streams.positions import OffsetGaps
from cronstream.streams.worker import (
    Companion,
    CompanionFailed,
    Readiness,
    Serve,
    Surface,
    watched,
)

log = logging.getLogger(__name__)


def from_faust_event(event: EventT[Any]) -> ConsumedRecord:
    """A faust event's message as the protocol sees it, its headers as bytes."""
    message = event.message
    headers = message.headers or []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return consumed(message, ((name, _bytes(value)) for name, value in pairs))


def _bytes(value: bytes | str | None) -> bytes:
    if value is None:  # Kafka allows a header without a value
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def create_app(settings: Settings, registry: Registry) -> faust.App:
    """A faust app for `cronstream worker --engine faust`: the checkpointed agent alone."""
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
        # faust would wait for the in-flight batch before cancelling the agent, with no
        # bound of ours; the agent drains it itself, within half the shutdown timeout.
        stream_wait_empty=False,
    )
    add_agent(app, settings, registry)
    return app


def add_agent(app: faust.App, settings: Settings, registry: Registry) -> None:
    """Add the checkpointed agent to a faust app of your own, before it starts.

    The agent consumes `settings.input_topics` (raw bytes) and applies them through
    `registry`'s handlers under the checkpoint protocol. The app's consumer group must
    be `settings.consumer_group`: checkpoints are kept per group. It replaces the app's
    Consumer class with one that starts each partition at its checkpoint, and adds a
    task that logs Kafka outages in two lines (kafka/health.py).
    """
    # Where each partition's next event should be: a batch that starts past it is
    # counted and said, as the batch engine does with its polls.
    gaps = OffsetGaps()
    consumer.install(app, settings, gaps)
    topic = app.topic(
        *settings.input_topics,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.topic_partitions,
    )
    stopping = asyncio.Event()  # faust stops the agent by cancelling it; set when it ends
    batches = BatchLoop(settings, registry, stopping)

    async def ack(stream: Stream[Any], events: Sequence[EventT[Any]]) -> None:
        # Every event of an applied batch is decided: applied, duplicate or dead-lettered.
        for event in events:
            await stream.ack(event)

    async def apply_batch(stream: Stream[Any], events: Sequence[EventT[Any]]) -> None:
        gaps.count(by_partition(events))
        batch = asyncio.ensure_future(batches.apply([from_faust_event(e) for e in events]))
        try:
            # Shielded: on shutdown the in-flight batch commits or rolls back whole,
            # within the shutdown timeout, rather than being cut off.
            outcome = await asyncio.shield(batch)
        except asyncio.CancelledError:
            if await _drain(batch, settings.shutdown_timeout / 2) is not None:
                await ack(stream, events)
            raise
        if outcome is None:
            return
        await ack(stream, events)
        log_batch(len(events), outcome)
        record_lag(app.consumer, events)

    async def apply_events(agent_stream: StreamT[Any]) -> None:
        stream = cast(Stream[Any], agent_stream)  # noack_take is on the concrete class
        await batches.start()
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
            stopping.set()
            await batches.stop()

    app.agent(topic, name="cronstream.apply", concurrency=1)(apply_events)

    async def watch_kafka() -> None:  # "Kafka degraded" and "Kafka recovered", once each
        await health.watch(settings.kafka_bootstrap)

    app.task(watch_kafka)

    async def forget_lag(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        for tp in revoked:  # another worker reports them now
            metrics.forget_partition(tp.topic, tp.partition)
            gaps.expected.pop(TopicPartition(tp.topic, tp.partition), None)

    # mode types a receiver as (sender, *args, signal, **kwargs): this one names its args.
    app.on_partitions_revoked.connect(forget_lag)  # type: ignore[arg-type]


def by_partition(events: Sequence[EventT[Any]]) -> dict[TopicPartition, list[Any]]:
    """A batch's messages per partition, in their order."""
    found: dict[TopicPartition, list[Any]] = {}
    for event in events:
        message = event.message
        found.setdefault(TopicPartition(message.topic, message.partition), []).append(message)
    return found


def record_lag(consumer: Any, events: Sequence[EventT[Any]]) -> None:
    """Lag of the batch's partitions: the log end Kafka last reported minus the offset
    after the batch. Only partitions with records in the batch are measured: faust's
    position would cost a call into its consumer thread."""
    after = {event.message.tp: event.message.offset + 1 for event in events}
    for tp, offset in after.items():
        try:
            end = consumer.highwater(tp)
        except AssertionError:  # revoked meanwhile
            continue
        if end is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, tp.partition).set(max(end - offset, 0))


async def _drain(batch: asyncio.Future[Outcome | None], seconds: float) -> Outcome | None:
    """Let the in-flight batch finish within `seconds`; None when it was abandoned."""
    try:
        return await asyncio.wait_for(batch, seconds)
    except (Exception, asyncio.CancelledError) as error:
        log.warning("in-flight batch abandoned at shutdown, rolled back: %r", error)
        return None


def kafka_credentials(settings: Settings) -> Any:
    """faust's credentials object for the configured SASL / TLS options, if any."""
    options = clients.connection_options(settings)
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

    surface: Surface | None = None
    failure: BaseException | None = None

    def stop_failed(self, error: BaseException) -> None:
        """The scheduler beside it failed: stop as on SIGTERM, then exit with `error`."""
        if self.failure is None:
            self.failure = error
            shutdown.start_watchdog(self.shutdown_timeout)
            super()._schedule_shutdown(signal.SIGTERM)

    def on_worker_shutdown(self) -> None:
        # Called with the loop stopped, before faust stops the app.
        if self.surface is not None:
            self.loop.run_until_complete(self.surface.stop())


def readiness(app: faust.App) -> Readiness:
    """The faust engine's readiness: partitions assigned, and no rebalance under way
    (faust's consumer seeks them to their checkpoints while it rebalances)."""

    def ready() -> str | None:
        consumer = app._consumer  # not app.consumer, which would create one
        if consumer is None:
            return "starting"
        if app.rebalancing:
            return "rebalancing: partitions not yet positioned at their checkpoints"
        try:
            assigned = consumer.assignment()
        except Exception:  # its Kafka consumer is not started yet
            return "starting"
        return None if assigned else "no partitions assigned yet (or more workers than partitions)"

    return ready


def run_faust_worker(
    settings: Settings,
    registry: Registry,
    loop: asyncio.AbstractEventLoop,
    serve: Serve,
    companion: Companion | None = None,
) -> None:
    """Run the faust worker in `loop` until SIGINT or SIGTERM (streams/worker.py says what
    `serve` and `companion` are); CompanionFailed when the companion failed."""
    app = create_app(settings, registry)
    surface = serve(readiness(app))
    loop.run_until_complete(surface.start())  # a port in use ends the command before faust
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
    worker.surface = surface
    if companion is not None:
        app.task(watched(companion, worker.stop_failed))
    try:
        worker.execute_from_commandline()
    except SystemExit:  # how faust's worker ends, 0 included
        if worker.failure is not None:
            raise CompanionFailed.of(worker.failure) from None
        raise
