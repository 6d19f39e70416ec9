"""A scanned row's value written directly (scan/values.py) decodes to the event Event.new
makes of the same row; any row it cannot vouch for is left to Event.new."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronstream.events.envelope import (
    SYNC_NAMESPACE,
    SYNC_REQUIRED,
    Event,
    decode,
    strict_loads,
    sync_event_id,
)
from cronstream.schedulers.scan.values import Envelopes

ENVELOPES = Envelopes("job-1", "trace-1")


def made_by_event_new(entity: Any, key: Any, version: Any, payload: str) -> Event:
    return Event.new(
        type=SYNC_REQUIRED,
        source="job-1",
        entity=entity,
        key=key,
        version=version,
        payload=strict_loads(payload),
        id="e-1",
        trace_id="trace-1",
    )


ROWS: list[tuple[Any, Any, Any, str]] = [
    ("item", "1", None, '{"id":1,"name":"item-1","note":"x"}'),
    ("item", 42, 7, '{"a":[1,2.5,-0,1e-7,12345678901234567890],"b":null,"c":true}'),
    ("a.b-c_D", 'quote " back \\ slash', 2**63 - 1, '{"s":"tab\\t nl\\n quote\\" é 日本 😀"}'),
    ("item", "é 日本 😀\x7f\u2028", 0, '{"nested":{"deeper":[{"x":{}}]}}'),
    ("item", "k" * 1000, None, '{"x": 1.0, "y": 1E+2}'),
    ("item", "x", None, '{"dup":1,"dup":2}'),
]


@pytest.mark.parametrize(("entity", "key", "version", "payload"), ROWS)
def test_a_value_written_directly_decodes_to_the_event_event_new_makes(
    entity: Any, key: Any, version: Any, payload: str
) -> None:
    value = ENVELOPES.value("e-1", entity, key, version, payload)
    assert value is not None
    direct = decode(value)
    expected = made_by_event_new(entity, key, version, payload)
    assert direct.model_dump(exclude={"occurred_at"}) == expected.model_dump(
        exclude={"occurred_at"}
    )
    assert direct.occurred_at.tzinfo is not None
    assert abs(direct.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert json.loads(value)["occurred_at"].endswith("Z")
    assert ENVELOPES.headers == expected.kafka_headers


LEFT_TO_EVENT_NEW: list[tuple[Any, Any, Any, Any]] = [
    ("bad entity", "1", None, "{}"),
    ("e" * 201, "1", None, "{}"),
    (None, "1", None, "{}"),
    ("item", "", None, "{}"),
    ("item", None, None, "{}"),
    ("item", "k" * 1001, None, "{}"),
    ("item", True, None, "{}"),
    ("item", "1", -1, "{}"),
    ("item", "1", 2**63, "{}"),
    ("item", "1", True, "{}"),
    ("item", "1", "5", "{}"),
    ("item", "1", None, None),
    ("item", "1", None, b"{}"),
    ("item", "1", None, "[]"),
    ("item", "1", None, '{"x": "\\u0000"}'),
    ("item", "1", None, '{"x": "\\u00e9"}'),
    ("item", "1", None, '{"x": 1e400}'),
    ("item", "1", None, '{"x": ' + "1" * 5000 + "}"),
    ("item", "1", None, '{"x": ' + "[" * 200 + "]" * 200 + "}"),
    ("item", "\ud800", None, "{}"),
]


@pytest.mark.parametrize(("entity", "key", "version", "payload"), LEFT_TO_EVENT_NEW)
def test_a_row_it_cannot_vouch_for_is_left_to_event_new(
    entity: Any, key: Any, version: Any, payload: Any
) -> None:
    assert ENVELOPES.value("e-1", entity, key, version, payload) is None


@pytest.mark.parametrize(("job", "trace_id"), [("", "t"), ("j" * 201, "t"), ("j", "")])
def test_a_job_or_trace_id_an_event_refuses_leaves_every_row_to_event_new(
    job: str, trace_id: str
) -> None:
    assert Envelopes(job, trace_id).value("e-1", "item", "1", None, "{}") is None


@pytest.mark.parametrize(
    ("entity", "key", "version"),
    [("customer", "42", 7), ("é", "日本", None), ("item", "x" * 500, "outbox:12")],
)
def test_sync_event_ids_are_uuid5s(entity: str, key: str, version: object) -> None:
    expected = uuid.uuid5(SYNC_NAMESPACE, f"{entity}\x1f{key}\x1f{version}")
    assert sync_event_id(entity, key, version) == str(expected)  # type: ignore[arg-type]
