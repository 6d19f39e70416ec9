"""A dead-letter topic's record read back: our headers, the original record, or a
one-line reason for a record that is no dead letter."""

from __future__ import annotations

import pytest

from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.runtime.untrusted import shown_bytes
from cronstream.streams import deadletter
from cronstream.streams.dlq import Garbled, read_letter


def dead_letter_record(original: ConsumedRecord, extra: list[tuple[str, bytes]]) -> ConsumedRecord:
    ours = deadletter.headers(DeadLetter(original, "gate closed", 3), "group")
    headers = (*deadletter.sendable_headers(original), *ours, *extra)
    return ConsumedRecord("orders.dlq", 1, 9, original.value, original.key, headers)


def test_a_dead_letter_gives_back_the_original_record_and_why() -> None:
    weird = b"\xff".decode("utf-8", "surrogateescape")  # a header name that is not UTF-8
    original = ConsumedRecord("orders", 2, 41, b"v", b"k", (("ce_id", b"1"), (weird, b"x")))
    letter = read_letter(dead_letter_record(original, []))
    assert letter.original == original
    assert (letter.consumer, letter.reason, letter.attempts) == ("group", "gate closed", 3)
    assert letter.key == ("group", "orders", 2, 41)
    assert letter.omitted is None


def test_a_null_value_comes_back_null_and_a_dead_letter_of_a_dead_letter_is_the_outer_one() -> None:
    inner = dead_letter_record(ConsumedRecord("orders", 0, 5, None, b"k"), [])
    null = (deadletter.VALUE_OMITTED, b"the original value is null")
    letter = read_letter(dead_letter_record(ConsumedRecord("orders", 0, 5, b"", b"k"), [null]))
    assert letter.original.value is None and letter.omitted is None
    outer = read_letter(dead_letter_record(inner._replace(topic="orders.dlq", offset=9), []))
    assert (outer.original.topic, outer.original.offset) == ("orders.dlq", 9)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((), "no dlq.original.topic header"),
        (((deadletter.TOPIC, b"\xff"),), "dlq.original.topic is not UTF-8"),
        (((deadletter.TOPIC, b"a b"),), "is not a topic name"),
        (
            ((deadletter.TOPIC, b"t"), (deadletter.CONSUMER, b"c"), (deadletter.PARTITION, b"1")),
            "no dlq.original.offset header",
        ),
        (
            (
                (deadletter.TOPIC, b"t"),
                (deadletter.CONSUMER, b"c"),
                (deadletter.PARTITION, b"-1"),
                (deadletter.OFFSET, b"3"),
            ),
            "dlq.original.partition is not a number: '-1'",
        ),
    ],
)
def test_garbage_gets_a_one_line_reason(
    headers: tuple[tuple[str, bytes], ...], reason: str
) -> None:
    with pytest.raises(Garbled, match=reason.replace(".", r"\.")) as garbled:
        read_letter(ConsumedRecord("orders.dlq", 0, 0, b"junk", None, headers))
    assert "\n" not in str(garbled.value)


def test_bytes_are_shown_safely() -> None:
    assert shown_bytes(None) == "(null)"
    assert shown_bytes("caf\u00e9 {\n}".encode()) == "caf\u00e9 {\n}"
    assert shown_bytes(b"\x1b[31mred\xff") == "\\x1b[31mred\\xff"
    assert shown_bytes(b"x" * 10, limit=4) == "xxxx... (10 bytes in all)"
