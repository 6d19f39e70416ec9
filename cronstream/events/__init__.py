"""Events: the envelope and its strict JSON rules, the format registry and the Debezium and
CloudEvents adapters. Imports config and runtime only.
"""

# Each adapter registers its format with events.formats when imported.
from cronstream.events import cloudevents, debezium

__all__ = ["cloudevents", "debezium"]
