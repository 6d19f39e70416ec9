from __future__ import annotations

import re
from pathlib import Path

import pytest

from cronstream.queries import parse, queries

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


def test_every_query_named_in_code_exists() -> None:
    """A typo in query("...") would otherwise surface only at run time."""
    used = set()
    for package in ("cronstream", "schedulers", "streams", "handlers"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r'\bquery\("([a-z_0-9]+)"\)', path.read_text()))
    assert used, "expected the code to use named queries"
    assert used <= set(queries()), sorted(used - set(queries()))
