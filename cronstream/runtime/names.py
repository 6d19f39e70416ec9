"""The rules for names that come from outside: event types and entities, SQL identifiers."""

from __future__ import annotations

import re

# An event type's or entity's name (a pydantic `pattern`: anchored).
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
# An entity named by settings or derived from a change record: short enough for
# "<entity>_snapshot" to fit an event type's 200 characters.
ENTITY_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,180}")
# One plain SQL identifier part; fullmatch, not `$`: `$` also matches before a newline.
SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
NOT_AN_IDENTIFIER = "is not a plain SQL identifier (letters, digits, _)"


def is_identifier(value: str, qualified: bool = True) -> bool:
    """`name`, or `schema.name` when `qualified`, made of plain SQL identifiers."""
    parts = value.split(".")
    return len(parts) <= (2 if qualified else 1) and all(map(SQL_IDENTIFIER.fullmatch, parts))


def is_system_schema(schema: str) -> bool:
    """pg_catalog, information_schema, pg_toast, pg_temp_N, pg_toast_temp_N and the like:
    Postgres keeps the pg_ prefix for its own schemas (CREATE SCHEMA refuses it). Any
    case: an unquoted PG_CATALOG is pg_catalog to Postgres."""
    folded = schema.lower()
    return folded == "information_schema" or folded.startswith("pg_")


def quote(name: str) -> str:
    """A checked identifier quoted for SQL text, each part of `schema.name` apart."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
