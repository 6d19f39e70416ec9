"""Publishing events: validate and encode every input line first, then send those bytes.

Validation is a worker's decoding (`envelope.decode`): a line a worker would
dead-letter is refused here, with its line number. Each valid line is encoded to its
Kafka record during validation (lines) and spooled (spool), and the send pass (sender)
sends those records, so nothing fails mid-send for a reason a check could have found,
and the input is read once (stdin included).
"""

from cronstream.publish.lines import LineError, PublishLine, parse_line, read_lines
from cronstream.publish.sender import PublishResult, send
from cronstream.publish.spool import MAX_LISTED_ERRORS, Checked, check, spooled

__all__ = [
    "MAX_LISTED_ERRORS",
    "Checked",
    "LineError",
    "PublishLine",
    "PublishResult",
    "check",
    "parse_line",
    "read_lines",
    "send",
    "spooled",
]
