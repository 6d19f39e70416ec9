"""`cronstream status`: the status model, as tables or JSON, and an exit code."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated

import typer

from cronstream.cli.options import JobsFileOption, fail, settings_of
from cronstream.errors import START_SERVICES
from cronstream.status import collect, text


def status_command(
    ctx: typer.Context,
    jobs_file: JobsFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show where the pipeline stands: first a summary line (the status page's), then per
    consumer, topic and partition the checkpoint, Kafka's log end and the lag between
    them; dead letters per topic (total, last hour); each job's last and next run, and
    which scheduler leads.

    Partitions of the consumer group's input topics without a checkpoint yet are shown
    too, their lag from Kafka's committed offset or the log start. A checkpoint beyond
    the log end (topic recreated, Kafka data lost) is flagged rather than shown as a
    lag. Postgres and Kafka get 5 s each.

    Exit codes: 0 all shown; 1 Postgres or Kafka unreachable (what the other one said is
    still shown); 2 invalid settings or jobs file.
    """
    settings = settings_of(ctx, jobs_file=jobs_file)
    # The error line below says what aiokafka's own connection errors would repeat.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    collected = asyncio.run(collect.collect(settings, settings.jobs_file))
    if as_json:
        typer.echo(json.dumps(collected.to_json(), indent=2))
    else:
        text.print_status(collected)
    if collected.unreachable:
        reasons = sorted(collected.unreachable.items())
        down = any("cronstream migrate" not in why for _, why in reasons)
        fail(
            "unreachable: "
            + "; ".join(f"{name} ({why})" for name, why in reasons)
            + (f" ({START_SERVICES})" if down else "")
        )
    if collected.jobs_error:
        fail(collected.jobs_error, 2)
