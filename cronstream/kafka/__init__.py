"""Kafka: client factories and the one sender (clients), broker health (health), the
cluster's metadata (metadata), the lenient reader of records aiokafka cannot parse
(salvage) and the value types naming a partition (structs). The only package that
touches aiokafka's private attributes. Imports config and runtime only.
"""

from cronstream.kafka.health import hold_back_retries

# Whoever talks to Kafka gets aiokafka's per-attempt retry errors held back (health.py).
hold_back_retries()
