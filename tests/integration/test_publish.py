"""`cronstream publish` against real Kafka: keys, headers, values, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cronstream.config.settings import Settings
from cronstream.events.envelope import decode
from tests.integration.commands import run_cli
from tests.integration.kafka_helpers import end_offsets, read_all, topic_exists


async def test_single_event_reaches_topic_with_key_headers_and_value(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    result = run_cli(
        [
            "publish",
            "--entity",
            "customer",
            "--key",
            "42",
            "--payload",
            '{"name": "Ada"}',
            "--version",
            "3",
            "--trace-id",
            "trace-abc",
            "--source",
            "crm",
        ],
        cli_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sent 1, skipped 0, failed 0")

    records = await read_all(settings, settings.sync_topic, expected=1)
    assert len(records) == 1
    record = records[0]
    assert record.key == b"customer:42"
    headers = dict(record.headers)
    assert headers["trace_id"] == b"trace-abc"
    assert headers["event_type"] == b"sync_required"
    event = decode(record.value)
    assert (event.type, event.entity, event.key, event.version) == (
        "sync_required",
        "customer",
        "42",
        3,
    )
    assert event.payload == {"name": "Ada"}
    assert event.source == "crm"
    assert event.trace_id == "trace-abc"


async def test_file_is_published_in_order_per_key_and_summarised(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = [
        {
            "type": "sync_required",
            "entity": "order",
            "key": i % 7,
            "version": i,
            "payload": {"n": i},
        }
        for i in range(300)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = run_cli(["publish", "--file", str(path)], cli_env)
    assert result.returncode == 0, result.stderr
    assert "sent 300, skipped 0, failed 0" in result.stdout

    records = await read_all(settings, settings.sync_topic, expected=300)
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        by_key.setdefault(record.key, []).append(decode(record.value).version or 0)
    assert len(by_key) == 7
    for versions in by_key.values():
        assert versions == sorted(versions), "one key's events must keep their order"
    offsets = await end_offsets(settings, settings.sync_topic)
    summary = ", ".join(f"{p}: {n}" for p, n in sorted(offsets.items()) if n)
    assert f"partitions {{{summary}}}" in result.stdout


async def test_bad_line_is_named_and_nothing_is_sent(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"type": "sync_required", "entity": "a", "key": 1, "payload": {}}\n'
        '{"type": "sync_required", "entity": "a", "key": 2, "payload": {}\n'
        '{"type": "sync_required", "entity": "a", "payload": {}}\n'
    )

    result = run_cli(["publish", "--file", str(path)], cli_env)
    assert result.returncode == 2
    assert "line 2: the value is not JSON" in result.stderr
    assert "line 3: field 'key'" in result.stderr
    assert "nothing sent" in result.stderr
    assert not await topic_exists(settings, settings.sync_topic) or not any(
        (await end_offsets(settings, settings.sync_topic)).values()
    )


async def test_skip_invalid_sends_the_valid_lines_from_stdin(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    stdin = "\n".join(
        [
            '{"type": "sync_required", "entity": "a", "key": 1, "payload": {}}',
            "garbage",
            "",
            '{"type": "sync_required", "entity": "a", "key": 2, "payload": {"x": 1}}',
        ]
    )
    result = run_cli(["publish", "--file", "-", "--skip-invalid"], cli_env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert "line 2: the value is not JSON" in result.stderr
    assert "sent 2, skipped 1, failed 0" in result.stdout
    records = await read_all(settings, settings.sync_topic, expected=2)
    assert sorted(record.key or b"" for record in records) == [b"a:1", b"a:2"]


async def test_unreachable_kafka_is_one_clear_error(cli_env: dict[str, str]) -> None:
    env = cli_env | {"CRONSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CRONSTREAM_REQUEST_TIMEOUT": "3"}
    result = run_cli(["publish", "--entity", "a", "--key", "1"], env, timeout=60)
    assert result.returncode == 1
    assert "error: Kafka:" in result.stderr
    assert "Traceback" not in result.stderr


def run_cli_bytes(
    args: list[str], env: dict[str, str], stdin: bytes
) -> subprocess.CompletedProcess[str]:
    """`run_cli` with stdin as bytes, which need not be UTF-8."""
    result = subprocess.run(
        [sys.executable, "-m", "cronstream", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


HOSTILE_INPUTS: list[tuple[bytes, str]] = [
    (b'{"type": "t", "entity": "a", "key": 1, "payload": {"x": "\xff"}}\n', "not UTF-8"),
    (b'{"type": "t", "entity": "a", "key": 1, "payload": {"x": "\\ud800"}}\n', "lone surrogate"),
    (b'{"type": "t", "entity": "a", "key": 1, "payload": {"x": NaN}}\n', "NaN"),
    (b'{"type": "t", "entity": "a", "key": 1, "payload": {}, "version": "5"}\n', "'version'"),
    (
        b'{"type": "t", "entity": "a", "key": 1, "payload": {"x": "' + b"a" * 10_000_000 + b'"}}\n',
        "over the producer's limit",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE_INPUTS, ids=[r for _, r in HOSTILE_INPUTS])
@pytest.mark.parametrize("via", ["file", "stdin"])
async def test_hostile_line_is_refused_by_number_before_anything_is_sent(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, raw: bytes, reason: str, via: str
) -> None:
    good = b'{"type": "t", "entity": "a", "key": 1, "payload": {}}\n'
    data = good + raw + good
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    if via == "file":
        result = run_cli(["publish", "--file", str(path)], cli_env)
    else:
        result = run_cli_bytes(["publish", "--file", "-"], cli_env, data)
    assert result.returncode == 2, result.stderr
    assert "invalid: line 2: " in result.stderr and reason in result.stderr
    assert "Traceback" not in result.stderr
    assert not await topic_exists(settings, settings.sync_topic)


async def test_skip_invalid_with_no_valid_line_fails_and_sends_nothing(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    result = run_cli(["publish", "--file", "-", "--skip-invalid"], cli_env, stdin="x\n[]\n")
    assert result.returncode == 2
    assert "nothing sent: all 2 line(s) are invalid" in result.stderr
    assert not await topic_exists(settings, settings.sync_topic)


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
async def test_empty_input_publishes_nothing_and_connects_to_nothing(
    cli_env: dict[str, str], tmp_path: Path, content: str
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    # An address nothing answers on: any connection attempt would fail the command.
    env = cli_env | {"CRONSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CRONSTREAM_REQUEST_TIMEOUT": "3"}
    result = run_cli(["publish", "--file", str(path)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing to publish"


def test_missing_input_file_is_named(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["publish", "--file", str(tmp_path / "nope.jsonl")], cli_env)
    assert result.returncode == 2
    assert "error: cannot read " in result.stderr and "nope.jsonl" in result.stderr
