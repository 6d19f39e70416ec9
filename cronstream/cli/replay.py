"""`cronstream replay`: a range of a topic through the handlers, and how to resume it."""

from __future__ import annotations

import asyncio
import shlex
from typing import Annotated

import typer

from cronstream.cli.compose import build_registry
from cronstream.cli.options import ExternalTopicsOption, HandlersOption, fail, settings_of
from cronstream.cli.progress import replay_progress
from cronstream.config.settings import env_var
from cronstream.runtime import shutdown
from cronstream.runtime.untrusted import shown
from cronstream.streams import replay


def replay_command(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="Topic to replay. (required)")] = None,
    partitions: Annotated[
        str | None, typer.Option(help="Partitions to replay, e.g. 0,3. (default: all)")
    ] = None,
    from_offset: Annotated[
        int | None, typer.Option(help="First offset to replay, in each chosen partition.")
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            help="Replay from the first record stamped at or after this ISO 8601 time with "
            "UTC offset, e.g. 2026-11-27T09:00:00+00:00."
        ),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Replay from the oldest record kept.")
    ] = False,
    to_offset: Annotated[
        int | None,
        typer.Option(help="Last offset to replay, inclusive. (default: the log end at start)"),
    ] = None,
    to_time: Annotated[
        str | None,
        typer.Option(help="Replay the records stamped before this ISO 8601 time (UTC offset)."),
    ] = None,
    handler_modules: HandlersOption = None,
    external_topics: ExternalTopicsOption = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            help="Rebuild mode: a consumer name of its own (not the live group), with its own "
            "checkpoints, writing into --schema. (default: re-apply mode, the live group)"
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            help="Rebuild mode: the Postgres schema handlers write into, created if missing. "
            "(default: the --consumer name as an identifier, then _ and a hash of it; the "
            "plan prints it)"
        ),
    ] = None,
    like: Annotated[
        list[str] | None,
        typer.Option(
            "--like",
            help="Rebuild mode: a live table to create empty in --schema (LIKE ... INCLUDING "
            "ALL) if missing; repeatable. (default: entity_projection)",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (per partition: offsets, records, checkpoint change); "
            "write nothing.",
        ),
    ] = False,
    rate_limit: Annotated[
        float | None, typer.Option(help="At most this many records per second, on average.")
    ] = None,
) -> None:
    """Replay a range of a topic through the handlers, under the checkpoint protocol.

    **re-apply** (default): for the live consumer group (CRONSTREAM_CONSUMER_GROUP).
    Records of the range at or below a partition's checkpoint are applied again, once
    each, under the live checkpoint row locks (live workers wait, so it is safe while
    they run); records above it are applied once, by the replay or the live workers.
    Checkpoints never go down. Handlers that are not idempotent apply the range twice
    in total: that is the point of re-applying.

    **rebuild** (--consumer NAME): the same handlers under checkpoints of NAME, writing
    into --schema (each handler call runs with that schema as its search_path), so the
    live tables are untouched. Run it again to resume where it stopped.

    The range is read without a consumer group, up to the log end at the start. Progress
    shows on a terminal (a log line every 5 s otherwise); a summary line ends it, and a
    row in the replays table records it. Exit codes: 0 done; 1 failed or interrupted
    (SIGINT/SIGTERM stop after the in-flight batch; the hint says how to resume);
    2 invalid options, or a --schema another consumer's running replay writes into.
    """
    # --external-topics: the topic's format, as the worker reads it.
    settings = settings_of(ctx, external_topics=external_topics)
    if topic is None:
        fail("--topic is required", 2)
    request = replay.check(replay.Asked.of(ctx.params), live_group=settings.consumer_group)
    original = topic.removesuffix(settings.dlq_suffix)
    if topic not in settings.input_topics and original in settings.external_topics:
        # A dead-letter topic holds its original topic's records: read them in its format.
        given = settings.external_topics[original]
        settings = settings.model_copy(
            update={"external_topics": {**settings.external_topics, topic: given}}
        )
        typer.echo(
            f"note: {topic} holds dead letters of {original}: read as {given.name}", err=True
        )
    elif topic not in settings.input_topics:
        typer.echo(
            f"note: {topic} is not named in {env_var('external_topics')} (--external-topics): "
            "its records are read as envelopes",
            err=True,
        )
    modules = [*settings.handlers, *(handler_modules or [])]
    registry = build_registry(modules)
    plan = asyncio.run(replay.plan_replay(settings, request))
    for line in plan.lines():
        typer.echo(line, err=not dry_run)
    if dry_run:
        return

    async def main() -> replay.Progress:
        stopping = asyncio.Event()
        grace = settings.shutdown_timeout
        shutdown.stop_on_signals(stopping, grace, "stopping after the in-flight batch")
        with replay_progress(plan.total) as on_progress:
            replaying = replay.Replay(settings, registry, plan, modules, stopping, on_progress)
            return await replaying.run()

    done = asyncio.run(main())
    typer.echo(done.summary(topic))
    if done.status == "failed":
        fail(f"replay {done.replay_id} failed: {shown(done.error or '')}")
    if done.status == "interrupted":
        unfinished = done.unfinished(plan)
        for command in resume_commands(request, handler_modules, external_topics, unfinished):
            typer.echo(f"resume with: {command}", err=True)
        fail(f"replay {done.replay_id} interrupted")


def resume_commands(
    request: replay.Request,
    handler_modules: list[str] | None,
    external_topics: str | None,
    unfinished: list[tuple[int, int, int]],
) -> list[str]:
    """The commands, one a partition, that replay what an interrupted replay left: the
    same options, each partition from its next offset (quoted for a POSIX shell)."""
    asked = request.asked
    again = ["cronstream", "replay", "--topic", asked.topic]
    for module in handler_modules or []:
        again += ["--handlers", module]
    if external_topics is not None:
        again += ["--external-topics", external_topics]
    if asked.consumer is not None:
        again += ["--consumer", asked.consumer, "--schema", str(request.schema)]
        for table in request.like:
            again += ["--like", table]
    if asked.rate_limit is not None:
        again += ["--rate-limit", str(asked.rate_limit)]
    return [
        shlex.join(
            [*again, "--partitions", str(p), "--from-offset", str(first), "--to-offset", str(last)]
        )
        for p, first, last in unfinished
    ]
