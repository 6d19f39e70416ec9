"""`cronstream replay`: a range of a topic through the handlers, and how to resume it."""

from __future__ import annotations

import asyncio
import shlex
from typing import Annotated

import typer

from cronstream.cli.compose import build_registry
from cronstream.cli.options import ExternalTopicsOption, HandlersOption, fail, settings_of
from cronstream.cli.progress import replay_progress
from cronstream.config.settings import Settings, env_var
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
    resume: Annotated[
        int | None,
        typer.Option(
            help="Go on with the replay of this id (the replays table; an interrupted one "
            "prints it), each partition after where its last committed batch got to, with "
            "its recorded options and handlers. Give only --external-topics, --rate-limit "
            "or --dry-run with it.",
        ),
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

    Each batch records how far the replay got in the same transaction, so a batch retried
    after a lost COMMIT acknowledgement, or a replay resumed with --resume ID after it
    was stopped or killed, applies no record of the range twice. A rebuild's dead letters
    go to <topic>.rebuild.<token>.dlq (token: as the default schema), never to <topic>.dlq.

    The range is read without a consumer group, up to the log end at the start. Progress
    shows on a terminal (a log line every 5 s otherwise); a summary line ends it, and a
    row in the replays table records it. Exit codes: 0 done; 1 failed or interrupted
    (SIGINT/SIGTERM stop after the in-flight batch; the hint says how to resume);
    2 invalid options, or a --schema another consumer's running replay writes into.
    """
    # --external-topics: the topic's format, as the worker reads it.
    settings = settings_of(ctx, external_topics=external_topics)
    if resume is not None:
        plan = asyncio.run(replay.plan_resume(settings, resume, rate_limit_of(ctx, resume)))
        assert plan.resumes is not None, "a resumed plan"
        modules = list(plan.resumes.handlers)
    else:
        if topic is None:
            fail("--topic is required", 2)
        request = replay.check(replay.Asked.of(ctx.params), live_group=settings.consumer_group)
        modules = [*settings.handlers, *(handler_modules or [])]
        plan = asyncio.run(replay.plan_replay(settings, request))
    topic = plan.request.asked.topic
    settings = read_as_its_format(settings, topic)
    registry = build_registry(modules)
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
    if done.status in ("failed", "interrupted") and done.replay_id is not None:
        command = resume_command(done.replay_id, external_topics)
        typer.echo(f"resume with: {command}", err=True)
    if done.status == "failed":
        fail(f"replay {done.replay_id} failed: {shown(done.error or '')}")
    if done.status == "interrupted":
        fail(f"replay {done.replay_id} interrupted")


def read_as_its_format(settings: Settings, topic: str) -> Settings:
    """`settings` reading `topic` in its format: a dead-letter topic holds its original
    topic's records, read in that topic's format; an unnamed topic is read as envelopes."""
    original = topic.removesuffix(settings.dlq_suffix)
    if topic not in settings.input_topics and original in settings.external_topics:
        given = settings.external_topics[original]
        typer.echo(
            f"note: {topic} holds dead letters of {original}: read as {given.name}", err=True
        )
        return settings.model_copy(
            update={"external_topics": {**settings.external_topics, topic: given}}
        )
    if topic not in settings.input_topics:
        typer.echo(
            f"note: {topic} is not named in {env_var('external_topics')} (--external-topics): "
            "its records are read as envelopes",
            err=True,
        )
    return settings


def rate_limit_of(ctx: typer.Context, replay_id: int) -> float | None:
    """--rate-limit, the one option (besides --external-topics and --dry-run) that goes
    with --resume; any other is refused, naming it."""
    kept = {"resume", "rate_limit", "external_topics", "dry_run"}
    for name, value in ctx.params.items():
        empty = value is None or value is False or (isinstance(value, list | tuple) and not value)
        if name not in kept and not empty:
            option = "--" + name.replace("_", "-")
            if name == "handler_modules":
                option = "--handlers"
            fail(f"--resume {replay_id} replays with its recorded options: drop {option}", 2)
    rate: float | None = ctx.params["rate_limit"]
    return rate


def resume_command(replay_id: int, external_topics: str | None) -> str:
    """The command that goes on with an unfinished replay (quoted for a POSIX shell)."""
    again = ["cronstream", "replay", "--resume", str(replay_id)]
    if external_topics is not None:
        again += ["--external-topics", external_topics]
    return shlex.join(again)
