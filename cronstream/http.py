"""The HTTP surface of `cronstream worker` and `cronstream run` (aiohttp).

    GET  /healthz  200 while the process runs
    GET  /readyz   200 when Postgres and Kafka answer and the engine's partitions are
                   assigned and positioned; 503 with the reasons otherwise
    GET  /metrics  Prometheus text (prometheus-client's default registry)
    POST /events   one envelope or a JSON array of them -> 202 {"ids": [...]}
    GET  /         the status page (cronstream/status_page.py)

POST /events validates with `publish`'s code (a body is what a line of a publish file
is, or an array of those) and sends nothing unless every event is valid; 202 only once
Kafka acknowledged them all. Bad input is a 4xx naming the event (index) and field,
never a 500. The bearer token is compared in constant time and never logged.

Off when CRONSTREAM_HTTP_PORT is 0. The status page is collected at most every
`STATUS_CACHE_SECONDS`, so a refreshing browser cannot hammer Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import prometheus_client
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cronstream import db, kafka, publish, status, status_page
from cronstream.envelope import WHOLE_VALUE, EnvelopeError, json_object, strict_loads
from cronstream.errors import CronstreamError
from cronstream.settings import Settings, env_var
from cronstream.untrusted import shown

if TYPE_CHECKING:
    from cronstream.streams.worker import Readiness

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds for each readiness check of Postgres and Kafka
STATUS_CACHE_SECONDS = 2.0
INGRESS_SOURCE = "cronstream-http"  # the source of events that do not name one
MAX_LISTED_ERRORS = 50
# Events in one POST: validating them is CPU work, done in a thread so the engine's
# loop (heartbeats, batches) keeps running, and bounded so one body cannot hog it.
MAX_EVENTS = 10_000
SHUTDOWN_SECONDS = 3.0
READY_CACHE_SECONDS = 1.0  # probes share one check: a probe storm costs no connections
JSON_TYPES = ("application/json", "text/json")


class PortInUse(CronstreamError):
    """The HTTP surface could not bind its address; the message names the variable."""


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def _errors(status: int, errors: list[Any], **headers: str) -> web.Response:
    return _json(status, {"errors": errors}, **headers)


class Surface:
    """The aiohttp app and its server; `start` and `stop` around the engine's run."""

    def __init__(self, settings: Settings, readiness: Readiness) -> None:
        self.settings = settings
        self.readiness = readiness
        self.runner: web.AppRunner | None = None
        self.producer: AIOKafkaProducer | None = None
        self.producer_lock = asyncio.Lock()
        self.status: status.Status | None = None
        self.status_at = 0.0
        self.status_lock = asyncio.Lock()
        self.ready: list[str] = []
        self.ready_at = float("-inf")
        self.ready_lock = asyncio.Lock()

    def app(self) -> web.Application:
        # Bodies over the limit are refused by aiohttp while reading: never held whole.
        app = web.Application(client_max_size=self.settings.ingress_max_bytes)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/events", self.events)
        app.router.add_get("/", self.page)
        return app

    async def start(self) -> None:
        """Serve on http_host:http_port (nothing when the port is 0); PortInUse if taken."""
        host, port = self.settings.http_host, self.settings.http_port
        if port == 0:
            return
        # In-flight requests get a few seconds at shutdown, not aiohttp's default minute.
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            await runner.cleanup()
            raise PortInUse(
                f"cannot serve HTTP on {host}:{port}: {error.strerror or error}; set "
                f"{env_var('http_port')} to a free port, or to 0 to turn HTTP off"
            ) from None
        self.runner = runner
        log.info("HTTP on http://%s:%d/", host, port, extra={"host": host, "port": port})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        async with self.ready_lock:  # concurrent probes share one check
            if time.monotonic() - self.ready_at > READY_CACHE_SECONDS:
                self.ready = await self._check_ready()
                self.ready_at = time.monotonic()
            reasons = self.ready
        if reasons:
            return _json(503, {"ready": False, "reasons": reasons})
        return _json(200, {"ready": True, "reasons": []})

    async def _check_ready(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        engine = self.readiness()
        postgres, kafka_reason = await asyncio.gather(self._postgres(), self._kafka())
        reasons = [
            f"{name}: {reason}"
            for name, reason in (
                ("engine", engine),
                ("postgres", postgres),
                ("kafka", kafka_reason),
            )
            if reason is not None
        ]
        return reasons

    async def _postgres(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with db.connection(self.settings) as connection:
                    await connection.fetchval("SELECT 1")
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g}s"
        except (db.DatabaseUnavailable, *db.CONNECT_ERRORS) as error:
            return str(error) if isinstance(error, db.DatabaseUnavailable) else type(error).__name__
        return None

    async def _kafka(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                producer = await self._producer()
                await producer.client.fetch_all_metadata()  # one metadata request
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g}s"
        except (KafkaError, OSError) as error:
            return f"{type(error).__name__}: {shown(str(error))}"
        return None

    async def _producer(self) -> AIOKafkaProducer:
        """The ingress producer, started on first use (Kafka may be down when we start)."""
        async with self.producer_lock:
            if self.producer is None:
                producer = kafka.producer(self.settings)
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self.producer = producer
            return self.producer

    async def _drop_producer(self, failed: AIOKafkaProducer | None) -> None:
        """Stop `failed` if it is still the current producer (a concurrent request may
        have replaced it already: that one is left alone)."""
        async with self.producer_lock:
            if failed is None or self.producer is not failed:
                return
            self.producer = None
        with contextlib.suppress(Exception):
            await failed.stop()

    async def metrics(self, request: web.Request) -> web.Response:
        body = prometheus_client.generate_latest()
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def page(self, request: web.Request) -> web.Response:
        async with self.status_lock:  # concurrent requests share one collection
            if self.status is None or time.monotonic() - self.status_at > STATUS_CACHE_SECONDS:
                self.status = await status.collect(self.settings, self.settings.jobs_file)
                self.status_at = time.monotonic()
            shown_status = self.status
        return web.Response(text=status_page.render(shown_status), content_type="text/html")

    async def events(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if request.content_type not in JSON_TYPES:
            return _errors(415, ["send the events as Content-Type: application/json"])
        limit = self.settings.ingress_max_bytes
        too_large = f"the body is over {limit} bytes ({env_var('ingress_max_bytes')})"
        if request.content_length is not None and request.content_length > limit:
            return _errors(413, [too_large])
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _errors(413, [too_large])
        records, errors = await asyncio.to_thread(parse_events, body)
        if errors:
            return _errors(400, errors)
        return await self._send(records)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        token = self.settings.ingress_token
        if token is None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # surrogateescape: the header's own bytes, whatever they are, compared whole.
        offered = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered, expected):
            return None
        challenge = 'Bearer realm="cronstream"'
        message = "missing or wrong bearer token (Authorization: Bearer <token>)"
        return _errors(401, [message], **{"WWW-Authenticate": challenge})

    async def _send(self, records: list[tuple[str, publish.Record]]) -> web.Response:
        unavailable = {"Retry-After": "5"}
        producer: AIOKafkaProducer | None = None
        try:
            async with asyncio.timeout(self.settings.request_timeout + CHECK_TIMEOUT):
                producer = await self._producer()
                result = await publish.send(
                    producer, self.settings.sync_topic, (record for _, record in records)
                )
        except (TimeoutError, KafkaError, OSError) as error:
            reason = "no answer in time" if isinstance(error, TimeoutError) else repr(error)
            log.warning("POST /events: Kafka unavailable: %s", reason)
            await self._drop_producer(producer)
            return _errors(503, [f"Kafka unavailable: {shown(reason)}"], **unavailable)
        if result.failed:
            log.warning("POST /events: %d of %d not sent", len(result.failed), len(records))
            # After a refused batch aiokafka's idempotent producer may never send to that
            # partition again: the next request gets a new one.
            await self._drop_producer(producer)
            body = {"errors": result.failed[:MAX_LISTED_ERRORS], "sent": result.sent}
            return _json(503, body, **unavailable)
        return _json(202, {"ids": [event_id for event_id, _ in records]})


def _error(index: int | None, error: EnvelopeError) -> dict[str, Any]:
    return {"index": index, "field": error.field, "message": str(error)}


def parse_events(body: bytes) -> tuple[list[tuple[str, publish.Record]], list[dict[str, Any]]]:
    """(event id, record) of each event of a body, or the errors naming index and field.

    A body is one envelope, exactly as a line of a `publish` file, or a JSON array of
    them; id, occurred_at, trace_id and source may be omitted, as there.
    """
    if not body.strip():
        empty = EnvelopeError(WHOLE_VALUE, "is empty: send an envelope or an array of them")
        return [], [_error(None, empty)]
    items: list[bytes | EnvelopeError] = [body]
    if body.lstrip()[:1] == b"[":
        try:
            array = strict_loads(body)
        except (ValueError, RecursionError):
            try:
                json_object(body)  # raises, saying why in publish's words
            except EnvelopeError as error:
                return [], [_error(None, error)]
            raise  # unreachable: the same parser failed just now
        if not array:
            return [], [_error(None, EnvelopeError(WHOLE_VALUE, "is an empty array: no events"))]
        if len(array) > MAX_EVENTS:
            too_many = f"holds {len(array)} events: send at most {MAX_EVENTS} per request"
            return [], [_error(None, EnvelopeError(WHOLE_VALUE, too_many))]
        items = [_item(element) for element in array]
    records: list[tuple[str, publish.Record]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, EnvelopeError):
                raise item
            event, value = publish.parse_line(item, INGRESS_SOURCE)
            records.append((event.id, publish.record(index, event, value)))
        except EnvelopeError as error:
            errors.append(_error(index, error))
            if len(errors) == MAX_LISTED_ERRORS:  # enough to fix; the rest is not checked
                break
    return records, errors


def _item(element: Any) -> bytes | EnvelopeError:
    """An array element as the bytes of one envelope, to validate as a publish line."""
    try:
        return json.dumps(element).encode()
    except RecursionError:
        return EnvelopeError(WHOLE_VALUE, "is nested too deeply")
