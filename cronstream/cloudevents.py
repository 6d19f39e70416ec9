"""CloudEvents 1.0 on Kafka, binary and structured mode, as cronstream events."""

from __future__ import annotations

from collections.abc import Sequence

from cronstream.envelope import WHOLE_VALUE, EnvelopeError, Event


class Adapter:
    """Maps one CloudEvents record to an Event; `entity` overrides the `entity` extension."""

    def __init__(self, entity: str | None = None) -> None:
        self.entity = entity

    def __call__(
        self, value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> Event | None:
        raise EnvelopeError(WHOLE_VALUE, "CloudEvents are not mapped yet")
