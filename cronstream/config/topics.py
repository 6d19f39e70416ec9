"""Input topic specs: `topic[:format[:entity]]`, comma-separated (CRONSTREAM_EXTERNAL_TOPICS).

Config names the formats only; each adapter in cronstream/events registers its decoder
under its name (events/formats.py), so config imports no adapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cronstream.runtime.names import ENTITY_NAME

FormatName = Literal["envelope", "debezium", "cloudevents"]
FORMATS: tuple[FormatName, ...] = ("envelope", "debezium", "cloudevents")

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._\-]{1,249}")


@dataclass(frozen=True)
class TopicFormat:
    """An input topic's format, and the entity that overrides the records' own, if any."""

    name: FormatName = "envelope"
    entity: str | None = None


ENVELOPE = TopicFormat()


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_topic_formats(value: str) -> dict[str, TopicFormat]:
    """`topic[:format[:entity]]`, comma-separated, as topic -> its format."""
    formats: dict[str, TopicFormat] = {}
    for item in comma_list(value):
        parts = [part.strip() for part in item.split(":")]
        if len(parts) > 3:
            raise ValueError(
                f"'{item}': expected topic[:format[:entity]], found {len(parts)} parts"
            )
        topic, name, entity = [*parts, "", ""][:3]
        name = name or "envelope"
        if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
            raise ValueError(f"'{item}': the topic name must be 1-249 of A-Z a-z 0-9 . _ -")
        if name not in FORMATS:
            raise ValueError(f"'{item}': unknown format '{name}' (use {', '.join(FORMATS)})")
        if entity and name == "envelope":
            raise ValueError(f"'{item}': an entity is for debezium and cloudevents topics")
        if entity and not ENTITY_NAME.fullmatch(entity):
            raise ValueError(f"'{item}': the entity must be 1-180 of A-Z a-z 0-9 . _ -")
        given = TopicFormat(name, entity or None)
        if formats.setdefault(topic, given) != given:
            raise ValueError(f"'{topic}' is given twice, with different formats")
    return formats
