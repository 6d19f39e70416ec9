"""One root for cronstream's errors, and the one place the CLI turns them into a line."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cronstream.cli.app import Commands, app
from cronstream.config.settings import SettingsError
from cronstream.errors import CronstreamError
from cronstream.events.envelope import EnvelopeError
from cronstream.handlers.failures import DeadLettersNotSent, Outage, is_outage
from cronstream.handlers.registry import RegistryError
from cronstream.pg.connections import DatabaseUnavailable
from cronstream.pg.migrate import MigrationError
from cronstream.schedulers.cron import CronError
from cronstream.schedulers.jobs import JobError
from cronstream.streams.replay import ReplayError
from cronstream.web.app import PortInUse

runner = CliRunner()

BAD_INPUT = [SettingsError, EnvelopeError, RegistryError, JobError, ReplayError, CronError]
SERVICE_DOWN = [DatabaseUnavailable, DeadLettersNotSent, Outage]


@pytest.mark.parametrize("kind", [*BAD_INPUT, *SERVICE_DOWN, MigrationError, PortInUse])
def test_every_project_error_shares_the_root(kind: type[Exception]) -> None:
    assert issubclass(kind, CronstreamError)


@pytest.mark.parametrize("kind", BAD_INPUT)
def test_bad_input_exits_2(kind: type[CronstreamError]) -> None:
    assert kind.exit_code == 2


@pytest.mark.parametrize("kind", SERVICE_DOWN)
def test_an_unavailable_service_is_retriable(kind: type[CronstreamError]) -> None:
    assert kind.retriable and kind.exit_code == 1


def test_the_engine_retries_what_is_retriable() -> None:
    assert is_outage(DatabaseUnavailable("down"))
    assert is_outage(Outage("down"))
    assert not is_outage(JobError("bad job"))


def cli_raising(error: Exception) -> typer.Typer:
    """A CLI of the real command group whose one command raises `error`."""
    cli = typer.Typer(cls=Commands)

    @cli.command()
    def fails() -> None:
        raise error

    @cli.command()
    def other() -> None: ...

    return cli


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (JobError("job 'x': schedule: bad"), "error: job 'x': schedule: bad", 2),
        (SettingsError("CRONSTREAM_X: bad"), "error: invalid settings: CRONSTREAM_X: bad", 2),
        (MigrationError("0002_x.sql changed"), "error: 0002_x.sql changed", 1),
        (
            DatabaseUnavailable("cannot connect to postgresql://u:***@h/d: refused"),
            "error: cannot connect to postgresql://u:***@h/d: refused "
            "(start local services with 'make services')",
            1,
        ),
    ],
)
def test_the_cli_turns_an_error_into_one_line_and_its_code(
    error: CronstreamError, line: str, code: int
) -> None:
    result = runner.invoke(cli_raising(error), ["fails"])
    assert result.exit_code == code
    assert result.output.strip() == line  # no traceback


def test_an_unreachable_database_ends_a_real_command_in_one_line() -> None:
    url = "postgresql://cronstream:s3cret@127.0.0.1:1/cronstream"
    result = runner.invoke(app, ["--database-url", url, "migrate"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: cannot connect to postgresql://cronstream:***@127.0.0.1:1/")
    assert line.endswith("(start local services with 'make services')")
    assert "s3cret" not in result.output
