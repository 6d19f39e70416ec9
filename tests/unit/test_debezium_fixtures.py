"""The Debezium adapter on records a real connector wrote (tests/fixtures/debezium,
recorded by its capture.py), with the JsonConverter's schemas off and on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cronstream.events.debezium import Adapter
from cronstream.events.envelope import Event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"

# fixture -> (type, key, payload) of the event it must become
EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "snapshot_read": ("customers_snapshot", "1", {"id": 1, "name": "Ada", "tier": 1}),
    "create": ("customers_created", "2", {"id": 2, "name": "Grace", "tier": 2}),
    "update": ("customers_updated", "2", {"id": 2, "name": "Grace", "tier": 3}),
    # Default replica identity: a delete's `before` holds the key, the rest null.
    "delete": ("customers_deleted", "2", {"id": 2, "name": None, "tier": None}),
    "create_composite_key": (
        "order_lines_created",
        '{"order_id":7,"line":1}',
        {"order_id": 7, "line": 1, "qty": 5},
    ),
}


def record(name: str) -> tuple[bytes | None, bytes | None]:
    recorded = json.loads((FIXTURES / f"{name}.json").read_text())
    key, value = recorded["key"], recorded["value"]
    return (None if key is None else key.encode(), None if value is None else value.encode())


def source(value: bytes) -> dict[str, Any]:
    change = json.loads(value)
    return dict(change.get("payload", change)["source"])


def mapped(name: str) -> Event:
    key, value = record(name)
    event = Adapter()(value, key, [])
    assert event is not None
    return event


@pytest.mark.parametrize("schemas", ["", "_schemas"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_change_maps_to_its_event(name: str, schemas: str) -> None:
    event = mapped(name + schemas)
    _, value = record(name + schemas)
    assert value is not None
    recorded = source(value)
    assert (event.type, event.key, event.payload) == EXPECTED[name]
    assert event.entity == recorded["table"]
    assert event.version == recorded["lsn"]
    assert event.occurred_at == EPOCH + timedelta(microseconds=recorded["ts_us"])
    assert event.source == f"debezium/postgresql/{recorded['name']}"
    assert mapped(name + schemas).id == event.id  # re-delivered, the same id


@pytest.mark.parametrize("name", ["tombstone", "tombstone_schemas"])
def test_a_recorded_tombstone_is_no_event(name: str) -> None:
    key, value = record(name)
    assert value is None and key is not None
    assert Adapter()(value, key, []) is None


def test_the_changes_of_one_row_carry_increasing_versions() -> None:
    versions = [mapped(name).version or 0 for name in ("create", "update", "delete")]
    assert 0 < versions[0] < versions[1] < versions[2]


def test_every_fixture_is_checked() -> None:
    names = {path.stem for path in FIXTURES.glob("*.json")}
    checked = {n + s for n in EXPECTED for s in ("", "_schemas")}
    assert names == checked | {"tombstone", "tombstone_schemas"}
