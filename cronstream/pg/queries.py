"""Named SQL queries, kept beside the code that runs them: each package's sql/*.sql.

Each file holds sections headed by a line `-- name --`. A package's `sql/__init__.py`
holds `query = Queries(__name__)`, and its modules call `query("name")`. Files are read
with importlib.resources, so an installed package needs no checkout.
"""

from __future__ import annotations

import re
from functools import cached_property
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


class Queries:
    """The named queries of one package's *.sql files; call it with a name."""

    def __init__(self, package: str) -> None:
        self.package = package

    @cached_property
    def named(self) -> dict[str, str]:
        found: dict[str, str] = {}
        files = resources.files(self.package).iterdir()
        for entry in sorted(files, key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            for name, body in parse(entry.read_text(encoding="utf-8"), entry.name).items():
                if name in found:
                    raise ValueError(f"{entry.name}: query '{name}' is also defined elsewhere")
                found[name] = body
        return found

    def __call__(self, name: str) -> str:
        return self.named[name]
