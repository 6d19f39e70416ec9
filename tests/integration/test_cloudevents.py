"""A worker on a CloudEvents topic: binary and structured records, headers set by hand as
the Kafka protocol binding lays them out or written by the reference SDK's bindings, reach
the projection; malformed ones reach the dead-letter topic, each with the reason naming the
format and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cloudevents.core.bindings import kafka as core_kafka
from cloudevents.core.v1.event import CloudEvent as CoreEvent
from cloudevents.v1 import kafka as v1_kafka
from cloudevents.v1.http import CloudEvent as V1Event

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from tests.integration.workers import (
    WorkerProcess,
    assert_dead_lettered,
    external_worker,
    send_records,
    wait_until_at_end,
)

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, Headers]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
STRUCTURED: Headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def attributes(kind: str, key: int, version: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{key}-{version}",
        "source": "/crm",
        "type": f"com.example.customer.{kind}",
        "subject": str(key),
        "time": f"2027-01-01T00:00:{version:02d}Z",
        "entity": "customers",
        "entityversion": version,
    } | extra


def binary(kind: str, key: int, version: int, data: Any = None, **extra: Any) -> Record:
    headers = [(f"ce_{name}", str(value).encode()) for name, value in attributes(
        kind, key, version, **extra
    ).items()]  # fmt: skip
    if data is None:
        return None, headers
    return json.dumps(data).encode(), [*headers, ("content-type", b"application/json")]


def structured(kind: str, key: int, version: int, data: Any, headers: Headers) -> Record:
    event = attributes(kind, key, version) | {"datacontenttype": "application/json", "data": data}
    return json.dumps(event).encode(), headers


@pytest.fixture
def worker(
    cli_env: dict[str, str], engine: str, topic: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    process = external_worker(cli_env, engine, f"{topic}.ce:cloudevents", tmp_path)
    yield process
    process.stop()


async def test_a_cloudevents_topic_projects_both_modes_and_dead_letters_malformed_records(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    topic = f"{settings.sync_topic}.ce"
    # One key: every record in one partition, in this order, at these offsets.
    records: list[Record] = [
        binary("created", 1, 1, {"name": "Ada"}),
        structured("updated", 1, 2, {"name": "Ada L."}, STRUCTURED),
        structured("created", 2, 1, {"name": "Bo"}, []),  # no content-type header: forgiven
        binary("deleted", 2, 2),  # binary mode, no value: no data
        binary("created", 3, 1, {"name": "Cy"}, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
        (b"[]", [("content-type", b"application/cloudevents-batch+json")]),
        binary("created", 5, 1, {"name": "no subject"}, subject=""),
        (json.dumps(attributes("created", 5, 1, specversion="0.3")).encode(), STRUCTURED),
        (b"plain text", [*binary("created", 5, 1)[1], ("content-type", b"text/plain")]),
        (None, [(n, b"\xff" if n == "ce_time" else v) for n, v in binary("created", 5, 1)[1]]),
        (b'{"no": "cloud event"}', []),
        structured("created", 4, 1, {"name": "after the garbage"}, STRUCTURED),
    ]
    garbage = {
        5: "invalid CloudEvent: field '<content-type>': batches are not supported",
        6: "invalid CloudEvent: field 'subject': String should have at least 1 character",
        7: "invalid CloudEvent: field 'specversion': must be 1.0, found '0.3'",
        8: "invalid CloudEvent: field 'datacontenttype': 'text/plain' is not JSON",
        9: "invalid CloudEvent: field 'time': header ce_time is not UTF-8",
        10: "invalid CloudEvent: field 'specversion': is missing: not a CloudEvent",
    }
    await clients.ensure_topics(settings, [topic])
    await send_records(settings, [clients.Message(topic, v, b"k", h) for v, h in records])

    worker.start()
    await wait_until_at_end(settings, worker, topic, 30)
    connection = await asyncpg.connect(database_url)
    try:
        projected = {
            r["key"]: (r["version"], r["deleted"], json.loads(r["payload"]), r["event_id"])
            for r in await connection.fetch(
                "SELECT key, version, deleted, payload, event_id FROM entity_projection "
                "WHERE entity = 'customers'"
            )
        }
        times = dict(
            await connection.fetch(
                "SELECT key, occurred_at FROM entity_projection WHERE entity = 'customers'"
            )
        )
        recorded = await connection.fetch('SELECT "offset", error FROM dead_letters')
    finally:
        await connection.close()
    assert projected == {
        "1": (2, False, {"name": "Ada L."}, "evt-1-2"),
        "2": (2, True, {}, "evt-2-2"),
        "3": (1, False, {"name": "Cy"}, "evt-3-1"),
        "4": (1, False, {"name": "after the garbage"}, "evt-4-1"),
    }
    assert times["1"] == datetime(2027, 1, 1, 0, 0, 2, tzinfo=UTC)
    # The traceparent extension's trace id is the event's: the batch line lists it.
    assert any(TRACE in entry.get("trace_ids", []) for entry in worker.log_entries("batch applied"))

    assert sorted(r["offset"] for r in recorded) == sorted(garbage)
    await assert_dead_lettered(settings, topic, garbage)


SDK_MODES = [
    (binding, mode, content_type)
    for binding in ("v1", "core")
    for mode in ("binary", "structured")
    for content_type in (None, "application/json")
]
PER_MODE = 6


def sdk_record(
    binding: str, mode: str, content_type: str | None, key: str, version: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """One event as the SDK's `binding` writes it: (value, Kafka key, headers)."""
    attributes: dict[str, Any] = {
        "id": f"evt-{key}",
        "source": "/crm",
        "type": "com.example.customer.updated",
        "subject": key,
        "entity": "customers",
        "partitionkey": key,
    }
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    data = {"name": f"customer {key}"}
    if binding == "v1":
        # The v1 binding writes headers with str.encode: every attribute a string. Its
        # to_binary reads datacontenttype unconditionally, so "none" is an explicit None.
        attributes |= {"time": "2027-01-01T00:00:01Z", "entityversion": str(version)}
        if mode == "binary":
            attributes.setdefault("datacontenttype", None)
        event = V1Event(attributes, data)
        message = (v1_kafka.to_binary if mode == "binary" else v1_kafka.to_structured)(event)
        headers, kafka_key, value = message.headers, message.key, message.value
    else:
        attributes |= {"time": datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC), "entityversion": version}
        core_event = CoreEvent(attributes, data)
        to = core_kafka.to_binary_event if mode == "binary" else core_kafka.to_structured_event
        core_message = to(core_event)
        headers, kafka_key, value = core_message.headers, core_message.key, core_message.value
    encoded_key = kafka_key.encode() if isinstance(kafka_key, str) else kafka_key
    encoded_value = value.encode() if isinstance(value, str) else value
    return encoded_value, encoded_key, list(headers.items())


async def test_events_the_reference_sdk_writes_reach_the_projection_in_both_modes(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    # The SDK's v1 binding (cloudevents.kafka in SDK 1.x) writes a structured event with a
    # datacontenttype under content-type: application/json; no ce_ header means structured.
    topic = f"{settings.sync_topic}.ce"
    expected: dict[str, int] = {}
    messages: list[clients.Message] = []
    for binding, mode, content_type in SDK_MODES:
        for n in range(PER_MODE):
            key = f"{binding}-{mode}-{'typed' if content_type else 'untyped'}-{n}"
            version = 10 + n
            value, kafka_key, headers = sdk_record(binding, mode, content_type, key, version)
            messages.append(clients.Message(topic, value, kafka_key, headers))
            expected[key] = version
    # After them, a JSON value that is no CloudEvent under the same content-type: still refused.
    messages.append(
        clients.Message(topic, b'{"name": "x"}', b"x", [("content-type", b"application/json")])
    )
    await clients.ensure_topics(settings, [topic])
    await send_records(settings, messages)

    worker.start()
    await wait_until_at_end(settings, worker, topic, 60)
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT key, version, payload FROM entity_projection WHERE entity = 'customers'"
        )
        recorded = await connection.fetch("SELECT topic, error FROM dead_letters")
    finally:
        await connection.close()
    assert {r["key"]: r["version"] for r in rows} == expected
    assert all(json.loads(r["payload"]) == {"name": f"customer {r['key']}"} for r in rows)
    assert [(r["topic"], "not a CloudEvent" in r["error"]) for r in recorded] == [(topic, True)]
