from __future__ import annotations

from pathlib import Path

import pytest

from cronstream.pg.migrate import (
    PACKAGED_MIGRATIONS,
    Applied,
    Migration,
    MigrationError,
    load,
    pending,
)


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def applied(migration: Migration) -> Applied:
    return Applied(migration.version, migration.name, migration.checksum)


def test_load_orders_by_version(tmp_path: Path) -> None:
    write(tmp_path, {"0002_b.sql": "SELECT 2", "0001_a.sql": "SELECT 1", "0010_c.sql": "x"})
    assert [m.filename for m in load(tmp_path)] == ["0001_a.sql", "0002_b.sql", "0010_c.sql"]


@pytest.mark.parametrize("name", ["1_init.sql", "0001-init.sql", "0001_Init.sql", "init.sql"])
def test_badly_named_file_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, {name: "SELECT 1"})
    with pytest.raises(MigrationError, match=name):
        load(tmp_path)


@pytest.mark.parametrize("content", [b"SELECT '\xff'", b"\xfe\xff\x00S", b"-- caf\xe9\nSELECT 1"])
def test_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0002_latin1.sql").write_bytes(content)
    with pytest.raises(MigrationError, match=r"^0002_latin1\.sql: not UTF-8 text"):
        load(tmp_path)


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"0001_a.sql": "x", "0001_b.sql": "y"})
    with pytest.raises(MigrationError, match="share version 0001"):
        load(tmp_path)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load(tmp_path / "nope")


def test_pending_skips_applied() -> None:
    first, second = Migration(1, "a", "x"), Migration(2, "b", "y")
    assert pending([first, second], []) == [first, second]
    assert pending([first, second], [applied(first)]) == [second]
    assert pending([first, second], [applied(first), applied(second)]) == []


def test_changed_applied_file_is_refused_by_name() -> None:
    original = Migration(1, "init", "CREATE TABLE t (id int)")
    edited = Migration(1, "init", "CREATE TABLE t (id bigint)")
    with pytest.raises(MigrationError, match=r"0001_init\.sql was changed after it was applied"):
        pending([edited], [applied(original)])


def test_applied_file_missing_on_disk_is_refused() -> None:
    gone = Migration(3, "gone", "x")
    with pytest.raises(MigrationError, match=r"0003_gone\.sql is applied"):
        pending([Migration(1, "a", "x")], [applied(Migration(1, "a", "x")), applied(gone)])


def test_new_file_numbered_before_applied_ones_is_refused() -> None:
    first, late, third = Migration(1, "a", "x"), Migration(2, "late", "y"), Migration(3, "c", "z")
    with pytest.raises(MigrationError, match=r"0002_late\.sql sort before"):
        pending([first, late, third], [applied(first), applied(third)])


def test_repository_migrations_load() -> None:
    migrations = load(PACKAGED_MIGRATIONS)
    assert migrations[0].filename == "0001_init.sql"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def test_packaged_migrations_are_the_repository_folder() -> None:
    """cronstream/migrations links to the repository's migrations/ (and ships as package data)."""
    repository = Path(__file__).resolve().parents[2] / "migrations"
    packaged = {entry.name: entry.read_bytes() for entry in PACKAGED_MIGRATIONS.iterdir()}
    assert packaged == {path.name: path.read_bytes() for path in repository.iterdir()}
