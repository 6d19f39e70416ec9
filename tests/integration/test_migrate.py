"""`cronstream migrate` against real Postgres: idempotent, locked, checksummed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cronstream.pg import migrate
from tests.integration.commands import copy_migrations, run_cli

SCHEMA = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public'
ORDER BY table_name, column_name
"""


async def fresh_database(database_url: str) -> asyncpg.Connection:
    """The test's database emptied of the template's tables, to migrate from scratch."""
    connection = await asyncpg.connect(database_url)
    await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return connection


async def test_migrate_twice_changes_nothing(database_url: str, cli_env: dict[str, str]) -> None:
    connection = await fresh_database(database_url)
    try:
        first = run_cli(["migrate"], cli_env)
        assert first.returncode == 0, first.stderr
        assert "applied 0001_init.sql" in first.stdout
        schema = await connection.fetch(SCHEMA)
        recorded = await connection.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert {
            "checkpoints",
            "cron_jobs",
            "cron_runs",
            "scan_watermarks",
            "entity_projection",
            "dead_letters",
        } <= {row["table_name"] for row in schema}

        second = run_cli(["migrate"], cli_env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "database is up to date"
        assert await connection.fetch(SCHEMA) == schema
        assert (
            await connection.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded
        )
    finally:
        await connection.close()


async def test_dry_run_lists_pending_and_applies_nothing(
    database_url: str, cli_env: dict[str, str]
) -> None:
    connection = await fresh_database(database_url)
    try:
        result = run_cli(["migrate", "--dry-run"], cli_env)
        assert result.returncode == 0, result.stderr
        expected = [m.filename for m in migrate.load(migrate.PACKAGED_MIGRATIONS)]
        assert result.stdout.split() == expected
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0, "a dry run writes nothing, schema_migrations included"
    finally:
        await connection.close()


async def test_dry_run_does_not_wait_for_the_migration_lock(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    copy_migrations(directory)
    (directory / "9001_more.sql").write_text("CREATE TABLE more (id int);\n")
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext('cronstream.pg.migrate'))")
        result = run_cli(
            ["migrate", "--dry-run", "--migrations-dir", str(directory)], cli_env, timeout=30
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["9001_more.sql"]
    finally:
        await holder.close()


async def test_migration_file_that_is_not_utf8_is_named(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    copy_migrations(directory)
    (directory / "9001_latin1.sql").write_bytes(b"-- caf\xe9\nSELECT 1;\n")
    result = run_cli(["migrate", "--migrations-dir", str(directory)], cli_env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 9001_latin1.sql: not UTF-8 text")
    assert result.stderr.count("\n") == 1


async def test_edited_applied_migration_is_refused_by_name(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    copy_migrations(directory)
    env = cli_env | {"CRONSTREAM_MIGRATIONS_DIR": str(directory)}
    (directory / "0001_init.sql").write_text(
        (directory / "0001_init.sql").read_text() + "\n-- an innocent edit\n"
    )
    result = run_cli(["migrate"], env)
    assert result.returncode == 1
    assert "0001_init.sql was changed after it was applied" in result.stderr


async def test_failing_migration_rolls_back_and_names_the_file(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    copy_migrations(directory)
    (directory / "9001_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    result = run_cli(["migrate", "--migrations-dir", str(directory)], cli_env)
    assert result.returncode == 1
    assert "9001_broken.sql failed and was rolled back" in result.stderr
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT to_regclass('half_done')") is None
        assert (
            await connection.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9001")
            == 0
        )
    finally:
        await connection.close()


async def test_concurrent_migrations_apply_each_file_once(database_url: str) -> None:
    await (await fresh_database(database_url)).close()
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.migrate(c) for c in connections))
        applied = sorted(m.filename for result in results for m in result)
        assert applied == [m.filename for m in migrate.load(migrate.PACKAGED_MIGRATIONS)]
    finally:
        for connection in connections:
            await connection.close()


async def test_connection_errors_never_show_the_password(
    database_url: str, cli_env: dict[str, str]
) -> None:
    parts = urlsplit(database_url)
    wrong = urlunsplit(
        parts._replace(netloc=f"{parts.username}:s3cret-pw@{parts.netloc.split('@')[1]}")
    )
    result = run_cli(["migrate"], cli_env | {"CRONSTREAM_DATABASE_URL": wrong})
    assert result.returncode == 1
    assert f"cannot connect to postgresql://{parts.username}:***@" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
