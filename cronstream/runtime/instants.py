"""Instants given as text by a user: ISO 8601 with a UTC offset, never a naive time.

A time without an offset would be read in the machine's zone, or as UTC, depending on
who reads it; both guesses are wrong somewhere, so it is refused with an example.
"""

from __future__ import annotations

from datetime import datetime

from cronstream.errors import CronstreamError
from cronstream.runtime.untrusted import shown


class InstantError(CronstreamError, ValueError):
    """A time option that is not an ISO 8601 time with a UTC offset; names the option."""

    exit_code = 2


def parse_instant(option: str, text: str) -> datetime:
    """`text` as an aware datetime; an InstantError naming `option` otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InstantError(f"{option} '{shown(text)}' is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InstantError(f"{option} '{shown(text)}' needs a UTC offset, e.g. {shown(text)}+00:00")
    return moment
