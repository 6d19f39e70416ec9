"""A replay's plan: the request resolved against Kafka (each partition's offsets) and
the consumer's checkpoints, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from cronstream.config.settings import Settings
from cronstream.kafka import clients, metadata
from cronstream.pg import connections
from cronstream.runtime.untrusted import shown
from cronstream.streams.replay.rebuild import check_dlq_topic, check_owner, check_schema
from cronstream.streams.replay.request import Mode, ReplayError, Request, to_millis
from cronstream.streams.sql import query


def offset_range(log_start: int, log_end: int, first: int | None, last: int | None) -> range:
    """The offsets to replay of a partition holding [log_start, log_end).

    `first`: the first offset asked (None: nothing, e.g. no record since --from-time);
    `last`: the last one asked, inclusive (None: to the end). Never past the log end
    captured at the start, never before the log start (older records are gone).
    """
    if first is None:
        return range(log_end, log_end)
    top = log_end - 1 if last is None else min(last, log_end - 1)
    return range(max(first, log_start), max(top + 1, max(first, log_start)))


@dataclass(frozen=True)
class PartitionPlan:
    """One partition's range and the consumer's checkpoint when the replay started."""

    partition: int
    offsets: range
    checkpoint: int  # -1: none

    @property
    def reapplied(self) -> int:
        """Records of the range at or below the checkpoint (re-applied in re-apply mode)."""
        return len(range(self.offsets.start, min(self.offsets.stop, self.checkpoint + 1)))

    @property
    def new_checkpoint(self) -> int:
        return max(self.checkpoint, self.offsets.stop - 1) if self.offsets else self.checkpoint

    def describe(self, mode: Mode, consumer: str) -> str:
        span = (
            f"offsets {self.offsets.start}..{self.offsets.stop - 1}"
            if self.offsets
            else "offsets none"
        )
        head = f"partition {self.partition}: {span}, {len(self.offsets)} records"
        c, new = self.checkpoint, self.new_checkpoint
        if mode == "re-apply":
            above = len(self.offsets) - self.reapplied
            return (
                f"{head}; re-applies {self.reapplied} at or below checkpoint {c}, "
                f"applies {above} above it (checkpoint {c} -> {new})"
            )
        skipped = f", skips {self.reapplied} at or below it (done before)" if self.reapplied else ""
        return f"{head}; consumer {consumer} checkpoint {c} -> {new}{skipped}"


@dataclass(frozen=True)
class Resumed:
    """The replay a plan resumes (streams/replay/resume.py): its id, and the handler
    modules it ran with."""

    replay_id: int
    handlers: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    request: Request
    consumer: str
    partitions: tuple[PartitionPlan, ...]
    resumes: Resumed | None = None

    @property
    def mode(self) -> Mode:
        return self.request.mode

    @property
    def total(self) -> int:
        return sum(len(p.offsets) for p in self.partitions)

    def lines(self) -> list[str]:
        where = f" into schema {self.request.schema}" if self.request.schema else ""
        again = f"resuming replay {self.resumes.replay_id}, " if self.resumes else ""
        what = f"{self.mode} of {self.request.asked.topic} for consumer {self.consumer}{where}"
        return [
            f"{again}{what}: {self.total} records",
            *(p.describe(self.mode, self.consumer) for p in self.partitions),
        ]

    def range_json(self) -> dict[str, Any]:
        return {
            "asked": self.request.recorded(),
            "resolved": {
                str(p.partition): {
                    "from": p.offsets.start,
                    "to": p.offsets.stop - 1,
                    "records": len(p.offsets),
                    "checkpoint": p.checkpoint,
                }
                for p in self.partitions
            },
        }


async def plan_replay(settings: Settings, request: Request) -> Plan:
    """Resolve the request against Kafka and the consumer's checkpoints; writes nothing."""
    topic = request.asked.topic
    consumer_name = request.asked.consumer or settings.consumer_group
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **clients.connection_options(settings))
    async with clients.started(consumer) as reader:
        # The cluster's metadata as fetched now; the consumer's own may not know the topic.
        cluster = await metadata.cluster_metadata(reader)
        existing = sorted(cluster.partitions_for_topic(topic) or ())
        if topic not in cluster.topics() or not existing:
            raise ReplayError(f"--topic '{shown(topic)}': no such topic")
        chosen = list(request.partitions) if request.partitions is not None else existing
        missing = [p for p in chosen if p not in existing]
        if missing:
            raise ReplayError(
                f"--partitions: {topic} has no partition {missing[0]} "
                f"(it has {len(existing)}: 0..{len(existing) - 1})"
            )
        tps = [TopicPartition(topic, p) for p in chosen]
        starts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
        firsts: dict[TopicPartition, int | None] = dict.fromkeys(tps, 0)  # --from-beginning
        if request.asked.from_offset is not None:
            firsts = dict.fromkeys(tps, request.asked.from_offset)
        elif request.from_time is not None:
            found = await reader.offsets_for_times(dict.fromkeys(tps, to_millis(request.from_time)))
            firsts = {tp: found[tp].offset if found.get(tp) else None for tp in tps}
        lasts: dict[TopicPartition, int | None] = dict.fromkeys(tps, request.asked.to_offset)
        if request.to_time is not None:
            found = await reader.offsets_for_times(dict.fromkeys(tps, to_millis(request.to_time)))
            lasts = {tp: found[tp].offset - 1 if found.get(tp) else None for tp in tps}
    async with connections.connection(settings) as connection:
        rows = await connection.fetch(query("replay_checkpoints"), consumer_name, topic)
        if request.schema is not None:
            check_dlq_topic(settings, request)
            await check_schema(connection, request.schema, request.like)
            checkpointed = any(row["offset"] >= 0 for row in rows)
            await check_owner(connection, request, checkpointed)
    done = {row["partition"]: row["offset"] for row in rows}
    return Plan(
        request=request,
        consumer=consumer_name,
        partitions=tuple(
            PartitionPlan(
                tp.partition,
                offset_range(starts[tp], ends[tp], firsts[tp], lasts[tp]),
                done.get(tp.partition, -1),
            )
            for tp in tps
        ),
    )
