from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from cronstream.pg.queries import Queries, parse

ROOT = Path(__file__).resolve().parents[2]


def test_sections_are_split_by_name() -> None:
    text = "-- file comment\n\n-- one --\nSELECT 1\n\n-- two --\nSELECT $1\n"
    assert parse(text, "f.sql") == {"one": "SELECT 1", "two": "SELECT $1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- a --\nSELECT 1\n-- a --\nSELECT 2\n", "defined twice"),
        ("-- a --\n\n-- b --\nSELECT 1\n", "'a' is empty"),
        ("SELECT 1\n-- a --\nSELECT 2\n", "before the first"),
    ],
)
def test_malformed_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text, "f.sql")


SQL_PACKAGES = ("cronstream", "handlers", "schedulers", "streams")


def test_every_query_named_in_code_exists_in_its_package() -> None:
    """A typo in query("...") would otherwise surface only at run time. Each module calls
    the `query` of the package whose sql/ it imports."""
    checked = 0
    for path in [p for folder in SQL_PACKAGES for p in (ROOT / folder).glob("**/*.py")]:
        text = path.read_text()
        imported = re.search(r"^from (cronstream(?:\.\w+)*)\.sql import query$", text, re.M)
        used = set(re.findall(r'\bquery\("([a-z_0-9]+)"\)', text))
        if not used or path.name == "queries.py":  # queries.py defines query(), in its docstring
            continue
        assert imported, f"{path} calls query() without importing a package's query"
        queries: Queries = importlib.import_module(f"{imported[1]}.sql").query
        assert used <= set(queries.named), f"{path}: {sorted(used - set(queries.named))}"
        checked += 1
    assert checked >= 8, "expected the code to use named queries"
