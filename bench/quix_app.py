"""The Quix Streams arm: its own PostgreSQLSink, upsert on the primary key, its defaults.

Runs under the Python of a virtualenv with `quixstreams[postgresql]` (`make bench`
makes one: it pins dependencies of its own), so it imports nothing of cronstream.
usage: BENCH_TOPIC=... BENCH_GROUP=... BENCH_DATABASE_URL=... BENCH_MARKER=file python quix_app.py
The first message's time goes to BENCH_MARKER, so the benchmark times it like the
other arms: from the first record processed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink

TABLE = "quix_projection"


def main() -> None:
    url = urlsplit(os.environ["BENCH_DATABASE_URL"])
    app = Application(
        broker_address=os.environ["CRONSTREAM_KAFKA_BOOTSTRAP"],
        consumer_group=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
        loglevel="WARNING",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], value_deserializer="json")
    marker = Path(os.environ["BENCH_MARKER"])
    started: list[float] = []

    def row(value: dict[str, Any]) -> dict[str, Any]:
        if not started:
            started.append(time.time())
            marker.write_text(str(started[0]))
        return {
            "entity": value["entity"],
            "key": str(value["key"]),
            "version": value.get("version"),
            "occurred_at": value["occurred_at"],
            "payload": json.dumps(value["payload"]),
            "event_id": value["id"],
            "source": value["source"],
        }

    sink = PostgreSQLSink(
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        dbname=url.path.lstrip("/"),
        user=url.username or "",
        password=url.password or "",
        table_name=TABLE,
        primary_key_columns=["entity", "key"],
        upsert_on_primary_key=True,
        include_metadata=False,
    )
    app.dataframe(topic).apply(row).sink(sink)
    app.run()


if __name__ == "__main__":
    main()
