"""`cronstream dlq`: dead letters of an envelope topic and of a Debezium topic, listed by
reason, shown, re-driven once their handler is fixed (exactly once, by their original
topic's format), a still-failing one recorded again, and garbage in the dead-letter
topic skipped with a line; `replay` of a Debezium topic's `.dlq` reads Debezium."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from cronstream.cli.compose import build_registry
from cronstream.config.settings import Settings
from cronstream.config.topics import TopicFormat
from cronstream.events.envelope import Event
from cronstream.handlers.records import from_aiokafka
from cronstream.kafka import clients
from cronstream.streams.batches import BatchLoop
from tests.integration.commands import run_cli
from tests.integration.dlq_handlers import (
    DEBEZIUM_ENTITY,
    ENVELOPE_TYPE,
    GATE_TABLE,
    debezium_create,
)
from tests.integration.kafka_helpers import read_all
from tests.integration.workers import send_records

HANDLERS = "tests.integration.dlq_handlers"


@pytest.fixture
def dbz(topic: str) -> str:
    return f"{topic}.dbz"


@pytest.fixture
def dlq_settings(settings: Settings, dbz: str) -> Settings:
    formats = {dbz: TopicFormat("debezium", DEBEZIUM_ENTITY)}
    return settings.model_copy(update={"external_topics": formats, "handler_attempts": 1})


@pytest.fixture
def env(cli_env: dict[str, str], dbz: str) -> dict[str, str]:
    return cli_env | {
        "CRONSTREAM_EXTERNAL_TOPICS": f"{dbz}:debezium:{DEBEZIUM_ENTITY}",
        "CRONSTREAM_HANDLERS": HANDLERS,
        "CRONSTREAM_HANDLER_ATTEMPTS": "1",
    }


def thing(key: str, **payload: Any) -> Event:
    return Event.new(type=ENVELOPE_TYPE, source="t", entity="thing", key=key, payload=payload)


async def dead_letter_three(settings: Settings, connection: asyncpg.Connection, dbz: str) -> None:
    """Two envelopes and a Debezium create go through the worker's BatchLoop while the
    gate is closed: all three are dead-lettered (Kafka and dead_letters)."""
    await connection.execute(GATE_TABLE)
    topic = settings.sync_topic
    await clients.ensure_topics(settings, [topic, dbz, f"{topic}.dlq", f"{dbz}.dlq"])
    key, value = debezium_create(7, 100, name="w\u00e9")
    events = [thing("1", n=1), thing("2", poison=True)]
    await send_records(
        settings,
        [
            *[clients.Message(topic, e.encode(), e.kafka_key, e.kafka_headers) for e in events],
            clients.Message(dbz, value, key, [("origin", b"\xff\xfe not utf-8")]),
        ],
    )
    consumed = [*await read_all(settings, topic, 2), *await read_all(settings, dbz, 1)]
    batches = BatchLoop(settings, build_registry([HANDLERS]), asyncio.Event())
    async with clients.started(batches):
        outcome = await batches.apply([from_aiokafka(m) for m in consumed])
    assert outcome is not None and len(outcome.dead_letters) == 3


def cli(args: list[str], env: dict[str, str], code: int = 0) -> str:
    done = run_cli(args, env)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


async def counts(connection: asyncpg.Connection) -> list[int]:
    rows = await connection.fetch("SELECT applied FROM event_counts ORDER BY event_id")
    return [row["applied"] for row in rows]


async def test_dead_letters_are_listed_shown_and_redriven_exactly_once(
    dlq_settings: Settings, connection: asyncpg.Connection, env: dict[str, str], dbz: str
) -> None:
    topic = dlq_settings.sync_topic
    await dead_letter_three(dlq_settings, connection, dbz)
    # Garbage in the dead-letter topic: no headers at all, and a garbled offset.
    garbage = [
        clients.Message(f"{topic}.dlq", b"junk", None, []),
        clients.Message(
            f"{topic}.dlq",
            b"{}",
            None,
            [
                ("dlq.original.topic", topic.encode()),
                ("dlq.original.partition", b"0"),
                ("dlq.original.offset", b"-x"),
                ("dlq.consumer", b"c"),
            ],
        ),
    ]
    await send_records(dlq_settings, garbage)

    listed = json.loads(run_cli(["dlq", "list", "--json"], env).stdout)
    by_topic = {(c["topic"], c["unresolved"]) for c in listed}
    assert by_topic == {(topic, 2), (dbz, 1)}, listed
    assert all("gate closed" in c["reason"] for c in listed)
    assert "gate closed" in cli(["dlq", "list", "--topic", dbz], env)

    letter = await connection.fetchrow("SELECT * FROM dead_letters WHERE topic = $1", dbz)
    shown = cli(["dlq", "show", str(letter["id"])], env)
    assert f"{dbz}[{letter['partition']}]@{letter['offset']} (debezium)" in shown
    assert f"in {dbz}.dlq[" in shown  # where the dead letter sits in its topic
    assert "gate closed" in shown
    assert '"id": 7' in shown and "w\u00e9" in shown  # the value, UTF-8 shown as text
    assert "origin: \\xff\\xfe not utf-8" in shown  # a header value that is not UTF-8, escaped

    dry = cli(["dlq", "redrive", "--dry-run"], env)
    assert "would re-drive 3 of 3" in dry, dry
    assert "no dlq.original.topic header" in dry and "is not a number: '-x'" in dry
    assert await connection.fetchval("SELECT count(*) FROM dlq_redrives") == 0
    assert (
        await connection.fetchval("SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL")
        == 3
    )
    assert await counts(connection) == []

    await connection.execute("UPDATE gate SET fixed = true")  # the cause is fixed
    out = cli(["dlq", "redrive"], env, code=1)  # one of them still fails
    assert "2 applied and resolved, 1 failed again" in out, out
    assert await counts(connection) == [1, 1]  # the good envelope and the Debezium create
    rows = await connection.fetch(
        "SELECT topic, error, resolved_at IS NOT NULL AS resolved, failed_at IS NOT NULL AS again "
        "FROM dead_letters ORDER BY id"
    )
    assert [(r["topic"], r["resolved"], r["again"]) for r in rows] == [
        (topic, True, False),
        (topic, False, True),
        (dbz, True, False),
    ]
    assert "still poisoned" in rows[1]["error"]
    audit = await connection.fetchrow("SELECT * FROM dlq_redrives")
    assert (audit["selected"], audit["applied"], audit["failed_again"]) == (3, 2, 1)
    assert (audit["status"], audit["unreadable"], audit["missing"]) == ("succeeded", 2, 0)
    assert json.loads(audit["filters"]) == {}
    # Recorded again: a second copy of the poisoned one, with its new reason.
    copies = await read_all(dlq_settings, f"{topic}.dlq", 5)
    reasons = [dict(m.headers).get("dlq.error", b"") for m in copies]
    assert len(copies) == 5 and sum(b"still poisoned" in r for r in reasons) == 1, reasons

    again = cli(["dlq", "redrive"], env, code=1)
    assert "0 applied and resolved, 1 failed again" in again, again
    assert await counts(connection) == [1, 1]  # nothing applied twice
    assert "still poisoned" in cli(["dlq", "list", "--reason", "POISONED"], env)
    assert "no dead letters" not in cli(["dlq", "list", "--all", "--topic", dbz], env)
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert [(r["topic"], r["unresolved"]) for r in status["unresolved_by_reason"]] == [(topic, 1)]


async def test_replay_of_a_debezium_dead_letter_topic_reads_debezium(
    dlq_settings: Settings, connection: asyncpg.Connection, env: dict[str, str], dbz: str
) -> None:
    await dead_letter_three(dlq_settings, connection, dbz)
    await connection.execute("UPDATE gate SET fixed = true")
    out = cli(["replay", "--topic", f"{dbz}.dlq", "--from-beginning"], env)
    assert "read as debezium" in out and "1 applied" in out, out
    assert await counts(connection) == [1]


async def test_show_and_redrive_refuse_what_is_not_there(env: dict[str, str]) -> None:
    assert "no dead letter 999" in cli(["dlq", "show", "999"], env, code=1)
    assert "no unresolved dead letters match" in cli(["dlq", "redrive", "--reason", "x"], env)
    assert "not an ISO 8601" in cli(["dlq", "redrive", "--since", "yesterday"], env, code=2)
