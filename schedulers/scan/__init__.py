"""Scan jobs: turn Postgres rows that need it into sync_required events.

Modes, like Kafka Connect's JDBC source but without its holes, one module each:
`flag` (flag.py), `watermark` (watermark.py) and `outbox` (outbox.py). base.py holds
what they share: pages emitted, acknowledged by Kafka, then marked, and rejected rows
recorded. `scanner_for` picks the job's.
"""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.schedulers.jobs import ScanConfig
from cronstream.schedulers.scan.base import ScanBlocked, Scanner
from cronstream.schedulers.scan.flag import FlagScanner
from cronstream.schedulers.scan.outbox import OutboxScanner
from cronstream.schedulers.scan.watermark import WatermarkScanner

__all__ = ["ScanBlocked", "Scanner", "scanner_for"]

MODES: dict[str, type[Scanner]] = {
    "flag": FlagScanner,
    "watermark": WatermarkScanner,
    "outbox": OutboxScanner,
}


def scanner_for(
    job: str,
    config: ScanConfig,
    connection: asyncpg.Connection,
    producer: AIOKafkaProducer,
    topic: str,
    trace_id: str,
) -> Scanner:
    """The scanner of `config.mode` for one scan of `job`."""
    return MODES[config.mode](job, config, connection, producer, topic, trace_id)
