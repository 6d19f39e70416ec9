"""Children for the supervisor's unit tests (tests/unit/test_supervisor.py): module-level
functions, so that a spawned process can import them by name."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from cronstream.cli import supervisor


def exits(number: int, reports: Connection, supervisor_pid: int, code: int) -> None:
    """Ends at once with `code`, as a worker whose every start fails."""
    sys.exit(code)


def misconfigured(number: int, reports: Connection, supervisor_pid: int, line: str) -> None:
    """Says why, then ends with a configuration error's code, as a worker does."""
    supervisor.report_failure(reports, line)
    sys.exit(supervisor.CONFIG_EXIT)
