"""Resuming a replay (`cronstream replay --resume ID`): the plan its `replays` row
recorded, each partition from the offset after the position its batches recorded
(`replay_positions`, written in each batch's transaction), under the same id.

A re-apply goes on re-applying through the checkpoints recorded when it began, not
today's: records above them were applied since by the live workers (or by it), once,
and are not applied again. A replay still running (its process holds its lock) or one
that succeeded is refused.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from cronstream.config.settings import Settings
from cronstream.pg import connections
from cronstream.runtime.untrusted import shown
from cronstream.streams.replay.plan import PartitionPlan, Plan, Resumed
from cronstream.streams.replay.rebuild import check_dlq_topic, check_owner, check_schema
from cronstream.streams.replay.request import Asked, ReplayError, Request, check
from cronstream.streams.sql import query


async def plan_resume(settings: Settings, replay_id: int, rate_limit: float | None) -> Plan:
    """The rest of replay `replay_id`; writes nothing. `rate_limit`: instead of its own."""
    async with connections.connection(settings) as connection:
        row = await connection.fetchrow(query("replay_row"), replay_id)
        if row is None:
            raise ReplayError(f"--resume {replay_id}: no such replay")
        if row["status"] == "succeeded":
            raise ReplayError(f"--resume {replay_id}: it succeeded, nothing is left to replay")
        # Released when this connection closes, below; the replay takes it for good.
        if not await connection.fetchval(query("replay_try_hold"), replay_id):
            raise ReplayError(
                f"--resume {replay_id}: it is still running (its process holds its lock): "
                "stop it first"
            )
        request = _recorded_request(settings, row, rate_limit)
        topic = request.asked.topic
        replayed = await connection.fetch(query("replay_positions"), replay_id, topic)
        checkpoints = await connection.fetch(query("replay_checkpoints"), row["consumer"], topic)
        if request.schema is not None:
            check_dlq_topic(settings, request)
            await check_schema(connection, request.schema, request.like)
            await check_owner(connection, request, any(r["offset"] >= 0 for r in checkpoints))
    positions = {r["partition"]: r["offset"] for r in replayed}
    now = {r["partition"]: r["offset"] for r in checkpoints}
    partitions = []
    for number, first, last, began in _resolved(replay_id, row):
        start = max(first, positions.get(number, -1) + 1)
        # A re-apply re-applies through the checkpoint it began at; a rebuild's own
        # checkpoints say what it applied.
        checkpoint = began if request.mode == "re-apply" else now.get(number, -1)
        partitions.append(PartitionPlan(number, range(start, max(start, last + 1)), checkpoint))
    resumed = Resumed(replay_id, tuple(row["handlers"]))
    return Plan(request, row["consumer"], tuple(partitions), resumed)


def _recorded_request(settings: Settings, row: asyncpg.Record, rate_limit: float | None) -> Request:
    """The request as the row recorded it, checked as the options once were."""
    if row["mode"] == "re-apply" and row["consumer"] != settings.consumer_group:
        raise ReplayError(
            f"--resume {row['id']}: it re-applied for consumer group "
            f"'{shown(row['consumer'])}', and the consumer group is now "
            f"'{shown(settings.consumer_group)}' (CRONSTREAM_CONSUMER_GROUP)"
        )
    try:
        asked: dict[str, Any] = json.loads(row["range"])["asked"]
        partitions = asked["partitions"]
        return check(
            Asked(
                topic=row["topic"],
                partitions=",".join(map(str, partitions)) if partitions is not None else None,
                from_offset=asked["from_offset"],
                from_time=asked["from_time"],
                from_beginning=asked["from_beginning"],
                to_offset=asked["to_offset"],
                to_time=asked["to_time"],
                consumer=row["consumer"] if row["mode"] == "rebuild" else None,
                schema=row["schema"],
                like=tuple(asked["like"]) if row["mode"] == "rebuild" else (),
                rate_limit=rate_limit if rate_limit is not None else asked["rate_limit"],
            ),
            settings.consumer_group,
        )
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ReplayError):
            raise ReplayError(f"--resume {row['id']}: as recorded, {error}") from None
        raise _unreadable(row["id"], error) from None


def _resolved(replay_id: int, row: asyncpg.Record) -> list[tuple[int, int, int, int]]:
    """(partition, first offset, last offset, checkpoint at the start) of each partition."""
    try:
        resolved = json.loads(row["range"])["resolved"]
        return [
            (
                number,
                int(resolved[str(number)]["from"]),
                int(resolved[str(number)]["to"]),
                int(resolved[str(number)]["checkpoint"]),
            )
            for number in row["partitions"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise _unreadable(replay_id, error) from None


def _unreadable(replay_id: int, error: Exception) -> ReplayError:
    return ReplayError(
        f"--resume {replay_id}: its row's range is not one a replay wrote "
        f"({type(error).__name__}: {shown(str(error))})"
    )
