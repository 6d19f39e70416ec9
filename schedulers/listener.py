"""The leader's LISTEN connection: NOTIFY on cronstream_jobs reloads the jobs, NOTIFY on a
scan job's `notify_channel` runs that job at once, debounced.

The connection is its own, outside the pool and without the pool's timeouts: it only
idles or runs LISTEN. When it dies it is re-established with backoff, and then each
NOTIFY-fused job is scanned once and the jobs reloaded: a NOTIFY sent while nobody
listened is lost. A channel listened on for the first time is scanned once too, for
the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from cronstream.config.settings import Settings
from cronstream.pg import connections
from cronstream.runtime.retry import RetryPolicy
from cronstream.schedulers.timetable import Clock

log = logging.getLogger(__name__)

JOBS_CHANNEL = "cronstream_jobs"
DEBOUNCE = timedelta(milliseconds=200)
# The LISTEN connection's application_name, so an operator can tell it apart.
LISTEN_APPLICATION = "cronstream-scheduler-listen"


class Listener:
    """What the leader listens on, and what it heard: `reload_needed` and `notified`."""

    def __init__(self, settings: Settings, clock: Clock, wake: asyncio.Event) -> None:
        self.settings = settings
        self.clock = clock
        self.wake = wake  # set on every notification, and when the connection is lost
        self.reload_needed = True
        self.notified: dict[str, datetime] = {}  # channel -> when the debounce ends
        self.channels: set[str] = {JOBS_CHANNEL}  # what the leader should listen on
        self.listening: set[str] = set()  # what the current LISTEN connection listens on
        self.connection: asyncpg.Connection | None = None
        self.retry_at: datetime | None = None  # set while the connection is down
        self.failures = 0  # failed attempts since the connection was lost
        self.retry = RetryPolicy(
            backoff=settings.retry_backoff, backoff_max=settings.retry_backoff_max
        )

    def reset(self) -> None:
        """A new leadership: listen on the jobs channel only, until the jobs are loaded."""
        self.channels = {JOBS_CHANNEL}
        self.retry_at, self.failures = None, 0
        self.reload_needed = True

    async def listen(self) -> None:
        """A new LISTEN connection, listening on every channel in `self.channels`."""
        connection = await connections.connect(
            self.settings, server_settings={"application_name": LISTEN_APPLICATION}
        )
        connection.add_termination_listener(self._on_lost)
        self.connection = connection
        self.listening = set()
        for channel in sorted(self.channels):
            await connection.add_listener(channel, self._on_notify)
            self.listening.add(channel)

    async def relisten(self) -> None:
        """Listen again after the LISTEN connection died; then scan each fused job once."""
        self.drop()
        try:
            await self.listen()
        except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
            self.drop()
            self.failures += 1
            delay = self.retry.delay(self.failures)
            self.retry_at = self.clock.now() + timedelta(seconds=delay)
            log.warning("cannot LISTEN again: %s; next try in %.1f s", error, delay)
            return
        self.retry_at = None
        self.failures = 0
        # Every NOTIFY sent while nobody listened is lost: scan each fused job once, as a
        # new leader does, and reload the jobs in case a cron_jobs change went unheard.
        self.reload_needed = True
        now = self.clock.now()
        for channel in self.listening - {JOBS_CHANNEL}:
            self.notified.setdefault(channel, now)
        log.info("listening again on %s", ", ".join(sorted(self.listening)))

    def _on_lost(self, connection: asyncpg.Connection) -> None:
        if connection is not self.connection:
            return  # one we closed ourselves
        self.connection = None
        self.listening = set()
        self.retry_at = self.clock.now()
        log.warning("the LISTEN connection was lost; listening again")
        self.wake.set()

    def drop(self) -> None:
        connection, self.connection = self.connection, None
        self.listening = set()
        if connection is not None:
            connection.terminate()

    async def sync(self, job_channels: Iterable[str]) -> None:
        """LISTEN on the channels that are new, UNLISTEN the ones no job uses any more."""
        self.channels = {JOBS_CHANNEL, *job_channels}
        connection = self.connection
        if connection is None:
            return  # relisten listens on all of self.channels
        added = self.channels - self.listening
        try:
            for channel in sorted(added):
                await connection.add_listener(channel, self._on_notify)
                self.listening.add(channel)
                if channel != JOBS_CHANNEL:
                    # A NOTIFY sent before this LISTEN is lost: scan once now, so a
                    # change committed while this leader started does not wait for cron.
                    self.notified.setdefault(channel, self.clock.now())
            for channel in self.listening - self.channels:
                await connection.remove_listener(channel, self._on_notify)
                self.listening.discard(channel)
        except connections.CONNECT_ERRORS as error:
            log.warning("LISTEN failed: %s; listening again", error)
            self.drop()
            self.retry_at = self.clock.now()
            return
        if added:
            log.info("listening on %s", ", ".join(sorted(added)))

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            self.reload_needed = True
        elif channel not in self.notified:
            self.notified[channel] = self.clock.now() + DEBOUNCE
        self.wake.set()

    def due(self, now: datetime) -> list[str]:
        """The channels whose debounce has ended, taken off `notified`."""
        channels = [channel for channel, deadline in self.notified.items() if deadline <= now]
        for channel in channels:
            del self.notified[channel]
        return channels

    def next_deadline(self, until: datetime) -> datetime:
        """The earliest of `until`, the end of a debounce and the next LISTEN retry."""
        for deadline in self.notified.values():
            until = min(until, deadline)
        if self.retry_at is not None:
            until = min(until, self.retry_at)
        return until
