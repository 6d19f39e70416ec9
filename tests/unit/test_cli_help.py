"""Every command explains itself, and every option with a variable names it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cronstream.cli import app, compose
from cronstream.config.settings import Settings, SettingsError
from cronstream.handlers.registry import Registry

runner = CliRunner()
COMMANDS = ["migrate", "publish", "worker", "scheduler", "run", "jobs", "status"]


def test_root_help_lists_commands_and_env_vars() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "CRONSTREAM_KAFKA_BOOTSTRAP" in result.output
    assert "CRONSTREAM_DATABASE_URL" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 5


def test_help_never_prints_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_DATABASE_URL", "postgresql://u:hunter2@h/db")
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert "hunter2" not in result.output


def test_bad_setting_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONSTREAM_BATCH_SIZE", "lots")
    result = runner.invoke(app, ["migrate", "--dry-run"])
    assert result.exit_code == 2
    assert "CRONSTREAM_BATCH_SIZE" in result.output


def test_single_event_needs_entity_and_key() -> None:
    result = runner.invoke(app, ["publish", "--entity", "a"])
    assert result.exit_code == 2
    assert "needs --entity and --key" in result.output


def test_file_and_single_event_options_exclude_each_other() -> None:
    result = runner.invoke(app, ["publish", "--file", "x.jsonl", "--key", "1"])
    assert result.exit_code == 2


def test_payload_must_be_a_json_object() -> None:
    result = runner.invoke(app, ["publish", "--entity", "a", "--key", "1", "--payload", "[1]"])
    assert result.exit_code == 2
    assert "JSON object" in result.output


def test_unknown_handler_module_is_one_clear_error() -> None:
    result = runner.invoke(app, ["worker", "--handlers", "no_such_handlers_module"])
    assert result.exit_code == 2
    assert "cannot import handler module 'no_such_handlers_module'" in result.output


def test_worker_help_explains_processes_and_run_says_it_is_one() -> None:
    worker_help = runner.invoke(app, ["worker", "--help"]).output
    text = " ".join(worker_help.split())  # the docstring, reflowed to any width
    assert "--processes" in worker_help
    assert "--processes N (or auto) runs N workers of the same group under one" in text
    assert "each need their own CRONSTREAM_HTTP_PORT (or 0)" in text
    run_help = " ".join(runner.invoke(app, ["run", "--help"]).output.split())
    assert "One process always: CRONSTREAM_WORKER_PROCESSES is ignored here" in run_help


def test_handlers_registered_in_code_cannot_reach_other_processes() -> None:
    with pytest.raises(SettingsError, match="CRONSTREAM_WORKER_PROCESSES: handlers registered"):
        compose.run_worker(Settings(worker_processes=2), registry=Registry())
