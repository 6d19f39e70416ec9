"""How the protocol classifies a failure: an outage (retry the batch as it is) or the
records' fault (narrow it down to them and dead-letter them).

An outage is Postgres or Kafka unreachable, a lock or statement timeout on the
protocol's own queries, a deadlock: the same batch may pass once it clears. Anything
else raised while a batch is applied is blamed on its records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg
from aiokafka.errors import KafkaError

from cronstream.errors import CronstreamError

if TYPE_CHECKING:
    from cronstream.handlers.outcomes import DeadLetter


class Outage(CronstreamError):
    """Postgres or Kafka unavailable mid-batch; nothing of the batch was committed. Retry it."""

    retriable = True


class DeadLettersNotSent(CronstreamError):
    """Some dead letters were not sent (Kafka unavailable); `sent` were."""

    retriable = True

    def __init__(self, sent: Sequence[DeadLetter], cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.sent = list(sent)


# Raised inside a handler, these say the database is busy, not that the events are bad.
# (A statement timeout in a handler counts as the handler's failure: it may be the events.)
TRANSIENT_IN_HANDLERS = (
    asyncpg.LockNotAvailableError,  # lock_timeout: e.g. a zombie still holds a checkpoint row
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

# Failures that say nothing about the records: the same batch may pass once they clear.
_OUTAGES = (
    *TRANSIENT_IN_HANDLERS,
    OSError,  # includes ConnectionError and TimeoutError
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,  # statement_timeout outside a handler
    KafkaError,  # the dead-letter producer; its size error is handled where it is sent
)


def is_outage(error: BaseException) -> bool:
    """Our own retriable errors (Outage, DatabaseUnavailable, ...) or a driver's."""
    retriable = isinstance(error, CronstreamError) and error.retriable
    return retriable or isinstance(error, _OUTAGES)
