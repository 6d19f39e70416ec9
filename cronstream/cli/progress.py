"""Progress of long commands: a bar on a terminal, else (replay) a log line now and then."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cronstream.streams import replay
from cronstream.streams.dlq import Redriven

REPLAY_LOG_EVERY = 5.0  # seconds between progress lines when stderr is no terminal

log = logging.getLogger(__name__)


@contextmanager
def publish_progress(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bar counting records sent out of `total`, shown only when `enabled`; yields
    what to call with each number of records newly sent."""
    with Progress(
        TextColumn("publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        console=None,
    ) as bar:
        task = bar.add_task("publish", total=total)
        yield lambda sent: bar.advance(task, sent)


@contextmanager
def replay_progress(total: int) -> Iterator[Callable[[replay.Progress], None]]:
    """A progress bar on a terminal; otherwise a log line every few seconds."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("replay", total=total, rate="")
            yield lambda p: bar.update(task, completed=p.records, rate=f"{p.rate:.0f}/s")
        return
    last = time.monotonic()

    def log_progress(p: replay.Progress) -> None:
        nonlocal last
        if time.monotonic() - last >= REPLAY_LOG_EVERY or p.records >= p.total:
            last = time.monotonic()
            log.info(
                "replay progress: %d of %d records, %.0f records/s",
                p.records,
                p.total,
                p.rate,
                extra={"replay_id": p.replay_id, "done": p.records, "total": p.total},
            )

    yield log_progress


@contextmanager
def counting_progress(label: str, enabled: bool) -> Iterator[Callable[[Redriven], None]]:
    """A bar of a redrive's records read, on a terminal; else a log line every few seconds."""
    if sys.stderr.isatty() and enabled:
        with Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True)
        ) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done: bar.update(task, completed=done.read, total=done.total)
        return
    last = time.monotonic()

    def log_progress(done: Redriven) -> None:
        nonlocal last
        if enabled and time.monotonic() - last >= REPLAY_LOG_EVERY:
            last = time.monotonic()
            log.info(
                "%s: %d of %d records read, %d applied, %d failed again",
                label,
                done.read,
                done.total,
                done.applied,
                done.failed_again,
            )

    yield log_progress
