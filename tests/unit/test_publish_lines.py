from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from cronstream.cli import app
from cronstream.events.envelope import decode
from cronstream.publish import PublishLine, check, read_lines, spooled

runner = CliRunner()

GOOD = b'{"type": "sync_required", "entity": "a", "key": 1, "payload": {}}\n'


def line(**fields: object) -> bytes:
    base: dict[str, object] = {"type": "t", "entity": "a", "key": 1, "payload": {}}
    return json.dumps(base | fields).encode() + b"\n"


def with_payload(payload_json: str) -> bytes:
    return b'{"type": "t", "entity": "a", "key": 1, "payload": ' + payload_json.encode() + b"}\n"


def test_check_counts_valid_lines_and_names_bad_ones() -> None:
    stream = io.BytesIO(
        GOOD
        + b"\n"
        + b'{"type": "sync_required", "entity": "a", "key": 2}\n'
        + b"[]\n"
        + b'{"type": "sync_required", "entity": "a", "key": 3, "payload": {}, "source": "crm"}\n'
    )
    checked = check(stream, source="default")
    assert (checked.valid, checked.invalid) == (2, 2)
    assert [str(e) for e in checked.errors] == [
        "line 3: field 'payload': Field required",
        "line 4: the value is JSON array, not an object",
    ]


def test_missing_source_takes_the_default_and_given_source_wins() -> None:
    stream = io.BytesIO(line() + line(source="crm"))
    records = [r for r in read_lines(stream, "cli") if isinstance(r, PublishLine)]
    assert [decode(r.value).source for r in records] == ["cli", "crm"]


def test_a_line_without_trace_id_gets_one_in_value_and_header() -> None:
    complete = line(id="e1", source="s", occurred_at="2027-01-01T00:00:00Z")
    (record,) = read_lines(io.BytesIO(complete), "cli")
    assert isinstance(record, PublishLine)
    trace_id = decode(record.value).trace_id
    assert trace_id and ("trace_id", trace_id.encode()) in record.headers


HOSTILE_LINES: list[tuple[bytes, str]] = [
    (b'{"type": "t", "entity": "a", "key": 1, "payload": {"x": "\xff"}}\n', "not UTF-8"),
    (b'{"type": "t", "payload": {"x": "\xff\xfe"}}\n', "not UTF-8"),
    (with_payload('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"), "nested too deeply"),
    (with_payload('{"x": ' + "[" * 256 + "]" * 256 + "}"), "nested more than 200 levels"),
    (with_payload('{"x": ' + "1" * 5000 + "}"), "not storable JSON"),
    (line(occurred_at="0001-01-01T00:00:00+14:00"), "field 'occurred_at': is out of range"),
    (line(occurred_at="9999-12-31T23:59:59-14:00"), "field 'occurred_at': is out of range"),
    (line(occurred_at=0), "field 'occurred_at': must be an RFC 3339 string"),
    (with_payload('{"x": NaN}'), "NaN is not a JSON number"),
    (with_payload('{"x": -Infinity}'), "-Infinity is not a JSON number"),
    (with_payload('{"x": 1e400}'), "number 1e400 is out of range"),
    (line(version="5"), "field 'version'"),
    (line(version=True), "field 'version'"),
    (line(version=5.0), "field 'version'"),
    (line(version=2**63), "field 'version'"),
    (with_payload('{"x": "\\u0000"}'), "contains \\u0000"),
    (with_payload('{"x": "\\ud800"}'), "lone surrogate"),
    (line(key="\ud800"), "lone surrogate"),
    (with_payload('{"x": "' + "a" * 10_000_000 + '"}'), "over the producer's limit"),
    (b"[]\n", "is JSON array, not an object"),
    (b'{"type": "t"\n', "is not JSON"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), HOSTILE_LINES, ids=[reason for _, reason in HOSTILE_LINES]
)
def test_a_hostile_line_is_refused_with_its_number_and_the_rest_checks(
    raw: bytes, reason: str
) -> None:
    spool = io.BytesIO()
    checked = check(io.BytesIO(GOOD + raw + GOOD), source="cli", spool=spool)
    assert (checked.valid, checked.invalid) == (2, 1)
    (error,) = checked.errors
    assert error.line == 2
    assert reason in error.message
    assert [r.line for r in spooled(spool)] == [1, 3]


def test_spooled_records_are_the_validated_bytes_a_worker_decodes() -> None:
    spool = io.BytesIO()
    check(io.BytesIO(GOOD + line(key=2, version=9)), source="cli", spool=spool)
    records = list(spooled(spool))
    assert [r.key for r in records] == [b"a:1", b"a:2"]
    events = [decode(r.value) for r in records]
    assert [e.version for e in events] == [None, 9]
    assert len({e.id for e in events}) == 2
    assert list(spooled(spool)) == records  # reading again sends the same ids


def test_errors_past_the_limit_are_counted_not_kept() -> None:
    checked = check(io.BytesIO(b"x\n" * 500), source="cli", limit=50)
    assert (checked.valid, checked.invalid, len(checked.errors)) == (0, 500, 50)


HOSTILE_PAYLOAD_OPTIONS: list[tuple[str, str]] = [
    ('{"x": NaN}', "NaN is not a JSON number"),
    ('{"x": Infinity}', "Infinity is not a JSON number"),
    ('{"x": 1e400}', "out of range"),
    ('{"x": "\\u0000"}', "contains \\u0000"),
    ('{"x": "\\udc80"}', "lone surrogate"),
    ('{"x": ' + "1" * 5000 + "}", "not storable JSON"),
    ("[1]", "JSON object"),
    ("{", "is not JSON"),
    ('{"x": "' + "a" * 2_000_000 + '"}', "over the producer's limit"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    HOSTILE_PAYLOAD_OPTIONS,
    ids=[reason for _, reason in HOSTILE_PAYLOAD_OPTIONS],
)
def test_single_event_payload_follows_the_same_rules(payload: str, reason: str) -> None:
    # Refused before any connection: the bootstrap address would not answer anyway.
    options = ["--entity", "a", "--key", "1", "--payload", payload]
    result = runner.invoke(app, ["--kafka-bootstrap", "127.0.0.1:1", "publish", *options])
    assert result.exit_code == 2, result.output
    assert reason in result.output
    assert "Traceback" not in result.output
