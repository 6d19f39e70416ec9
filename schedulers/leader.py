"""Leader election: a Postgres session advisory lock on a dedicated connection.

asyncpg resets pooled connections with pg_advisory_unlock_all(), so the lock lives on a
connection of its own, held for the whole leadership. When the leader dies or its
connection drops, Postgres ends the session and releases the lock; a standby polling
pg_try_advisory_lock takes over.

The lock's connection carries application_name "cronstream-scheduler-leader <node>", so
`cronstream status` can name the leader from pg_locks and pg_stat_activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from cronstream.config.settings import Settings
from cronstream.pg import connections
from cronstream.runtime.retry import pause
from cronstream.schedulers.sql import query

log = logging.getLogger(__name__)

LEADER_APPLICATION = "cronstream-scheduler-leader"
# The advisory lock's name; its key is hashtext(LEADER_LOCK), computed by Postgres where
# the lock is taken (leader_try_lock) and where `cronstream status` looks for it.
LEADER_LOCK = "cronstream.scheduler"


class Leadership:
    def __init__(self, settings: Settings, node: str = "", poll_seconds: float = 1.0) -> None:
        self.settings = settings
        # Postgres keeps 63 bytes of it: enough for "host:pid" of ordinary host names.
        self.application_name = f"{LEADER_APPLICATION} {node}".strip()[:63]
        self.poll_seconds = poll_seconds
        self.connection: asyncpg.Connection | None = None
        self.standing_by = False  # tried the lock, and another scheduler holds it

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait until this process leads (True) or `stopping` is set (False)."""
        announced = False
        while not stopping.is_set():
            try:
                if self.connection is None or self.connection.is_closed():
                    self.connection = await connections.connect(
                        self.settings, {"application_name": self.application_name}
                    )
                if await self.connection.fetchval(query("leader_try_lock"), LEADER_LOCK):
                    self.standing_by = False
                    return True
                self.standing_by = True
                if not announced:
                    log.info("standing by: another scheduler leads")
                    announced = True
            except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
                log.warning("leader election: %s", error)
                self._drop()
            await pause(self.poll_seconds, stopping)
        return False

    async def still_held(self) -> bool:
        """False once the lock's connection is gone (and with it the lock)."""
        if self.connection is None or self.connection.is_closed():
            return False
        try:
            await asyncio.wait_for(self.connection.fetchval("SELECT 1"), self.poll_seconds * 5)
            return True
        except (TimeoutError, *connections.CONNECT_ERRORS):
            self._drop()
            return False

    async def release(self) -> None:
        if self.connection is not None and not self.connection.is_closed():
            with contextlib.suppress(*connections.CONNECT_ERRORS):
                await self.connection.execute(query("leader_unlock"), LEADER_LOCK)
        self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.terminate()
            self.connection = None
