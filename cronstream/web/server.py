"""The HTTP surface of `cronstream worker` and `cronstream run` (aiohttp).

    GET  /healthz  200 while the process runs
    GET  /readyz   200 when Postgres and Kafka answer and the engine's partitions are
                   assigned and positioned; 503 naming what is not, and why only to
                   whom may see details
    GET  /metrics  Prometheus text (prometheus-client's default registry)
    POST /events   one envelope or a JSON array of them -> 202 {"ids": [...]}
    GET  /         the status page (cronstream/status/page.py)

Closed by default: POST /events is 403 unless CRONSTREAM_INGRESS_TOKEN is set (then it
needs the bearer token, as / and the reasons of /readyz do) or CRONSTREAM_INGRESS_OPEN
opens it on a loopback address; a non-loopback address without a token does not start.
A Host header not in the allow-list is refused (421) except on /healthz, /metrics and
/readyz, which probes reach by any name: a web page whose name was rebound to
127.0.0.1 cannot post events or read the page. The bearer token is compared in constant
time and never logged.

POST /events validates with `publish`'s code (a body is what a line of a publish file
is, or an array of those) and sends nothing unless every event is valid; 202 only once
Kafka acknowledged them all. Bad input is a 4xx naming the event (index) and field,
never a 500; the scanners' own type is refused (422). At most
CRONSTREAM_HTTP_MAX_INGRESS bodies are read at once, each within
CRONSTREAM_HTTP_BODY_TIMEOUT and CRONSTREAM_INGRESS_MAX_BYTES; connections are capped
and given deadlines by `limits.Guard`.

Off when CRONSTREAM_HTTP_PORT is 0. The status page is collected at most every
`STATUS_CACHE_SECONDS`, so a refreshing browser cannot hammer Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import prometheus_client
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cronstream import publish
from cronstream.config.settings import Settings, SettingsError, env_var, host_name
from cronstream.errors import CronstreamError
from cronstream.events.envelope import (
    SYNC_REQUIRED,
    WHOLE_VALUE,
    EnvelopeError,
    json_object,
    strict_loads,
)
from cronstream.kafka import clients
from cronstream.kafka.clients import MAX_REQUEST_SIZE
from cronstream.pg import connections
from cronstream.runtime.untrusted import shown
from cronstream.status import collect, page
from cronstream.web import limits

if TYPE_CHECKING:
    from cronstream.streams.worker import Readiness

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds for each readiness check of Postgres and Kafka
STATUS_CACHE_SECONDS = 2.0
INGRESS_SOURCE = "cronstream-http"  # the source of events that do not name one
MAX_LISTED_ERRORS = 50
# Events in one POST: validating them is CPU work, done in a thread so the engine's
# loop (heartbeats, batches) keeps running, and bounded so one body cannot hog it.
MAX_EVENTS = 10_000
SHUTDOWN_SECONDS = 3.0
# After answering a request whose body was not read (refused, timed out), aiohttp reads
# and drops the rest this long, so the client gets the answer rather than a reset.
LINGER_SECONDS = 2.0
READY_CACHE_SECONDS = 1.0  # probes share one check: a probe storm costs no connections
JSON_TYPES = ("application/json", "text/json")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = ("/healthz", "/metrics", "/readyz")  # probes and Prometheus use any name
SCANNER_TYPES = (SYNC_REQUIRED,)  # the scanners' own: its events come from the tables


class PortInUse(CronstreamError):
    """The HTTP surface could not bind its address; the message names the variable."""


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def _errors(status: int, errors: list[Any], **headers: str) -> web.Response:
    return _json(status, {"errors": errors}, **headers)


def is_loopback(host: str) -> bool:
    name = host_name(host).strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(settings: Settings) -> None:
    """Refuse a surface reachable from the network without a token (SettingsError)."""
    host = settings.http_host
    if settings.http_port == 0 or settings.ingress_token is not None or is_loopback(host):
        return
    raise SettingsError(
        f"{env_var('http_host')}={host} is reachable from the network: set "
        f"{env_var('ingress_token')} (POST /events, / and /readyz details need it), or "
        "bind a loopback address"
    )


class Surface:
    """The aiohttp app and its server; `start` and `stop` around the engine's run."""

    def __init__(self, settings: Settings, readiness: Readiness) -> None:
        self.settings = settings
        self.readiness = readiness
        self.runner: web.AppRunner | None = None
        self.producer: AIOKafkaProducer | None = None
        self.producer_lock = asyncio.Lock()
        self.status: collect.Status | None = None
        self.status_at = 0.0
        self.status_lock = asyncio.Lock()
        self.ready: list[tuple[str, str]] = []
        self.ready_at = float("-inf")
        self.ready_lock = asyncio.Lock()
        self.listener: asyncio.Server | None = None
        self.guard: limits.Guard | None = None
        self.ingress_busy = 0
        extra = settings.http_allowed_hosts
        self.hosts = frozenset([*LOOPBACK_NAMES, host_name(settings.http_host), *extra])

    def app(self) -> web.Application:
        # Bodies over the limit are refused by aiohttp while reading: never held whole.
        app = web.Application(
            client_max_size=self.settings.ingress_max_bytes, middlewares=[self.gate]
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/events", self.events)
        app.router.add_get("/", self.page)
        return app

    async def start(self) -> None:
        """Serve on http_host:http_port (nothing when the port is 0); PortInUse if taken."""
        settings = self.settings
        host, port = settings.http_host, settings.http_port
        if port == 0:
            return
        check_exposure(settings)
        # In-flight requests get a few seconds at shutdown, not aiohttp's default minute.
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=settings.http_keepalive_timeout,
            lingering_time=LINGER_SECONDS,
        )
        await runner.setup()
        assert runner.server is not None  # set by setup()
        guard = limits.Guard(
            runner.server, settings.http_max_connections, settings.http_header_timeout
        )
        try:
            # Our own listener rather than web.TCPSite: the guard is its protocol factory.
            listener = await asyncio.get_running_loop().create_server(guard, host, port)
        except OSError as error:
            await runner.cleanup()
            raise PortInUse(
                f"cannot serve HTTP on {host}:{port}: {error.strerror or error}; set "
                f"{env_var('http_port')} to a free port, or to 0 to turn HTTP off"
            ) from None
        self.runner, self.listener, self.guard = runner, listener, guard
        log.info("HTTP on http://%s:%d/", host, port, extra={"host": host, "port": port})
        if settings.ingress_token is None and settings.ingress_open:
            log.warning(
                "POST /events takes events from every local process without a token "
                "(%s=true); set %s instead",
                env_var("ingress_open"),
                env_var("ingress_token"),
            )

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()  # no new connections; the runner closes the open ones
            self.listener = None
        if self.guard is not None:
            self.guard.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: its headers arrived in time; its Host is one of ours."""
        if self.guard is not None:
            self.guard.started(request.protocol)
        if request.path not in ANY_HOST and not self._our_host(request):
            message = (
                f"Host {shown(request.headers.get('Host', ''))!r} is not a name of this "
                f"server: add it to {env_var('http_allowed_hosts')}"
            )
            return _errors(421, [message])
        return await handler(request)

    def _our_host(self, request: web.Request) -> bool:
        return host_name(request.headers.get("Host", "")) in self.hosts

    def _authorized(self, request: web.Request) -> bool:
        """The request may see details: it carries the token, or none is set."""
        token = self.settings.ingress_token
        if token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # surrogateescape: the header's own bytes, whatever they are, compared whole.
        offered = given.strip().encode("utf-8", "surrogateescape")
        return scheme.lower() == "bearer" and hmac.compare_digest(offered, expected)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        async with self.ready_lock:  # concurrent probes share one check
            if time.monotonic() - self.ready_at > READY_CACHE_SECONDS:
                self.ready = await self._check_ready()
                self.ready_at = time.monotonic()
            reasons = self.ready
        if not reasons:
            return _json(200, {"ready": True, "reasons": []})
        # Why names servers, users and databases: only for whom may see the page.
        if self._our_host(request) and self._authorized(request):
            return _json(503, {"ready": False, "reasons": [f"{n}: {why}" for n, why in reasons]})
        return _json(503, {"ready": False, "reasons": [name for name, _ in reasons]})

    async def _check_ready(self) -> list[tuple[str, str]]:
        """What is not ready and why; empty when all is."""
        engine = self.readiness()
        postgres, kafka_reason = await asyncio.gather(self._postgres(), self._kafka())
        return [
            (name, reason)
            for name, reason in (
                ("engine", engine),
                ("postgres", postgres),
                ("kafka", kafka_reason),
            )
            if reason is not None
        ]

    async def _postgres(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with connections.connection(self.settings) as connection:
                    await connection.fetchval("SELECT 1")
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g}s"
        except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
            return (
                str(error)
                if isinstance(error, connections.DatabaseUnavailable)
                else type(error).__name__
            )
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
                producer = clients.producer(self.settings)
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
        if not self._authorized(request):
            return self._challenge()
        async with self.status_lock:  # concurrent requests share one collection
            if self.status is None or time.monotonic() - self.status_at > STATUS_CACHE_SECONDS:
                self.status = await collect.collect(self.settings, self.settings.jobs_file)
                self.status_at = time.monotonic()
            shown_status = self.status
        return web.Response(text=page.render(shown_status), content_type="text/html")

    def _challenge(self) -> web.Response:
        challenge = 'Bearer realm="cronstream"'
        message = "missing or wrong bearer token (Authorization: Bearer <token>)"
        return _errors(401, [message], **{"WWW-Authenticate": challenge})

    async def events(self, request: web.Request) -> web.Response:
        settings = self.settings
        if settings.ingress_token is None and not settings.ingress_open:
            closed = f"POST /events is closed: set {env_var('ingress_token')} and send it"
            return _errors(403, [f"{closed} as Authorization: Bearer <token>"])
        if not self._authorized(request):
            return self._challenge()
        if request.content_type not in JSON_TYPES:
            return _errors(415, ["send the events as Content-Type: application/json"])
        limit = settings.ingress_max_bytes
        too_large = f"the body is over {limit} bytes ({env_var('ingress_max_bytes')})"
        if request.content_length is not None and request.content_length > limit:
            return _errors(413, [too_large])
        if self.ingress_busy >= settings.http_max_ingress:
            busy = f"{settings.http_max_ingress} requests are being handled; retry shortly"
            return _errors(503, [busy], **{"Retry-After": "1"})
        self.ingress_busy += 1  # bounds the bodies held at once, hence memory
        try:
            return await self._ingest(request, too_large)
        finally:
            self.ingress_busy -= 1

    async def _ingest(self, request: web.Request, too_large: str) -> web.Response:
        seconds = self.settings.http_body_timeout
        try:
            async with asyncio.timeout(seconds):
                body = await request.read()  # aiohttp stops at client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _errors(413, [too_large])
        except TimeoutError:
            late = f"the body did not arrive within {seconds:g}s"
            response = _errors(408, [f"{late} ({env_var('http_body_timeout')})"])
            response.force_close()
            return response
        accepted, errors = await asyncio.to_thread(parse_events, body)
        if errors:
            return _errors(400, errors)
        scanners = [
            _error(index, EnvelopeError("type", f"'{a.type}' is the scanners' own type"))
            for index, a in enumerate(accepted)
            if a.type in SCANNER_TYPES
        ]
        if scanners:
            return _errors(422, scanners[:MAX_LISTED_ERRORS])
        return await self._send([(a.id, a.record) for a in accepted])

    async def _send(self, records: list[tuple[str, publish.PublishLine]]) -> web.Response:
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


class Accepted(NamedTuple):
    """A valid event of a body, as its Kafka record."""

    id: str
    type: str
    record: publish.PublishLine


def parse_events(body: bytes) -> tuple[list[Accepted], list[dict[str, Any]]]:
    """Each event of a body as its record, or the errors naming index and field.

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
    records: list[Accepted] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, EnvelopeError):
                raise item
            if len(item) > MAX_REQUEST_SIZE:  # before it is parsed: Kafka would refuse it
                over = f"is {len(item)} bytes, over the producer's limit of {MAX_REQUEST_SIZE}"
                raise EnvelopeError(WHOLE_VALUE, over)
            event, value = publish.parse_line(item, INGRESS_SOURCE)
            records.append(
                Accepted(event.id, event.type, publish.PublishLine.of(index, event, value))
            )
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
