from __future__ import annotations

import io

from cronstream.publish import check, read_lines


def test_check_counts_valid_lines_and_names_bad_ones() -> None:
    stream = io.StringIO(
        '{"type": "sync_required", "entity": "a", "key": 1, "payload": {}}\n'
        "\n"
        '{"type": "sync_required", "entity": "a", "key": 2}\n'
        "[]\n"
        '{"type": "sync_required", "entity": "a", "key": 3, "payload": {}, "source": "crm"}\n'
    )
    valid, errors = check(stream, source="default")
    assert valid == 2
    assert [str(e) for e in errors] == [
        "line 3: field 'payload': Field required",
        "line 4: the value is JSON list, not an object",
    ]


def test_missing_source_takes_the_default_and_given_source_wins() -> None:
    stream = io.StringIO(
        '{"type": "t", "entity": "a", "key": 1, "payload": {}}\n'
        '{"type": "t", "entity": "a", "key": 2, "payload": {}, "source": "crm"}\n'
    )
    sources = [parsed.source for _, parsed in read_lines(stream, "cli")]  # type: ignore[union-attr]
    assert sources == ["cli", "crm"]


def test_lines_follow_the_workers_rules_and_get_a_trace_id_when_they_have_none() -> None:
    complete = (
        '{"id": "e1", "type": "t", "source": "s", "entity": "a", "key": "1", '
        '"occurred_at": "2027-01-01T00:00:00Z", "payload": {}}'
    )
    stream = io.StringIO(
        complete + "\n" + complete.replace('"payload": {}', '"payload": {"x": NaN}') + "\n"
    )
    parsed = [p for _, p in read_lines(stream, "cli")]
    first, second = parsed
    assert first.trace_id  # type: ignore[union-attr]
    assert "NaN is not a JSON number" in str(second)


def test_a_line_nested_absurdly_deep_is_an_invalid_line_not_a_crash() -> None:
    stream = io.StringIO('{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    valid, errors = check(stream, source="cli")
    assert valid == 0
    assert [str(e) for e in errors] == ["line 1: the value is nested too deeply"]
