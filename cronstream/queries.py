"""Named SQL queries, kept in cronstream/sql/*.sql (the package beside this module).

Each file holds sections headed by a line `-- name --`; `queries()` maps every name
to its text. Names are unique across files.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_SECTION = re.compile(r"^-- ([a-z_][a-z0-9_]*) --$", re.MULTILINE)


def parse(text: str, origin: str) -> dict[str, str]:
    """Split one file's text into {name: query}."""
    parts = _SECTION.split(text)
    if parts[0].strip() and not all(
        line.startswith("--") or not line.strip() for line in parts[0].splitlines()
    ):
        raise ValueError(f"{origin}: SQL before the first '-- name --' header")
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"{origin}: query '{name}' is defined twice")
        if not body.strip():
            raise ValueError(f"{origin}: query '{name}' is empty")
        found[name] = body.strip()
    return found


@cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(resources.files("cronstream.sql").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, body in parse(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in found:
                raise ValueError(f"{entry.name}: query '{name}' is also defined elsewhere")
            found[name] = body
    return found


def query(name: str) -> str:
    return queries()[name]
