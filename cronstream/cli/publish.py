"""`cronstream publish`: one event from options, or a JSONL file checked whole first."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Annotated

import typer

from cronstream import publish
from cronstream.cli.options import env_option, fail, settings_of
from cronstream.cli.progress import publish_progress
from cronstream.config.settings import Settings
from cronstream.events.envelope import SYNC_REQUIRED, EnvelopeError, Event, encoded, json_object
from cronstream.kafka import clients
from cronstream.publish import MAX_LISTED_ERRORS


def publish_command(
    ctx: typer.Context,
    topic: Annotated[
        str | None,
        env_option(
            "sync_topic",
            help="Topic to publish to. (default: cronstream.sync_required)",
        ),
    ] = None,
    event_type: Annotated[
        str, typer.Option("--type", help="Event type of a single event.")
    ] = SYNC_REQUIRED,
    entity: Annotated[str | None, typer.Option(help="Entity of a single event.")] = None,
    key: Annotated[str | None, typer.Option(help="Entity key of a single event.")] = None,
    payload: Annotated[str, typer.Option(help="JSON object: payload of a single event.")] = "{}",
    version: Annotated[
        int | None, typer.Option(min=0, help="Row version of a single event.")
    ] = None,
    trace_id: Annotated[
        str | None, typer.Option(help="Trace id of a single event. (default: a new one)")
    ] = None,
    source: Annotated[
        str, typer.Option(help="Source for events that do not name one.")
    ] = "cronstream-publish",
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="JSONL file of events, one envelope per line ('-' reads stdin). "
            "id, occurred_at, trace_id and source may be omitted.",
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Send the valid lines of a file even when some are invalid."),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar (only on a terminal).")
    ] = True,
) -> None:
    """Publish one event from options, or many from a JSONL file.

    Every line of a file is validated with a worker's rules and encoded before anything
    is sent (events over the producer's 1 MiB request size included); invalid lines are
    reported by number and nothing is sent unless --skip-invalid is given. The producer
    is idempotent with acks=all. An input with no events prints "nothing to publish" and
    connects to nothing.

    Exit codes: 0 all sent (lines skipped with --skip-invalid aside); 1 a send failed;
    2 invalid options or lines, or no valid line at all, --skip-invalid or not.
    """
    settings = settings_of(ctx)
    target = topic or settings.sync_topic
    if file is not None and (entity is not None or key is not None):
        fail("give either --file or --entity/--key, not both", 2)
    if file is None:
        if entity is None or key is None:
            fail("a single event needs --entity and --key (or use --file)", 2)
        record = single_event(event_type, entity, key, payload, version, trace_id, source)
        result = asyncio.run(send_all(settings, target, iter([record]), 1, False))
        report(target, result, skipped=0)
        return
    # Validated records wait here, so what is sent is exactly what was checked.
    with open_input(file) as stream, tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        try:
            checked = publish.check(stream, source, spool)
        except OSError as error:
            fail(f"cannot read {file}: {error.strerror or error}", 2)
        for line_error in checked.errors:
            typer.echo(f"invalid: {line_error}", err=True)
        if checked.invalid > len(checked.errors):
            typer.echo(f"invalid: ... and {checked.invalid - len(checked.errors)} more", err=True)
        if checked.invalid and not skip_invalid:
            fail(
                f"nothing sent: {checked.invalid} invalid line(s); fix them or pass --skip-invalid",
                2,
            )
        if checked.valid == 0:
            if checked.invalid:
                fail(f"nothing sent: all {checked.invalid} line(s) are invalid", 2)
            typer.echo("nothing to publish")
            return
        show = progress and sys.stderr.isatty()
        result = asyncio.run(
            send_all(settings, target, publish.spooled(spool), checked.valid, show)
        )
    report(target, result, skipped=checked.invalid)


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The file, or stdin, as bytes: each line's UTF-8 is checked with the line's number."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as error:  # only opening: errors of the caller's block are its own
        fail(f"cannot read {path}: {error.strerror}", 2)
    with stream:
        yield stream


def single_event(
    event_type: str,
    entity: str,
    key: str,
    payload: str,
    version: int | None,
    trace_id: str | None,
    source: str,
) -> publish.PublishLine:
    """The record of an event from options, checked by the rules for lines of a file."""
    try:
        body = json_object(payload)  # NaN, 1e400, \u0000 and the like refused, as in files
    except EnvelopeError as error:
        fail(f"--payload must be a JSON object Postgres can store; it {error.reason}", 2)
    try:
        event = Event.new(
            type=event_type,
            source=source,
            entity=entity,
            key=key,
            payload=body,
            version=version,
            trace_id=trace_id,
        )
        return publish.PublishLine.of(1, event, encoded(event))
    except EnvelopeError as error:
        fail(f"invalid event: {error}", 2)


async def send_all(
    settings: Settings,
    topic: str,
    records: Iterator[publish.PublishLine],
    total: int,
    show_progress: bool,
) -> publish.PublishResult:
    await clients.ensure_topics(settings, [topic])
    async with clients.started(clients.producer(settings)) as producer:
        with publish_progress(total, show_progress) as advance:
            return await publish.send(producer, topic, records, advance)


def report(topic: str, result: publish.PublishResult, skipped: int) -> None:
    partitions = ", ".join(f"{p}: {n}" for p, n in sorted(result.partitions.items()))
    typer.echo(
        f"sent {result.sent}, skipped {skipped}, failed {len(result.failed)}, "
        f"topic {topic}, partitions {{{partitions}}}"
    )
    for failure in result.failed[:MAX_LISTED_ERRORS]:
        typer.echo(f"failed: {failure}", err=True)
    if result.failed:
        raise typer.Exit(1)
