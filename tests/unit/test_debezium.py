"""The Debezium adapter on records shaped as Kafka Connect's JsonConverter writes them.

Records captured from a real connector (tests/fixtures/debezium) are checked in
test_debezium_fixtures.py; these cover the rules and the records it must refuse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cronstream.events.debezium import Adapter, key_text
from cronstream.events.envelope import EnvelopeError

SOURCE = {
    "version": "3.6.1.Final",
    "connector": "postgresql",
    "name": "dbz",
    "ts_ms": 1795000000123,
    "snapshot": "false",
    "db": "shop",
    "schema": "public",
    "table": "customers",
    "txId": 730,
    "lsn": 26372440,
}


def change(op: str, before: Any = None, after: Any = None, **source: Any) -> bytes:
    value = {
        "before": before,
        "after": after,
        "source": SOURCE | source,
        "op": op,
        "ts_ms": 1795000000999,
    }
    return json.dumps(value).encode()


def with_schema(payload: bytes) -> bytes:
    # The wrapper JsonConverter writes with schemas.enable=true; the schema is not read.
    wrapped = {"schema": {"type": "struct", "fields": []}, "payload": json.loads(payload)}
    return json.dumps(wrapped).encode()


KEY = b'{"id":7}'
ROW = {"id": 7, "name": "Ada", "tier": 2}


def test_a_create_maps_every_field() -> None:
    event = Adapter()(change("c", after=ROW), KEY, [("trace_id", b"t-1")])
    assert event is not None
    assert event.type == "customers_created"
    assert event.entity == "customers"
    assert event.key == "7"
    assert event.version == 26372440
    assert event.occurred_at == datetime.fromtimestamp(1795000000.123, UTC)
    assert event.payload == ROW
    assert event.source == "debezium/postgresql/dbz"
    assert event.trace_id == "t-1"


@pytest.mark.parametrize(
    ("op", "suffix"),
    [("c", "created"), ("u", "updated"), ("r", "snapshot"), ("d", "deleted")],
)
def test_each_op_has_its_type(op: str, suffix: str) -> None:
    before, after = (ROW, None) if op == "d" else (None, ROW)
    event = Adapter()(change(op, before=before, after=after), KEY, [])
    assert event is not None and event.type == f"customers_{suffix}"
    assert event.payload == ROW


def test_a_delete_carries_before_or_nothing() -> None:
    event = Adapter()(change("d", before={"id": 7, "name": None}), KEY, [])
    assert event is not None and event.payload == {"id": 7, "name": None}
    bare = Adapter()(change("d"), KEY, [])
    assert bare is not None and bare.payload == {} and bare.type == "customers_deleted"


def test_a_tombstone_is_no_event() -> None:
    assert Adapter()(None, KEY, []) is None


def test_schemas_enabled_gives_the_same_event() -> None:
    plain = Adapter()(change("u", after=ROW), KEY, [])
    wrapped = Adapter()(with_schema(change("u", after=ROW)), with_schema(KEY), [])
    assert plain is not None and wrapped is not None
    assert plain.model_dump(exclude={"trace_id"}) == wrapped.model_dump(exclude={"trace_id"})


def test_the_id_is_the_same_on_redelivery_and_differs_per_change() -> None:
    adapter = Adapter()
    first = adapter(change("u", after=ROW), KEY, [])
    again = adapter(change("u", after=ROW, ts_ms=1795000009999), KEY, [])
    later = adapter(change("u", after=ROW, lsn=26372441), KEY, [])
    other_row = adapter(change("u", after=ROW), b'{"id":8}', [])
    assert first is not None and again is not None and later is not None
    assert other_row is not None
    assert first.id == again.id
    assert len({first.id, later.id, other_row.id}) == 3


def test_a_connector_without_an_lsn_has_no_version_and_an_id_from_its_position() -> None:
    mysql = {"connector": "mysql", "file": "binlog.000003", "pos": 1234, "row": 0}
    source = {name: value for name, value in (SOURCE | mysql).items() if name != "lsn"}
    value = json.dumps({"op": "c", "after": ROW, "source": source}).encode()
    event = Adapter()(value, KEY, [])
    moved = Adapter()(value.replace(b'"pos": 1234', b'"pos": 1299'), KEY, [])
    assert event is not None and moved is not None
    assert event.version is None
    assert event.id != moved.id


def test_microseconds_are_used_where_the_connector_sends_them() -> None:
    event = Adapter()(change("c", after=ROW, ts_us=1795000000123456), KEY, [])
    assert event is not None
    assert event.occurred_at == datetime(2026, 11, 18, 11, 6, 40, 123456, tzinfo=UTC)
    late = Adapter()(change("c", after=ROW, ts_ms=253402300799999), KEY, [])
    assert late is not None and late.occurred_at.microsecond == 999000  # exact, no float


def test_the_topic_entity_overrides_the_table() -> None:
    event = Adapter("customer")(change("c", after=ROW), KEY, [])
    assert event is not None
    assert (event.entity, event.type) == ("customer", "customer_created")


@pytest.mark.parametrize(
    ("columns", "text"),
    [
        ({"id": 7}, "7"),
        ({"id": "a-1"}, "a-1"),
        ({"id": True}, "true"),
        ({"id": 1.5}, "1.5"),
        ({"tenant": 3, "id": 7}, '{"tenant":3,"id":7}'),
    ],
)
def test_keys_render_as_the_scanners_render_them(columns: dict[str, Any], text: str) -> None:
    assert key_text(columns) == text


BAD = [
    # (value, key, field named in the error)
    (b"not json", KEY, "<value>"),
    (b"[1]", KEY, "<value>"),
    (change("x", after=ROW), KEY, "op"),
    (json.dumps({"after": ROW, "source": SOURCE}).encode(), KEY, "op"),
    (change("t"), KEY, "op"),
    (json.dumps({"op": ["c"], "after": ROW, "source": SOURCE}).encode(), KEY, "op"),
    (change("m"), KEY, "op"),
    (json.dumps({"op": "c", "after": ROW}).encode(), KEY, "source"),
    (change("c", after=ROW, table=None), KEY, "source.table"),
    (change("c"), KEY, "after"),
    (change("c", after=[1, 2]), KEY, "after"),
    (change("c", after=ROW, ts_ms="soon"), KEY, "source.ts_ms"),
    (change("c", after=ROW, ts_ms=10**20), KEY, "source.ts_ms"),
    (change("c", after=ROW, ts_us=10**30), KEY, "source.ts_us"),
    (change("c", after=ROW, lsn="0/1A2B"), KEY, "source.lsn"),
    (change("c", after=ROW, lsn=-1), KEY, "source.lsn"),
    (change("c", after=ROW, lsn=True), KEY, "source.lsn"),
    (change("c", after=ROW), None, "<key>"),
    (change("c", after=ROW), b"{}", "<key>"),
    (change("c", after=ROW), b'{"id":null}', "<key>"),
    (change("c", after=ROW), b"\xff", "<key>"),
    (change("c", after=ROW, table="no spaces allowed"), KEY, "source.table"),
    (change("c", after=ROW, table="t" * 181), KEY, "source.table"),
    (change("c", after={"name": "nul\u0000"}), KEY, "<value>"),
    (json.dumps({"schema": {}, "payload": [1]}).encode(), KEY, "payload"),
]


@pytest.mark.parametrize(("value", "key", "field"), BAD)
def test_unmappable_records_name_the_field(value: bytes, key: bytes | None, field: str) -> None:
    with pytest.raises(EnvelopeError) as raised:
        Adapter()(value, key, [])
    assert raised.value.field == field, str(raised.value)
