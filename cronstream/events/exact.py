"""JSON with exact numbers: a numeric column or a jsonb number is a `decimal.Decimal`,
parsed from and written as its digits, never through a float (whose 17 digits would
change 3.14159265358979323846 and 12345678901234567890.12).

Postgres's jsonb holds any number its numeric type does: up to 131072 digits before the
decimal point and 16383 after; a number past that would fail the upsert, so it is
refused here, with a reason.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic_core import to_json

MAX_INTEGER_DIGITS = 131072
MAX_SCALE = 16383


def numeric(number: Decimal) -> Decimal:
    """`number` when Postgres's numeric can hold it, else a ValueError."""
    if not number.is_finite():
        raise ValueError(f"{number} is not a JSON number")
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    if -exponent > MAX_SCALE or len(digits) + exponent > MAX_INTEGER_DIGITS:
        raise ValueError(f"number {str(number)[:40]} is out of Postgres numeric's range")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """JSON text with each fraction or exponent number as an exact Decimal (integers stay
    int); a ValueError for NaN, Infinity and numbers numeric cannot hold."""
    return json.loads(text, parse_float=lambda digits: numeric(Decimal(digits)),
                      parse_constant=_no_constant)  # fmt: skip


def plain(number: Decimal) -> str:
    """A Decimal as Postgres's numeric::text writes it: `0.00000000000000000001`, never
    `1E-20` (for bounded scales: a numeric column's, not any jsonb number)."""
    return format(number, "f")


def _has_decimal(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is Decimal:
            return True
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False


def _text(value: Any) -> str:
    kind = type(value)
    if kind is Decimal:
        # Valid JSON digits for any finite Decimal (`1.50`, `1E+400`); Postgres's to_jsonb
        # writes numeric NaN and infinities as strings, and so does this.
        return str(value) if value.is_finite() else '"NaN"' if value.is_nan() else f'"{value}"'
    if kind is dict:
        items = (f"{to_json(key).decode()}:{_text(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if kind is list:
        return "[" + ",".join(_text(item) for item in value) + "]"
    return to_json(value).decode()


def dumps(value: Any) -> str:
    """Compact JSON text of `value`, each Decimal written as its exact digits."""
    return _text(value) if _has_decimal(value) else to_json(value).decode()
