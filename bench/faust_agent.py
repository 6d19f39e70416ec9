"""The plain faust agent a faust user writes: take batches, upsert, let faust commit.

usage: BENCH_TOPIC=... BENCH_GROUP=... BENCH_DATABASE_URL=... python -m bench.faust_agent
Each batch also adds its size to bench_progress, so the benchmark can see the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

import asyncpg
import faust
from faust.types import StreamT

from bench.loops import upsert
from cronstream.config.settings import Settings

PROGRESS_TABLE = "CREATE TABLE IF NOT EXISTS bench_progress (events bigint NOT NULL)"
ADVANCE = "UPDATE bench_progress SET events = events + $1"
ADVANCE = "UPDATE bench_progress SET events = events + $1"


def create_app() -> faust.App:
    settings = Settings()
    app = faust.App(
        os.environ["BENCH_GROUP"],
        broker=f"kafka://{settings.kafka_bootstrap}",
        value_serializer="raw",
        store="memory://",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw")

    async def apply(stream: StreamT[Any]) -> None:
        connection = await asyncpg.connect(os.environ["BENCH_DATABASE_URL"])
        async for values in stream.take(settings.batch_size, within=settings.batch_max_wait):
            async with connection.transaction():
                await upsert(connection, [json.loads(value) for value in values])
                await connection.execute(ADVANCE, len(values))

    app.agent(topic, name="bench.apply")(apply)
    return app


if __name__ == "__main__":
    sys.argv[1:] = ["worker", "--loglevel", "warn", "--without-web"]
    create_app().main()
