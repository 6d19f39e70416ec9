"""What became of a batch: applied, dropped as duplicates, or dead-lettered, and the
checkpoints it committed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka.structs import PartitionKey


@dataclass(frozen=True)
class DeadLetter:
    """A record the protocol could not apply, why, and after how many attempts."""

    record: ConsumedRecord
    error: str
    attempts: int


@dataclass
class Outcome:
    """A batch's fate: counts per topic (for metrics), dead letters, new checkpoints,
    and the trace ids of the events given to handlers (distinct, in offset order)."""

    applied_by_topic: Counter[str] = field(default_factory=Counter)
    duplicates_by_topic: Counter[str] = field(default_factory=Counter)
    without_event: int = 0  # records that carry no event (Debezium tombstones)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    checkpoints: dict[PartitionKey, int] = field(default_factory=dict)
    trace_ids: dict[str, None] = field(default_factory=dict)  # an ordered set
    trace_id: str | None = None  # the batch's own, set by whoever runs it (BatchLoop)

    @property
    def applied(self) -> int:
        return self.applied_by_topic.total()

    @property
    def duplicates(self) -> int:
        return self.duplicates_by_topic.total()

    def merge(self, later: Outcome) -> Outcome:
        """This outcome followed by a later one of the same batch."""
        return Outcome(
            applied_by_topic=self.applied_by_topic + later.applied_by_topic,
            duplicates_by_topic=self.duplicates_by_topic + later.duplicates_by_topic,
            without_event=self.without_event + later.without_event,
            dead_letters=self.dead_letters + later.dead_letters,
            checkpoints=self.checkpoints | later.checkpoints,
            trace_ids=self.trace_ids | later.trace_ids,
            trace_id=self.trace_id,
        )
