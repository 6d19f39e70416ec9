"""A replay's audit row in the `replays` table (migrations/0005_replays.sql), and the
advisory lock on its id that the row's session holds while the replay runs
(streams/sql/replay.sql): another rebuild into the same schema sees it and is refused,
and so is a resume of the replay itself.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket

import asyncpg

from cronstream.config.settings import Settings
from cronstream.pg import connections
from cronstream.streams.replay.plan import Plan
from cronstream.streams.replay.progress import Progress
from cronstream.streams.replay.rebuild import prepare_schema, refuse_held
from cronstream.streams.replay.request import ReplayError
from cronstream.streams.sql import query

log = logging.getLogger(__name__)


def started_by() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry, e.g. in a container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Audit:
    """One replay's row, written on a connection of its own that holds the replay's lock."""

    def __init__(self, settings: Settings, connection: asyncpg.Connection) -> None:
        self.settings = settings
        self.connection = connection
        self.replay_id: int | None = None
        # A resumed replay's counters before this run: the row's go on from them.
        self.before = (0, 0, 0, 0)

    async def start(self, plan: Plan, handlers: list[str]) -> int:
        """The audit row (or, resuming, the row again), and this replay's lock held on
        the connection until it ends. A rebuild checks its schema is not in use and
        prepares it in the same transaction, under a lock on the schema: two starting at
        once cannot both pass."""
        request = plan.request
        audit = self.connection
        async with audit.transaction():
            if request.schema is not None:
                await audit.execute(query("replay_lock_schema"), request.schema)
                await refuse_held(audit, request.schema, plan.consumer)
                await prepare_schema(audit, request.schema, request.like)
            if plan.resumes is not None:
                self.replay_id = await self._resume(plan.resumes.replay_id)
                return self.replay_id
            replay_id: int = await audit.fetchval(
                query("replay_start"),
                started_by(),
                request.mode,
                plan.consumer,
                request.schema,
                request.asked.topic,
                [p.partition for p in plan.partitions],
                json.dumps(plan.range_json()),
                handlers,
            )
            await audit.execute(query("replay_hold"), replay_id)
        self.replay_id = replay_id
        return replay_id

    async def _resume(self, replay_id: int) -> int:
        """Its lock, unless its process (or another resume) still holds it; its row
        `running` again, unless it succeeded since it was planned."""
        if not await self.connection.fetchval(query("replay_try_hold"), replay_id):
            raise ReplayError(f"--resume {replay_id}: it is still running: stop it first")
        row = await self.connection.fetchrow(query("replay_resume"), replay_id, started_by())
        if row is None:
            raise ReplayError(f"--resume {replay_id}: it succeeded, nothing is left to replay")
        self.before = (row["records"], row["applied"], row["duplicates"], row["dead_lettered"])
        return replay_id

    def _counters(self, p: Progress) -> tuple[int, ...]:
        """The row's counters: this run's, after a resumed replay's earlier runs'."""
        return tuple(before + now for before, now in zip(self.before, p.counters(), strict=True))

    async def record_progress(self, p: Progress) -> None:
        try:
            await self.connection.execute(query("replay_progress"), p.replay_id, *self._counters(p))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            # The audit row lags; the replay itself is safe and goes on.
            log.warning("replay %s: progress not recorded: %r", p.replay_id, error)
            await self._reconnect()

    async def _reconnect(self) -> None:
        self.connection.terminate()
        try:
            self.connection = await connections.connect(self.settings)
            # The lock went with the old session; the window between is not guarded.
            await self.connection.execute(query("replay_hold"), self.replay_id)
        except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
            log.warning("replay %s: audit connection lost: %s", self.replay_id, error)

    async def finish(self, plan: Plan, p: Progress) -> None:
        """The row's result: status, counters, error and where each partition stopped."""
        stopped = {
            str(part.partition): p.stopped.get(part.partition, part.offsets.start - 1)
            for part in plan.partitions
        }
        for attempt in range(3):
            try:
                await self.connection.execute(
                    query("replay_finish"),
                    p.replay_id,
                    p.status,
                    *self._counters(p),
                    p.error,
                    json.dumps(stopped),
                )
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("replay %s: result not recorded: %r", p.replay_id, error)
                if attempt < 2:
                    await self._reconnect()
        log.error("replay %s: its row still says 'running'; it ended %s", p.replay_id, p.status)

    async def close(self) -> None:
        await self.connection.close()
