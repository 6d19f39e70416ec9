"""`make bench`: cronstream against what a user would write instead, in one run.

usage: python -m bench.run [--events N] [--large N] [--quick]

Every consuming arm reads a topic prefilled once per workload (6 partitions) into a
database of its own: N events (200,000) over N/2 distinct keys with payloads of about
200 bytes for every arm; the key consumer arms again on --large events (1,000,000); a
wide variant (N/2 events of 2 KB payloads over 10,000 keys); and N Debezium change
records (schemas on) through the worker's debezium format. Consumer arms are timed from
their first applied batch to the last event, so process start-up and the group join
are not counted. The last line printed is one JSON object; --quick runs every arm on a
few thousand events, to check the shape, not the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterable

from bench import debezium_records, loops
from bench.arms import (
    faust_agent_arm,
    handwritten_arm,
    publish_arm,
    quix_arm,
    say,
    worker_flag,
    workers_arm,
)
from bench.common import Arm, dump, ratio, records, workload
from bench.scenarios import e2e_latency, recovery, scan_emit_arm
from cronstream.config.settings import Settings
from cronstream.events import debezium, envelope
from cronstream.kafka import clients

WIDE_KEYS = 10_000


async def prefill(settings: Settings, topic: str, values: Iterable[tuple[bytes, bytes]]) -> Arm:
    """`topic` created and filled (making the records counted in its time)."""
    await clients.ensure_topics(settings, [topic])
    return await loops.raw_produce(settings, topic, values)


def shown(arms: dict[str, Arm]) -> dict[str, object]:
    return {name: arm.as_json() for name, arm in arms.items()}


def against(arms: dict[str, Arm]) -> dict[str, float | None]:
    """The batch worker's ratios to the other arms of one workload (batch_vs_quix: None
    when Quix did not run)."""
    batch = arms["cronstream_batch"]
    ratios: dict[str, float | None] = {"batch_vs_quix": None}
    for name in ("handwritten", "quix", "raw_read"):
        if name in arms:
            ratios[f"batch_vs_{name}"] = ratio(batch, arms[name])
    return ratios


async def consumers(
    settings: Settings, topic: str, n: int, keys: int, quix: str, names: Iterable[str]
) -> dict[str, Arm]:
    """The consumer arms `names` over `topic` (`n` events over `keys` keys), in order."""
    arms: dict[str, Arm] = {}
    for name in names:
        say(f"{name}: {n} events")
        if name == "raw_read":
            arms[name] = await loops.raw_read(settings, topic, n)
        elif name == "handwritten":
            arms[name] = await handwritten_arm(settings, topic, n)
        elif name == "cronstream_batch":
            arms[name] = await workers_arm(settings, topic, n, "batch")
        elif name == "cronstream_faust":
            arms[name] = await workers_arm(settings, topic, n, "faust")
        elif name == "faust_agent":
            arms[name] = await faust_agent_arm(settings, topic, n)
        elif name == "two_workers":
            arms[name] = await workers_arm(settings, topic, n, "batch", count=2)
        elif name == "quix" and quix:
            arms[name] = await quix_arm(settings, topic, n, keys, quix)
        elif name == "quix":
            say("quix: skipped (BENCH_QUIX_PYTHON names no Python with quixstreams)")
    return arms


async def processes_2(settings: Settings, topic: str, n: int) -> Arm | dict[str, str]:
    """One `cronstream worker --processes 2`; skipped (and said) only without the flag."""
    if not worker_flag("--processes"):
        reason = "cronstream worker --help offers no --processes"
        say(f"processes_2: skipped ({reason})")
        return {"skipped": reason}
    say(f"processes_2: {n} events")
    return await workers_arm(settings, topic, n, "batch", options=["--processes", "2"])


async def external_arm(
    settings: Settings, topic: str, n: int, name: str, values: Iterable[tuple[bytes, bytes]]
) -> Arm:
    """`n` records of format `name` read by a batch worker from an external topic, its
    envelope (sync_required) topic idle beside it, as in a deployment that reads CDC."""
    external = f"{topic}.{name}"
    say(f"{name}: prefilling {n} records")
    await prefill(settings, external, values)
    idle = f"{external}.sync"
    await clients.ensure_topics(settings, [idle])
    say(f"{name}: {n} records read as {external}:{name}")
    formats = f"{external}:{name}"
    return await workers_arm(settings, idle, n, "batch", CRONSTREAM_EXTERNAL_TOPICS=formats)


def decode_cost(n: int) -> dict[str, float]:
    """CPU microseconds a record to decode, in this process alone: the formats' own cost,
    apart from the worker's fetching and applying."""
    adapter = debezium.Adapter()
    changes = list(debezium_records.records(n, max(n // 2, 1)))
    envelopes = [value for _, value in records(workload(n, max(n // 2, 1)))]
    began = time.process_time()
    for value in envelopes:
        envelope.decode(value)
    middle = time.process_time()
    for key, value in changes:
        adapter(value, key, [])
    ended = time.process_time()
    return {
        "envelope": round((middle - began) / n * 1e6, 1),
        "debezium": round((ended - middle) / n * 1e6, 1),
    }


async def main(n: int, large: int, latency_seconds: float) -> dict[str, object]:
    began = time.perf_counter()
    settings = Settings()
    quix = os.environ.get("BENCH_QUIX_PYTHON", "")
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(settings, [topic, f"{topic}.raw"])
    keys = max(n // 2, 1)
    arms: dict[str, Arm] = {}
    say(f"raw_produce: {n} events")
    ready = list(records(workload(n, keys)))  # made before the clock starts
    arms["raw_produce"] = await loops.raw_produce(settings, f"{topic}.raw", ready)
    del ready
    say("publish: cronstream publish --file (fills the topic every consumer arm reads)")
    arms["publish"] = publish_arm(settings, topic, (e.encode() for e in workload(n, keys)))
    arms |= await consumers(
        settings,
        topic,
        n,
        keys,
        quix,
        ["raw_read", "handwritten", "cronstream_batch", "cronstream_faust", "faust_agent"],
    )
    arms |= await consumers(settings, topic, n, keys, quix, ["quix", "two_workers"])
    parallel = await processes_2(settings, topic, n)
    changes = debezium_records.records(n, keys)
    arms["debezium"] = await external_arm(settings, topic, n, "debezium", changes)
    envelopes = records(workload(n, keys))
    arms["envelope_external"] = await external_arm(settings, topic, n, "envelope", envelopes)
    decoding = decode_cost(min(n, 20_000))
    say(f"scan_emit: {n} flagged rows")
    arms["scan_emit"] = await scan_emit_arm(settings, n)
    say("e2e_latency_ms")
    latency = await e2e_latency(settings, latency_seconds)
    say("recovery_s")
    recovery_s = await recovery(settings)
    say("recovery_static_s: the same with CRONSTREAM_WORKER_ID (static membership)")
    recovery_static_s = await recovery(settings, CRONSTREAM_WORKER_ID="bench-worker-1")

    say(f"large: prefilling {large} events")
    large_topic, large_keys = f"{topic}.large", max(large // 2, 1)
    filled = await prefill(settings, large_topic, records(workload(large, large_keys)))
    large_arms = await consumers(
        settings,
        large_topic,
        large,
        large_keys,
        quix,
        ["raw_read", "handwritten", "cronstream_batch", "quix"],
    )
    wide_n, wide_keys = max(n // 2, 1), min(WIDE_KEYS, max(n // 4, 1))
    say(f"wide: prefilling {wide_n} events of 2 KB payloads")
    wide_topic = f"{topic}.wide"
    await prefill(settings, wide_topic, records(workload(wide_n, wide_keys, wide=True)))
    wide_arms = await consumers(
        settings, wide_topic, wide_n, wide_keys, quix, ["handwritten", "cronstream_batch", "quix"]
    )

    batch = arms["cronstream_batch"]
    return {
        "events": n,
        "partitions": settings.topic_partitions,
        "cpus": os.cpu_count(),
        **shown(arms),
        "processes_2": parallel if isinstance(parallel, dict) else parallel.as_json(),
        "e2e_latency_ms": latency,
        "recovery_s": recovery_s,
        "recovery_static_s": recovery_static_s,
        **against(arms),
        "batch_vs_faust_agent": ratio(batch, arms["faust_agent"]),
        "faust_engine_vs_handwritten": ratio(arms["cronstream_faust"], arms["handwritten"]),
        "two_workers_vs_one": ratio(arms["two_workers"], batch),
        "processes_2_vs_1": None if isinstance(parallel, dict) else ratio(parallel, batch),
        "debezium_vs_envelope": ratio(arms["debezium"], arms["envelope_external"]),
        "decode_us_per_record": decoding,
        "external_vs_sync_topic": ratio(arms["envelope_external"], batch),
        "publish_vs_raw_produce": ratio(arms["publish"], arms["raw_produce"]),
        "scan_vs_raw_produce": ratio(arms["scan_emit"], arms["raw_produce"]),
        "large": {
            "events": large,
            "prefill_s": round(filled.elapsed, 1),
            **shown(large_arms),
            **against(large_arms),
        },
        "wide": {
            "events": wide_n,
            "keys": wide_keys,
            "payload_bytes": len(next(iter(records(workload(1, 1, wide=True))))[1]),
            **shown(wide_arms),
            **against(wide_arms),
        },
        "wall_s": round(time.perf_counter() - began, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the topic")
    parser.add_argument("--large", type=int, default=1_000_000, help="events, key arms again")
    parser.add_argument("--quick", action="store_true", help="a few thousand events: the shape")
    options = parser.parse_args()
    n, large = (2000, 4000) if options.quick else (options.events, options.large)
    result = asyncio.run(main(n, large, 1.0 if options.quick else 5.0))
    print(dump(result))
    sys.stdout.flush()
