"""Dead-letter headers: the id a reader of `.dlq` drops resent copies by."""

from __future__ import annotations

import re

from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.streams import deadletter


def letter(
    topic: str = "orders",
    partition: int = 2,
    offset: int = 41,
    error: str = "no handler",
    attempts: int = 1,
) -> DeadLetter:
    record = ConsumedRecord(topic, partition, offset, b"k", b"v", (("trace_id", b"t"),))
    return DeadLetter(record, error, attempts)


def dlq_id(dead: DeadLetter, consumer: str = "cronstream") -> bytes:
    return dict(deadletter.headers(dead, consumer))[deadletter.ID]


def test_every_send_of_a_record_carries_the_same_id() -> None:
    """A crash between Kafka's ack and the COMMIT sends the letter again, maybe after
    more attempts and with another error: the copy must carry the same id."""
    first = dlq_id(letter(error="handler timed out", attempts=3))
    again = dlq_id(letter(error="handler failed: boom", attempts=1))
    assert first == again
    assert re.fullmatch(rb"[0-9a-f]{32}", first), first


def test_other_records_and_other_consumers_have_other_ids() -> None:
    ids = {
        dlq_id(letter()),
        dlq_id(letter(offset=42)),
        dlq_id(letter(partition=3)),
        dlq_id(letter(topic="orders.v2")),
        dlq_id(letter(), consumer="rebuild1"),  # another group's failure is a letter of its own
        dlq_id(letter(partition=24, offset=1)),  # the same digits, run together
    }
    assert len(ids) == 6


def test_the_id_is_stable_across_processes() -> None:
    """A hash of the text, not Python's per-process hash(): a restarted worker agrees.
    Pinned, because changing how it is made would let copies sent across an upgrade
    through."""
    assert deadletter.letter_id("cronstream", "orders", 2, 41) == (
        "37b9ea4b1229361fed43de6613b275ad"
    )
