"""Versioned plain-SQL migrations: migrations/NNNN_name.sql, applied in order.

The repository's migrations/ folder ships inside the package as cronstream/migrations
(a symlink in the repository, package data in the wheel): PACKAGED_MIGRATIONS, read
with importlib.resources, so an installed cronstream needs no checkout.

Each applied file is recorded in schema_migrations with its SHA-256, so a file edited
after it was applied is refused instead of silently diverging. Runs take a Postgres
advisory lock, so concurrent `cronstream migrate` calls apply each file once. A dry run
only reads: no lock, no schema_migrations table created.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from cronstream.errors import CronstreamError
from cronstream.pg.sql import query

PACKAGED_MIGRATIONS: Traversable = resources.files("cronstream") / "migrations"

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(CronstreamError):
    """The migrations on disk and in the database disagree, or a file is malformed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str


def load(directory: Traversable) -> list[Migration]:
    """Read every migration file in `directory` (a Path, or packaged), ordered by version."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    files = (entry for entry in directory.iterdir() if entry.name.endswith(".sql"))
    for path in sorted(files, key=lambda entry: entry.name):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path.name} and {found[version].filename} share version {version:04d}"
            )
        try:
            sql = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise MigrationError(
                f"{path.name}: not UTF-8 text (byte {error.start}: {error.reason})"
            ) from None
        except OSError as error:
            raise MigrationError(f"{path.name}: cannot read it: {error.strerror}") from None
        found[version] = Migration(version, match.group(2), sql)
    return [found[version] for version in sorted(found)]


def pending(migrations: Sequence[Migration], applied: Iterable[Applied]) -> list[Migration]:
    """The migrations still to apply; refuses edited, missing or out-of-order files."""
    on_disk = {migration.version: migration for migration in migrations}
    applied_versions = set()
    for row in applied:
        applied_versions.add(row.version)
        migration = on_disk.get(row.version)
        name = f"{row.version:04d}_{row.name}.sql"
        if migration is None:
            raise MigrationError(
                f"{name} is applied in the database but missing from the migrations directory"
            )
        if migration.checksum != row.checksum:
            raise MigrationError(
                f"{migration.filename} was changed after it was applied "
                f"(checksum {row.checksum[:12]} in the database, {migration.checksum[:12]} "
                "on disk): restore it and put the change in a new migration"
            )
    todo = [m for m in migrations if m.version not in applied_versions]
    newest = max(applied_versions, default=0)
    late = [m.filename for m in todo if m.version < newest]
    if late:
        raise MigrationError(
            f"{', '.join(late)} sort before the newest applied migration "
            f"{newest:04d}: renumber them after it"
        )
    return todo


async def _applied(connection: asyncpg.Connection) -> list[Applied]:
    rows = await connection.fetch(query("migrations_applied"))
    return [Applied(row["version"], row["name"], row["checksum"]) for row in rows]


async def migrate(
    connection: asyncpg.Connection,
    directory: Traversable | None = None,
    *,
    dry_run: bool = False,
) -> list[Migration]:
    """Apply pending migrations (or only list them with dry_run, writing nothing); return them.

    `directory` None: the packaged migrations.
    """
    migrations = load(PACKAGED_MIGRATIONS if directory is None else directory)
    if dry_run:
        exists = await connection.fetchval(query("migrations_table_exists"))
        return pending(migrations, await _applied(connection) if exists else [])
    await connection.execute(query("migrations_lock"))
    try:
        await connection.execute(query("migrations_create_table"))
        todo = pending(migrations, await _applied(connection))
        for migration in todo:
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        query("migrations_record"),
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as error:
                raise MigrationError(
                    f"{migration.filename} failed and was rolled back: {error}"
                ) from error
        return todo
    finally:
        await connection.execute(query("migrations_unlock"))
