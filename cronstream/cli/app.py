"""The `cronstream` typer app: its global options, its commands, and the one place that
turns a known error into its one-line message and exit code."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import typer
from aiokafka.errors import KafkaError
from typer.core import TyperGroup

from cronstream.cli import dlq, jobs, migrate, publish, replay, status, worker
from cronstream.cli.options import env_option, fail
from cronstream.config.settings import env_var
from cronstream.errors import START_SERVICES, CronstreamError
from cronstream.runtime import logs


class Commands(TyperGroup):
    """The command group that ends any command failing with a known error in one line."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except CronstreamError as error:
            fail(error.cli_line(), error.exit_code)
        except KafkaError as error:
            fail(f"Kafka: {type(error).__name__}: {error} ({START_SERVICES})")
        except asyncpg.UndefinedTableError as error:
            fail(f"Postgres: {error}: the database is not migrated; run 'cronstream migrate'")
        except asyncpg.InsufficientPrivilegeError as error:
            fail(f"Postgres: {error}")


app = typer.Typer(
    cls=Commands,
    help="cronstream: cron-driven Postgres scanners feeding Kafka, and stream workers that "
    "apply events to Postgres exactly once with checkpoints.\n\n"
    "Every option that has an environment variable names it; all variables start "
    "with CRONSTREAM_.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs to the terminal width
)


@app.callback()
def root(
    ctx: typer.Context,
    kafka_bootstrap: Annotated[
        str | None,
        env_option(
            "kafka_bootstrap",
            help="Kafka bootstrap servers, host:port[,host:port]. (default: 127.0.0.1:9092)",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        env_option(
            "database_url",
            help="PostgreSQL URL; its password is never printed. "
            "(default: postgresql://cronstream:***@127.0.0.1:5432/cronstream)",
        ),
    ] = None,
    log_level: Annotated[
        str,
        env_option(
            "log_level",
            help="DEBUG, INFO, WARNING, ERROR or CRITICAL. Unless DEBUG, the Kafka and faust "
            "libraries log only warnings and errors.",
        ),
    ] = "INFO",
    log_format: Annotated[
        Literal["json", "text"],
        env_option("log_format", help="Log line format."),
    ] = "json",
) -> None:
    try:
        logs.configure(log_level, log_format)
    except ValueError as error:
        fail(f"--log-level ({env_var('log_level')}): {error}", 2)
    overrides = {"kafka_bootstrap": kafka_bootstrap, "database_url": database_url}
    ctx.obj = {name: value for name, value in overrides.items() if value is not None}


# In the order `cronstream --help` lists them.
app.command("migrate")(migrate.migrate_command)
app.command("publish")(publish.publish_command)
app.command("worker")(worker.worker_command)
app.command("scheduler")(worker.scheduler_command)
app.command("run")(worker.run_command)
app.command("replay")(replay.replay_command)
app.command("status")(status.status_command)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(dlq.dlq_app, name="dlq")


def main() -> None:
    app()
