"""Dead letters an operator can act on: listed per topic and reason, shown one by one
with the record they wrap, and re-driven through the handlers once their cause is fixed.

Modules: letters (a dead-letter topic's record read back: our headers, the original
record, or why it is no dead letter), reading (one pass over a dead-letter topic),
views (`dlq list` and `dlq show`), redrive (`dlq redrive`: applied exactly once, or
recorded again). The `dead_letters` rows are the truth of what is unresolved
(migrations/0007_dead_letter_redrive.sql); the topic holds the records.
"""

from cronstream.streams.dlq.letters import Garbled, Letter, read_letter
from cronstream.streams.dlq.reading import DlqError, LetterReader, Unreadable
from cronstream.streams.dlq.redrive import Filters, Redrive, Redriven
from cronstream.streams.dlq.views import ReasonCount, Shown, reason_counts, show

__all__ = [
    "DlqError",
    "Filters",
    "Garbled",
    "Letter",
    "LetterReader",
    "ReasonCount",
    "Redrive",
    "Redriven",
    "Shown",
    "Unreadable",
    "read_letter",
    "reason_counts",
    "show",
]
