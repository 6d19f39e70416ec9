"""Kafka: client factories and the one sender (clients), broker health (health) and the
lenient reader of records aiokafka cannot parse (salvage). The only package that touches
aiokafka's private attributes. Imports config and runtime only.
"""

from cronstream.kafka.health import hold_back_retries

# Whoever talks to Kafka gets aiokafka's per-attempt retry errors held back (health.py).
hold_back_retries()
