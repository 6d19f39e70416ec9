"""What every command shares: options that name their variable, the settings they make,
and the one way a command ends with an error line and an exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from cronstream.cli.compose import load_settings
from cronstream.config.settings import Settings, env_var


def env_option(field: str, *names: str, **options: Any) -> Any:
    """A typer.Option that CRONSTREAM_<FIELD> also sets, and whose --help says so."""
    return typer.Option(*names, envvar=env_var(field), show_envvar=True, **options)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_of(ctx: typer.Context, **overrides: object) -> Settings:
    """Settings from the environment, the global options and this command's `overrides`
    (those not None); bad values end the command (SettingsError)."""
    ctx.obj |= {name: value for name, value in overrides.items() if value is not None}
    return load_settings(**ctx.obj)


EngineOption = Annotated[
    Literal["batch", "faust"] | None,
    env_option(
        "engine",
        help="batch: an aiokafka consumer applying whole polls (fastest). faust: the "
        "checkpointed faust agent, as in your own faust app. (default: batch)",
    ),
]
HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Module with a register(registry) function adding handlers; repeatable. "
        f"Also read, comma-separated, from {env_var('handlers')}.",
    ),
]
ExternalTopicsOption = Annotated[
    str | None,
    env_option(
        "external_topics",
        help="External change topics to consume besides sync_required, comma-separated, "
        "each topic[:format[:entity]]: format envelope (default), debezium or "
        "cloudevents; entity overrides the records' own. Unhandled types go to the "
        "projection, and a type ending in _deleted or .deleted marks its row deleted.",
    ),
]
JobsFileOption = Annotated[
    Path | None,
    env_option(
        "jobs_file",
        "--jobs-file",
        help="TOML file of cron jobs (see schedulers/jobs.py); cron_jobs rows are added to it.",
    ),
]
