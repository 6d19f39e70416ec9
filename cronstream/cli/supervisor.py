"""`cronstream worker --processes N`: N worker processes of one consumer group under one
supervisor, which serves the one HTTP surface and starts again a child that crashed.

The children are spawned (multiprocessing's "spawn": a fresh interpreter each, as a
worker started by hand; a fork would copy the supervisor's event loop, threads and
in-memory metrics). Each gets the supervisor's Settings, serves no HTTP and keeps its
metrics in the supervisor's private PROMETHEUS_MULTIPROC_DIR (runtime/metrics.py), which
the supervisor's /metrics sums. Over a pipe of its own a child sends its readiness
whenever it changes (`Report`) and, when it fails, the one line saying why, before it
exits. The supervisor's /readyz is ready when every child is alive and ready.

Restarts: a child that exits while the supervisor is not stopping starts again after
BACKOFF_FIRST seconds, doubled for each exit in a row within RAPID_SECONDS of its
start. The supervisor gives up (stops all and ends with one line) when a child exits
with code 2, a configuration error that every restart would repeat, or RAPID_LIMIT
times in a row within RAPID_SECONDS of starting.

Shutdown: SIGINT and SIGTERM are forwarded as SIGTERM to every child, which drains its
batch; those still running after shutdown_timeout seconds are killed. A child whose
supervisor is gone (its parent pid changed) drains as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import CollectorRegistry

from cronstream.config.settings import Settings
from cronstream.errors import CronstreamError
from cronstream.runtime import metrics, shutdown
from cronstream.streams.worker import Readiness, Surface

log = logging.getLogger(__name__)

TICK = 0.1  # seconds between looks at the children
REPORT_SECONDS = 0.5  # how often a child looks at its readiness and its parent
BACKOFF_FIRST = 0.5
RAPID_SECONDS = 10.0
RAPID_LIMIT = 3
CONFIG_EXIT = 2  # the exit code of bad settings, handler modules, ... (CronstreamError)
KILL_SECONDS = 5.0  # after shutdown_timeout: to kill, reap and stop the HTTP surface
DRAINED = (0, -signal.SIGTERM, -signal.SIGINT)  # killed by our signal before it began
MAX_LINE = 2000  # characters of a child's failure line kept

Target = Callable[..., None]
"""A child's main: called with (its number, its report pipe, the supervisor's pid, *args)."""
Serve = Callable[[Readiness, CollectorRegistry], Surface]
"""The supervisor's HTTP surface, from its readiness and the children's metrics."""


class WorkersFailed(CronstreamError):
    """A worker process kept exiting soon after its start: all were stopped."""


class WorkersMisconfigured(CronstreamError):
    """A worker process exited on a configuration error: all were stopped."""

    exit_code = 2


class NotDrained(CronstreamError):
    """Worker processes did not drain within the shutdown timeout and were killed."""


def ended(code: int) -> str:
    """How a child ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def after_exit(code: int, lived: float, rapid: int) -> tuple[int, float | None]:
    """A child exited with `code` after `lived` seconds, following `rapid` exits in a
    row within RAPID_SECONDS of starting: that count now, and the seconds to wait
    before it starts again, or None to give up."""
    if code == CONFIG_EXIT:
        return rapid, None
    rapid = rapid + 1 if lived < RAPID_SECONDS else 0
    if rapid >= RAPID_LIMIT:
        return rapid, None
    return rapid, BACKOFF_FIRST * 2**rapid


@dataclass
class Slot:
    """One of the N places a worker process runs in; its number stays over restarts."""

    number: int
    process: BaseProcess | None = None
    reports: Connection | None = None
    started: float = 0.0
    reason: str | None = "starting"  # why it is not ready; None: ready
    failure: str | None = None  # the line the child sent before it exited on an error
    rapid: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts `count` children running `target(number, pipe, supervisor pid, *args)` and
    keeps them running until SIGINT or SIGTERM (module docstring)."""

    def __init__(
        self, settings: Settings, count: int, target: Target, args: Sequence[object]
    ) -> None:
        self.settings = settings
        self.target = target
        self.args = tuple(args)
        self.slots = [Slot(number) for number in range(1, count + 1)]
        self.context = multiprocessing.get_context("spawn")
        self.failure: CronstreamError | None = None
        self.metrics_dir = ""

    def readiness(self) -> str | None:
        """None when every child is alive and ready, else which are not and why."""
        waiting = [
            f"worker process {slot.number}: {slot.reason}"
            for slot in self.slots
            if slot.reason is not None
        ]
        return "; ".join(waiting) or None

    def run(self, serve: Serve) -> None:
        """Serve, start the children and supervise them until SIGINT/SIGTERM, then drain
        them; raise WorkersMisconfigured, WorkersFailed or NotDrained for a failure."""
        with metrics.multiprocess_dir() as path:
            self.metrics_dir = path
            # Removed at exit; after a kill -9 of the supervisor this says what to remove.
            log.info("worker processes' metrics directory made", extra={"metrics_dir": path})
            asyncio.run(self._run(serve, metrics.multiprocess_registry(path)))
        if self.failure is not None:
            raise self.failure

    async def _run(self, serve: Serve, registry: CollectorRegistry) -> None:
        stopping = asyncio.Event()
        surface = serve(self.readiness, registry)
        await surface.start()  # a port in use ends it before any child starts
        try:
            grace = self.settings.shutdown_timeout + KILL_SECONDS
            doing = f"draining {len(self.slots)} worker processes"
            shutdown.stop_on_signals(stopping, grace, doing)
            for slot in self.slots:
                self._start(slot)
            while not stopping.is_set():
                self._look(stopping)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), TICK)
            await self._drain()
        finally:
            self._kill_all()  # nothing outlives the supervisor, whatever happened
            await surface.stop()

    def _start(self, slot: Slot) -> None:
        reports, writer = self.context.Pipe(duplex=False)
        args = (slot.number, writer, os.getpid(), *self.args)
        process = self.context.Process(
            target=self.target, args=args, name=f"cronstream-worker-{slot.number}"
        )
        process.start()
        writer.close()  # the child holds the only writer: its exit closes the pipe
        slot.process, slot.reports, slot.started = process, reports, time.monotonic()
        slot.reason, slot.failure, slot.restart_at = "starting", None, None
        log.info(
            "worker process started",
            extra={"worker_process": slot.number, "pid": process.pid},
        )

    def _look(self, stopping: asyncio.Event) -> None:
        now = time.monotonic()
        for slot in self.slots:
            self._read(slot)
            process = slot.process
            if process is not None and process.exitcode is not None:
                self._exited(slot, process.exitcode, now)
                if self.failure is not None:
                    stopping.set()
                    return
            elif process is None and slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)

    def _exited(self, slot: Slot, code: int, now: float) -> None:
        pid = slot.process.pid if slot.process is not None else None
        self._read(slot)  # its last words: the line saying why it failed
        self._reap(slot)
        slot.rapid, delay = after_exit(code, now - slot.started, slot.rapid)
        what = f"worker process {slot.number} of {len(self.slots)} (pid {pid}) {ended(code)}"
        why = f": {slot.failure}" if slot.failure else ""
        if delay is None:
            slot.reason = "stopped"
            if code == CONFIG_EXIT:
                self.failure = WorkersMisconfigured(
                    f"{what}, a configuration error{why}; all worker processes stopped"
                )
            else:
                self.failure = WorkersFailed(
                    f"{what}{why}, {slot.rapid} times in a row within {RAPID_SECONDS:g}s "
                    "of starting; all worker processes stopped"
                )
            return
        slot.reason = f"starting again ({ended(code)})"
        slot.restart_at = now + delay
        metrics.restarted(code)
        log.warning(
            "%s%s; starting it again in %.1fs",
            what,
            why,
            delay,
            extra={"worker_process": slot.number, "exit_code": code},
        )

    def _read(self, slot: Slot) -> None:
        """Take in what the child reported since the last look."""
        reports = slot.reports
        if reports is None:
            return
        try:
            while reports.poll():
                message: dict[str, Any] = json.loads(reports.recv_bytes())
                if "failed" in message:
                    slot.failure = str(message["failed"])[:MAX_LINE]
                elif "ready" in message:
                    ready = message["ready"]
                    slot.reason = None if ready is None else str(ready)[:MAX_LINE]
        except (EOFError, OSError, ValueError):
            pass  # it exited (or wrote no JSON): its exit code tells the rest

    def _reap(self, slot: Slot) -> None:
        process, slot.process = slot.process, None
        if slot.reports is not None:
            slot.reports.close()
            slot.reports = None
        if process is None:
            return
        process.join()
        pid = process.pid
        process.close()
        if pid is not None:
            metrics.process_dead(pid, self.metrics_dir)

    async def _drain(self) -> None:
        """SIGTERM to every child; kill those still running after shutdown_timeout."""
        running = [slot for slot in self.slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None
            with contextlib.suppress(ProcessLookupError):
                slot.process.terminate()
        timeout = self.settings.shutdown_timeout
        deadline = time.monotonic() + timeout
        # Exit codes are polled: a process's exit sets no asyncio event.
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            slot.process is not None and slot.process.exitcode is None for slot in running
        ):
            await asyncio.sleep(TICK)
        undrained = []
        for slot in running:
            process = slot.process
            assert process is not None
            code = process.exitcode
            if code is None:
                process.kill()
                undrained.append(f"worker process {slot.number} was killed after {timeout:g}s")
            elif code not in DRAINED:
                undrained.append(f"worker process {slot.number} {ended(code)}")
            self._reap(slot)
        if undrained and self.failure is None:
            self.failure = NotDrained(f"not drained cleanly: {'; '.join(undrained)}")
        if not undrained and self.failure is None:
            log.info("worker processes drained", extra={"processes": len(running)})

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                if slot.process.exitcode is None:
                    slot.process.kill()
                self._reap(slot)


class Report:
    """What a worker process serves instead of HTTP (a streams/worker.py Surface): its
    readiness, sent to the supervisor whenever it changes; and a SIGTERM to itself once
    the supervisor is gone, so an orphan drains rather than runs on unwatched."""

    def __init__(self, readiness: Readiness, connection: Connection, supervisor: int) -> None:
        self.readiness = readiness
        self.connection = connection
        self.supervisor = supervisor
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            await shutdown.cancel_and_wait(self.task)
        send(self.connection, {"ready": "stopping"})

    async def _run(self) -> None:
        sent: object = object()  # nothing yet
        while True:
            if os.getppid() != self.supervisor:
                log.warning("the supervisor is gone: draining")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            reason = self.readiness()
            if reason != sent:
                send(self.connection, {"ready": reason})
                sent = reason
            await asyncio.sleep(REPORT_SECONDS)


def report_failure(connection: Connection, line: str) -> None:
    """A child's last words: the one line saying why it stops (the supervisor shows it)."""
    send(connection, {"failed": line})


def send(connection: Connection, message: dict[str, str | None]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone; Report notices
        connection.send_bytes(json.dumps(message).encode())
