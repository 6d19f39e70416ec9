"""The check pass of publish: every line validated, the valid ones' records spooled to a
file of our own, read back in order by the send pass."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from cronstream.publish.lines import LineError, PublishLine, read_lines

# Errors one report lists (a publish run, a POST /events answer): enough to fix them.
MAX_LISTED_ERRORS = 50
# Records pickled together: one pickle call per record cost more than the sending.
CHUNK = 1000


@dataclass
class Checked:
    valid: int = 0
    invalid: int = 0
    errors: list[LineError] = field(default_factory=list)  # the first `limit` of them


def check(
    stream: IO[bytes], source: str, spool: IO[bytes] | None = None, limit: int = MAX_LISTED_ERRORS
) -> Checked:
    """Validate every line; write the valid ones' records to `spool`, keep `limit` errors."""
    checked = Checked()
    chunk: list[PublishLine] = []
    for parsed in read_lines(stream, source):
        if isinstance(parsed, LineError):
            checked.invalid += 1
            if len(checked.errors) < limit:
                checked.errors.append(parsed)
            continue
        checked.valid += 1
        if spool is not None:
            chunk.append(parsed)
            if len(chunk) == CHUNK:
                _write(spool, chunk)
    if spool is not None and chunk:
        _write(spool, chunk)
    return checked


def _write(spool: IO[bytes], chunk: list[PublishLine]) -> None:
    # Our own temporary file, written just now: pickle is safe and quick here.
    pickle.dump([tuple(record) for record in chunk], spool, pickle.HIGHEST_PROTOCOL)
    chunk.clear()


def spooled(spool: IO[bytes]) -> Iterator[PublishLine]:
    """The records `check` wrote to `spool`, in order."""
    spool.seek(0)
    while True:
        try:
            chunk = pickle.load(spool)
        except EOFError:
            return
        yield from map(PublishLine._make, chunk)
