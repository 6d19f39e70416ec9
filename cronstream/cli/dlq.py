"""`cronstream dlq list | show | redrive`: dead letters listed by reason, shown one by
one, and re-driven through the handlers once their cause is fixed (streams/dlq/)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cronstream.cli.compose import build_registry
from cronstream.cli.options import ExternalTopicsOption, HandlersOption, fail, settings_of
from cronstream.cli.progress import counting_progress
from cronstream.runtime import shutdown
from cronstream.runtime.instants import parse_instant
from cronstream.runtime.untrusted import shown, shown_bytes
from cronstream.streams import dlq

WIDTH = 200
SHOWN_LETTERS = 20  # a dry run lists this many, then counts the rest

dlq_app = typer.Typer(
    help="Dead letters: list them by reason, show one, re-drive them once the cause is fixed.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
TopicFilter = Annotated[str | None, typer.Option(help="Only dead letters of this input topic.")]
ReasonFilter = Annotated[
    str | None, typer.Option(help="Only dead letters whose reason contains this (any case).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@dlq_app.command("list")
def list_command(
    ctx: typer.Context,
    topic: TopicFilter = None,
    reason: ReasonFilter = None,
    include_resolved: Annotated[
        bool, typer.Option("--all", help="Include resolved dead letters (re-driven).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Dead letters per consumer, topic and reason (from the dead_letters table):
    unresolved and resolved counts, first and last seen. Unresolved ones only, unless --all.
    """
    settings = settings_of(ctx)
    counts = asyncio.run(dlq.reason_counts(settings, topic, reason, include_resolved))
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in counts], indent=2))
        return
    table = Table(
        "consumer", "topic", "reason", "unresolved", "resolved", "first seen", "last seen"
    )
    for c in counts:
        cells = [c.consumer, c.topic, c.reason, c.unresolved, c.resolved, c.first_seen, c.last_seen]
        table.add_row(*[Text(_cell(cell)) for cell in cells])
    Console(width=WIDTH).print(table)
    if not counts:
        typer.echo("no unresolved dead letters" if not include_resolved else "no dead letters")


@dlq_app.command("show")
def show_command(
    ctx: typer.Context,
    letter_id: Annotated[int, typer.Argument(help="The dead letter's id, as `dlq list --json`.")],
    external_topics: ExternalTopicsOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: its reason, where it came from, and each copy in its dead-letter
    topic with the dead letter's headers and the original record (key, headers, value;
    text that is not UTF-8, and control characters, shown escaped)."""
    settings = settings_of(ctx, external_topics=external_topics)
    found = asyncio.run(dlq.show(settings, letter_id))
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2))
        return
    for line in show_lines(found):
        typer.echo(line)


def show_lines(found: dlq.Shown) -> list[str]:
    """`dlq show` as text: every untrusted value escaped for a terminal."""
    row = found.row
    state = "unresolved"
    if row["resolved_at"] is not None:
        state = f"resolved {row['resolved_at'].isoformat()} by redrive {row['resolved_by']}"
    lines = [
        f"dead letter {row['id']}: {state}",
        f"  consumer   {shown(row['consumer'])}",
        f"  original   {row['topic']}[{row['partition']}]@{row['offset']} ({found.format})",
        f"  reason     {shown_bytes(row['error'].encode())}",
        f"  attempts   {row['attempts']}",
        f"  recorded   {row['created_at'].isoformat()}",
    ]
    if row["failed_at"] is not None:
        lines.append(f"  failed again {row['failed_at'].isoformat()}")
    if not found.copies:
        lines.append(f"  not found in {row['dlq_topic']} (deleted by retention?)")
    for copy in found.copies:
        at, original = copy.at, copy.original
        lines += [
            f"in {at.topic}[{at.partition}]@{at.offset} (dlq.id {shown(copy.letter_id or '-')})",
            "  dead letter headers:",
            *[
                f"    {shown(n)}: {shown_bytes(v, 500)}"
                for n, v in at.headers
                if n.startswith("dlq.")
            ],
            f"  key: {shown_bytes(original.key, 500)}",
            "  headers:" if original.headers else "  headers: none",
            *[f"    {shown(n)}: {shown_bytes(v, 500)}" for n, v in original.headers],
            f"  value omitted: {shown(copy.omitted)}" if copy.omitted else "  value:",
        ]
        if not copy.omitted:
            lines += [f"    {line}" for line in shown_bytes(original.value).split("\n")]
    return lines


@dlq_app.command("redrive")
def redrive_command(
    ctx: typer.Context,
    topic: TopicFilter = None,
    reason: ReasonFilter = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only dead letters recorded at or after this ISO 8601 time (UTC offset)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only dead letters recorded before this ISO 8601 time.")
    ] = None,
    partition: Annotated[
        int | None, typer.Option(min=0, help="Only this partition of the original topic.")
    ] = None,
    from_offset: Annotated[
        int | None, typer.Option(min=0, help="Only original offsets at or above this one.")
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option(min=0, help="Only original offsets at or below this one.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be re-driven; write nothing.")
    ] = False,
    handler_modules: HandlersOption = None,
    external_topics: ExternalTopicsOption = None,
) -> None:
    """Re-apply unresolved dead letters of the live consumer group through the handlers,
    once their cause is fixed.

    Each letter is read from its dead-letter topic and decoded by its ORIGINAL topic's
    format (the dlq.original.topic header; formats from CRONSTREAM_EXTERNAL_TOPICS). What
    applies is marked resolved in the transaction of its effects, so running it again
    (or twice at once) applies nothing twice; what fails again is dead-lettered again
    with its new reason. Records of the topic that are no dead letter are skipped with
    a line. A row in dlq_redrives records who ran it, the filters and the counts.

    Exit codes: 0 done; 1 failed or interrupted (run it again to take up the rest), or
    some letters failed again; 2 invalid options.
    """
    settings = settings_of(ctx, external_topics=external_topics)
    filters = dlq.Filters(
        topic=topic,
        reason=reason,
        since=parse_instant("--since", since) if since is not None else None,
        until=parse_instant("--until", until) if until is not None else None,
        partition=partition,
        from_offset=from_offset,
        to_offset=to_offset,
    )
    modules = [*settings.handlers, *(handler_modules or [])]
    registry = build_registry(modules)

    async def main() -> dlq.Redriven:
        stopping = asyncio.Event()
        shutdown.stop_on_signals(stopping, settings.shutdown_timeout, "stopping after the batch")
        with counting_progress("re-driving", enabled=not dry_run) as on_progress:
            redrive = dlq.Redrive(settings, registry, filters, stopping, on_progress)
            return await redrive.run(dry_run)

    done = asyncio.run(main())
    for line in [*done.unreadable, *done.missing][: SHOWN_LETTERS * 2]:
        typer.echo(f"skipped: {line}", err=True)
    if dry_run:
        for letter in done.would[:SHOWN_LETTERS]:
            o = letter.original
            typer.echo(
                f"would re-drive {o.topic}[{o.partition}]@{o.offset}: {shown(letter.reason)}"
            )
        if len(done.would) > SHOWN_LETTERS:
            typer.echo(f"... and {len(done.would) - SHOWN_LETTERS} more")
    typer.echo(done.summary(dry_run))
    if done.status != "succeeded":
        fail(f"redrive {done.redrive_id} {done.status}: {shown(done.error or 'stopped')}")
    if done.failed_again:
        fail(f"{done.failed_again} dead letter(s) failed again (see `cronstream dlq list`)")


def _cell(value: object) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)
