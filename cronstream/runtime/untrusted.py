"""Text from outside made safe to store: Postgres text refuses NUL, UTF-8 refuses surrogates.

Error messages quote untrusted input (keys, field names, values); before such text goes
into a Postgres column or a Kafka header it passes through here, or one hostile value
makes the write itself fail, again on every retry. A message that says what kind of
JSON value came names it as JSON does (`json_type_name`), never as Python does.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal


def safe_text(text: str, limit: int = 2000) -> str:
    """`text` with NUL and lone surrogates escaped, cut to at most `limit` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def safe_bytes(text: str, limit: int) -> bytes:
    """`safe_text` as UTF-8, at most `limit` bytes, never cut inside a character."""
    encoded = safe_text(text, limit).encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", "ignore").encode("utf-8")


def shown(text: str) -> str:
    """Untrusted text made safe for a one-line message: escaped and cut short."""
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped if len(escaped) <= 80 else escaped[:77] + "..."


def shown_bytes(data: bytes | None, limit: int = 4000) -> str:
    """Untrusted bytes for a terminal: UTF-8 as text, other bytes as \\xNN, control and
    format characters escaped (no escape sequence reaches the terminal), newlines kept,
    cut to about `limit` characters with the size said."""
    if data is None:
        return "(null)"
    text = data.decode("utf-8", "backslashreplace")
    escaped = "".join(
        char if char == "\n" or unicodedata.category(char)[0] != "C" else _escape(char)
        for char in text[:limit]
    )
    return escaped if len(text) <= limit else f"{escaped}... ({len(data)} bytes in all)"


def _escape(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def json_type_name(value: object) -> str:
    """What kind of JSON value `value` is, in JSON's words: null, boolean, number, string,
    array or object (never Python's: `NoneType`, `dict`, `Decimal`). A value no JSON
    parser returns (a TOML date-time, say) is "value"."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "value"
