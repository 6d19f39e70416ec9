"""Running the `cronstream` command line against this test's services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cronstream.config.settings import Settings
from cronstream.pg import migrate


def environment(settings: Settings) -> dict[str, str]:
    """`cli_env` for any settings (module-scoped fixtures build their own)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRONSTREAM_")}
    env |= {
        "CRONSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CRONSTREAM_DATABASE_URL": settings.database_dsn,
        "CRONSTREAM_SYNC_TOPIC": settings.sync_topic,
        "CRONSTREAM_CONSUMER_GROUP": settings.consumer_group,
        "CRONSTREAM_LOG_FORMAT": "json",
        # Off unless a test picks a free port, so parallel processes never fight over 8080.
        "CRONSTREAM_HTTP_PORT": "0",
        "CRONSTREAM_SCHEDULER_HTTP_PORT": "0",
    }
    return env


def copy_migrations(directory: Path) -> Path:
    """The packaged migrations copied into a new `directory`, for a test to add to or edit."""
    directory.mkdir()
    for entry in migrate.PACKAGED_MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            (directory / entry.name).write_bytes(entry.read_bytes())
    return directory


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `cronstream` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cronstream", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
