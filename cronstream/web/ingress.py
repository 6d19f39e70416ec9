"""POST /events: one envelope or a JSON array of them -> 202 {"ids": [...]}.

Closed by default: 403 unless CRONSTREAM_INGRESS_TOKEN is set (then it needs the
bearer token) or CRONSTREAM_INGRESS_OPEN opens it on a loopback address.

A body is validated with `publish`'s code (a body is what a line of a publish file is,
or an array of those) and nothing is sent unless every event is valid; 202 only once
Kafka acknowledged them all. Bad input is a 4xx naming the event (index) and field,
never a 500; the scanners' own type is refused (422). At most
CRONSTREAM_HTTP_MAX_INGRESS bodies are read at once, each within
CRONSTREAM_HTTP_BODY_TIMEOUT and CRONSTREAM_INGRESS_MAX_BYTES.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, NamedTuple

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cronstream import publish
from cronstream.config.settings import Settings, env_var
from cronstream.events.envelope import (
    SYNC_REQUIRED,
    WHOLE_VALUE,
    EnvelopeError,
    json_object,
    strict_loads,
)
from cronstream.kafka.clients import MAX_REQUEST_SIZE
from cronstream.publish import MAX_LISTED_ERRORS
from cronstream.runtime.untrusted import shown
from cronstream.web.access import Access
from cronstream.web.health import CHECK_TIMEOUT
from cronstream.web.producer import SharedProducer
from cronstream.web.responses import errors_reply, json_reply

log = logging.getLogger(__name__)

INGRESS_SOURCE = "cronstream-http"  # the source of events that do not name one
# Events in one POST: validating them is CPU work, done in a thread so the engine's
# loop (heartbeats, batches) keeps running, and bounded so one body cannot hog it.
MAX_EVENTS = 10_000
JSON_TYPES = ("application/json", "text/json")
SCANNER_TYPES = (SYNC_REQUIRED,)  # the scanners' own: its events come from the tables


class Ingress:
    def __init__(self, settings: Settings, access: Access, producer: SharedProducer) -> None:
        self.settings = settings
        self.access = access
        self.producer = producer
        self.busy = 0

    async def events(self, request: web.Request) -> web.Response:
        settings = self.settings
        if settings.ingress_token is None and not settings.ingress_open:
            closed = f"POST /events is closed: set {env_var('ingress_token')} and send it"
            return errors_reply(403, [f"{closed} as Authorization: Bearer <token>"])
        if not self.access.authorized(request):
            return self.access.challenge()
        if request.content_type not in JSON_TYPES:
            return errors_reply(415, ["send the events as Content-Type: application/json"])
        limit = settings.ingress_max_bytes
        too_large = f"the body is over {limit} bytes ({env_var('ingress_max_bytes')})"
        if request.content_length is not None and request.content_length > limit:
            return errors_reply(413, [too_large])
        if self.busy >= settings.http_max_ingress:
            busy = f"{settings.http_max_ingress} requests are being handled; retry shortly"
            return errors_reply(503, [busy], **{"Retry-After": "1"})
        self.busy += 1  # bounds the bodies held at once, hence memory
        try:
            return await self._ingest(request, too_large)
        finally:
            self.busy -= 1

    async def _ingest(self, request: web.Request, too_large: str) -> web.Response:
        seconds = self.settings.http_body_timeout
        try:
            async with asyncio.timeout(seconds):
                body = await request.read()  # aiohttp stops at client_max_size
        except web.HTTPRequestEntityTooLarge:
            return errors_reply(413, [too_large])
        except TimeoutError:
            late = f"the body did not arrive within {seconds:g}s"
            response = errors_reply(408, [f"{late} ({env_var('http_body_timeout')})"])
            response.force_close()
            return response
        accepted, errors = await asyncio.to_thread(parse_events, body)
        if errors:
            return errors_reply(400, errors)
        scanners = [
            _error(index, EnvelopeError("type", f"'{a.type}' is the scanners' own type"))
            for index, a in enumerate(accepted)
            if a.type in SCANNER_TYPES
        ]
        if scanners:
            return errors_reply(422, scanners[:MAX_LISTED_ERRORS])
        return await self._send([(a.id, a.record) for a in accepted])

    async def _send(self, records: list[tuple[str, publish.PublishLine]]) -> web.Response:
        unavailable = {"Retry-After": "5"}
        producer: AIOKafkaProducer | None = None
        try:
            async with asyncio.timeout(self.settings.request_timeout + CHECK_TIMEOUT):
                producer = await self.producer.get()
                result = await publish.send(
                    producer, self.settings.sync_topic, (record for _, record in records)
                )
        except (TimeoutError, KafkaError, OSError) as error:
            reason = "no answer in time" if isinstance(error, TimeoutError) else repr(error)
            log.warning("POST /events: Kafka unavailable: %s", reason)
            await self.producer.drop(producer)
            return errors_reply(503, [f"Kafka unavailable: {shown(reason)}"], **unavailable)
        if result.failed:
            log.warning("POST /events: %d of %d not sent", len(result.failed), len(records))
            # After a refused batch aiokafka's idempotent producer may never send to that
            # partition again: the next request gets a new one.
            await self.producer.drop(producer)
            body = {"errors": result.failed[:MAX_LISTED_ERRORS], "sent": result.sent}
            return json_reply(503, body, **unavailable)
        return json_reply(202, {"ids": [event_id for event_id, _ in records]})


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
