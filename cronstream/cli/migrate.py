"""`cronstream migrate`: apply the pending SQL migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cronstream.cli.options import env_option, settings_of
from cronstream.pg import migrate
from cronstream.pg.connections import connection


def migrate_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the pending migrations; write nothing, take no lock."),
    ] = False,
    migrations_dir: Annotated[
        Path | None,
        env_option(
            "migrations_dir",
            help="Folder of NNNN_name.sql files. "
            "(default: the migrations packaged with cronstream, the repository's migrations/)",
        ),
    ] = None,
) -> None:
    """Apply pending SQL migrations in order, under an advisory lock.

    Applied files are recorded with a checksum; a file changed after it was applied is
    refused. Running it twice changes nothing.
    """
    settings = settings_of(ctx)
    directory = migrations_dir or settings.migrations_dir

    async def apply() -> list[migrate.Migration]:
        async with connection(settings) as db:
            return await migrate.migrate(db, directory, dry_run=dry_run)

    done = asyncio.run(apply())
    if dry_run:
        for migration in done:
            typer.echo(migration.filename)
        typer.echo(f"{len(done)} pending", err=True)
    elif done:
        for migration in done:
            typer.echo(f"applied {migration.filename}")
    else:
        typer.echo("database is up to date")
