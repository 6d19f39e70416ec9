"""The supervisor of `cronstream worker --processes N`: when it starts a child again and
when it gives up, with real (trivial) child processes; the worker processes themselves
are tested against Kafka and Postgres in tests/integration/test_processes.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cronstream.cli import supervisor
from cronstream.config.settings import Settings
from cronstream.streams.worker import Readiness
from tests.unit import supervised


class Surface:
    """Stands in for the HTTP surface: notes what it was given."""

    def __init__(self, readiness: Readiness, registry: CollectorRegistry) -> None:
        self.readiness = readiness
        self.registry = registry
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(
    ("code", "lived", "rapid", "expected"),
    [
        (1, 0.2, 0, (1, 1.0)),  # soon after its start: wait longer each time
        (1, 0.2, 1, (2, 2.0)),
        (1, 0.2, 2, (3, None)),  # the third time in a row: give up
        (-9, 60.0, 2, (0, 0.5)),  # after a good run: start again soon, count afresh
        (0, 60.0, 0, (0, 0.5)),  # an exit nobody asked for is a crash too
        (2, 60.0, 0, (0, None)),  # a configuration error: a restart would repeat it
    ],
)
def test_after_exit_backs_off_and_gives_up_on_a_crash_loop_or_a_configuration_error(
    code: int, lived: float, rapid: int, expected: tuple[int, float | None]
) -> None:
    assert supervisor.after_exit(code, lived, rapid) == expected


def test_how_a_child_ended_is_said_in_words() -> None:
    assert supervisor.ended(2) == "exited with code 2"
    assert supervisor.ended(-9) == "was killed by SIGKILL"
    assert supervisor.ended(-200) == "exited with code -200"


def test_readiness_names_each_process_that_is_not_ready() -> None:
    processes = supervisor.Supervisor(Settings(), 3, supervised.exits, (0,))
    assert processes.readiness() == (
        "worker process 1: starting; worker process 2: starting; worker process 3: starting"
    )
    for slot in processes.slots:
        slot.reason = None
    processes.slots[1].reason = "no partitions assigned yet"
    assert processes.readiness() == "worker process 2: no partitions assigned yet"
    processes.slots[1].reason = None
    assert processes.readiness() is None


def run(processes: supervisor.Supervisor) -> list[Surface]:
    surfaces: list[Surface] = []

    def serve(readiness: Readiness, registry: CollectorRegistry) -> Surface:
        surfaces.append(Surface(readiness, registry))
        return surfaces[-1]

    processes.run(serve)
    return surfaces


def test_a_child_crashing_soon_after_each_start_stops_all_without_a_hot_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, supervisor.__name__)
    processes = supervisor.Supervisor(Settings(), 2, supervised.exits, (1,))
    began = time.monotonic()
    with pytest.raises(supervisor.WorkersFailed) as failed:
        run(processes)
    # Two waits (1 s, 2 s) between three starts of the one that failed first.
    assert 3.0 <= time.monotonic() - began < 30
    assert "exited with code 1, 3 times in a row within 10s of starting" in str(failed.value)
    assert str(failed.value).endswith("all worker processes stopped")
    assert failed.value.exit_code == 1
    starts = [r for r in caplog.records if r.getMessage() == "worker process started"]
    assert 3 <= len(starts) <= 6
    assert all(slot.process is None for slot in processes.slots)


def test_a_configuration_error_stops_all_at_once_with_the_childs_line() -> None:
    line = "invalid settings: CRONSTREAM_X: no good"
    processes = supervisor.Supervisor(Settings(), 2, supervised.misconfigured, (line,))
    with pytest.raises(supervisor.WorkersMisconfigured) as failed:
        run(processes)
    message = str(failed.value)
    assert f"exited with code 2, a configuration error: {line}; all worker" in message
    assert failed.value.exit_code == 2


def test_the_surface_is_served_and_stopped_and_the_metrics_directory_removed(
    tmp_path: Path,
) -> None:
    processes = supervisor.Supervisor(Settings(), 1, supervised.exits, (2,))
    surfaces: list[Surface] = []

    def serve(readiness: Readiness, registry: CollectorRegistry) -> Surface:
        surfaces.append(Surface(readiness, registry))
        return surfaces[-1]

    with pytest.raises(supervisor.WorkersMisconfigured):
        processes.run(serve)
    [surface] = surfaces
    assert surface.started and surface.stopped
    assert processes.metrics_dir and not Path(processes.metrics_dir).exists()
    assert surface.readiness() == "worker process 1: stopped"
