"""Kafka outages in two lines: aiokafka's per-attempt errors held back, then one line each
for "degraded" and "recovered".

aiokafka (0.14) rides out a lost broker by itself and logs every attempt: one restart of
the local single broker (about 40 s) measured 3,000 ERROR and 70 WARNING lines from one
idle-ish worker ("Unable connect to node with id 1", "Unable to update metadata",
"Failed fetch messages from 1", coordinator and heartbeat failures), and nothing of
cronstream's own. `HeldBack` recognizes those connection, fetch and coordinator
failures by logger and message template, demotes them to DEBUG and tells `HEALTH`.
`watch` asks `HEALTH.check()` every second and logs the change, once each: the batch
and faust engines and `cronstream scheduler` each run it (`cronstream run` once).
`HeldBack` also demotes, without telling `HEALTH`, what aiokafka logs on every first
start: a new broker answers the first coordinator lookup with
GroupCoordinatorNotAvailable while it creates __consumer_offsets, and a coordinator that
moves is "marked dead" and looked up again.

Only an error that says no answer came (a connection refused, broken or timed out)
tells `HEALTH`: the same templates also carry a broker's answers, and an answer is no
outage. A worker started on a topic it had just created logged "Kafka degraded" one
second in: the broker answered its first offset lookup with NotLeaderForPartition (the
new partitions had leaders in the metadata but were not yet led), aiokafka logged that
as "Failed fetch offsets from 1", and every partition led by node 1 was said to wait.
A retried answer is held back without telling `HEALTH`; any other answer (an
authentication failure, say) is shown as aiokafka logs it.

A handler that blocks the event loop longer than the session timeout (synchronous
code, say) makes aiokafka say, once the loop runs again, "Heartbeat session expired" (and
past the request timeout, requests timed out): of the loop, not of a broker. `watch`
sees its own tick come late (STALL) and the tracker forgets what was heard since the
stall began and for SETTLE seconds after, unless an outage was told already; a real
outage goes on failing and is told a tick later.

While a broker is away aiokafka retries every few hundred milliseconds (the largest
gap measured was 0.7 s), so an outage is over once no such error came for
RECOVERY_QUIET seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
)

log = logging.getLogger(__name__)

RECOVERY_QUIET = 5.0
WATCH_INTERVAL = 1.0  # how often `watch` asks the tracker what to log
STALL = 3.0  # a tick this much later than the last: the event loop did not run meanwhile
SETTLE = 2.0  # errors this soon after a stall may still be the stall's own
MAX_NAMED = 20  # partitions named in the "Kafka degraded" line; its `waiting` field has all
ADDRESS = -1  # the first two arguments are a bootstrap host and port
ANSWER = -2  # the line tells a broker's answer: held back, no outage

# The errors that mean no answer came: the connection failed, broke or timed out.
UNANSWERED: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NodeNotReadyError,
    RequestTimedOutError,
)

# Per logger: the message templates aiokafka logs on each retry while a broker or the
# group coordinator is unreachable, and which argument names the broker (a node id, or
# ADDRESS: a bootstrap host and port), when one does, or ANSWER. Templates, not formatted
# messages: matching one costs a prefix test.
# Not listed on purpose: rebalance notices, authorization and unknown-topic errors.
RETRIED: dict[str, tuple[tuple[str, int | None], ...]] = {
    "aiokafka": (
        ("Unable connect to node with id", 0),
        ('Unable connect to "', ADDRESS),
        ("Unable to request metadata from node with id", 0),
        ('Unable to request metadata from "', ADDRESS),
        ("Unable to update metadata from", None),
    ),
    "aiokafka.consumer.fetcher": (
        ("Failed fetch messages from", 0),
        ("Failed fetch offsets from", 0),
    ),
    "aiokafka.consumer.group_coordinator": (
        ("Error sending %s to node %s", 1),
        ("Group Coordinator Request failed", None),
        ("Heartbeat send request failed", None),
        ("Heartbeat session expired", None),
        # The coordinator answered that it is not (yet) the group's.
        ("Heartbeat failed for group %s: coordinator (node %s)", ANSWER),
    ),
    "aiokafka.producer.sender": (
        ("Cannot send %r to %s", 1),
        ("Could not send", None),
        ("Got error produce response", None),
    ),
}


# A coordinator that moved, looked up again at once (see the module's docstring).
FIRST_START = "Marking the coordinator dead"


@dataclass(frozen=True)
class Degraded:
    nodes: frozenset[int]  # broker node ids named by the errors
    addresses: frozenset[str]  # bootstrap host:port named by the errors


@dataclass(frozen=True)
class Recovered:
    seconds: float  # from the first held-back error to the last
    held_back: int  # library errors kept out of the log during the outage


class KafkaHealth:
    """What aiokafka's retried errors say: degraded at the first, recovered after a quiet spell."""

    def __init__(
        self, quiet: float = RECOVERY_QUIET, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet = quiet
        self.clock = clock
        self.forgiven_until = -float("inf")  # errors until then are a stall's (see stalled)
        self._reset()

    def _reset(self) -> None:
        self.first_error: float | None = None
        self.last_error = 0.0
        self.held_back = 0
        self.nodes: set[int] = set()
        self.addresses: set[str] = set()
        self.announced = False

    def failed(self, node: int | None = None, address: str | None = None) -> None:
        """A library error said a broker (or the coordinator) could not be reached."""
        now = self.clock()
        if now <= self.forgiven_until and not self.announced:
            return
        if self.first_error is None:
            self.first_error = now
        self.last_error = now
        self.held_back += 1
        if node is not None:
            self.nodes.add(node)
        if address is not None:
            self.addresses.add(address)

    def stalled(self, since: float) -> None:
        """The event loop did not run from `since` until now: the errors heard since then,
        and for SETTLE seconds more, say that nobody listened, not that no broker answered."""
        now = self.clock()
        self.forgiven_until = now + SETTLE
        if not self.announced and self.first_error is not None and self.first_error >= since:
            self._reset()

    def check(self) -> Degraded | Recovered | None:
        """The change to log now, if any: each outage gives one Degraded, then one Recovered."""
        if self.first_error is None:
            return None
        if not self.announced:
            self.announced = True
            return Degraded(frozenset(self.nodes), frozenset(self.addresses))
        if self.clock() - self.last_error < self.quiet:
            return None
        recovered = Recovered(round(self.last_error - self.first_error, 1), self.held_back)
        self._reset()
        return recovered


HEALTH = KafkaHealth()
"""The process's tracker: the filter feeds it, `watch` asks it."""

Describe = Callable[[Degraded], tuple[list[str], list[str] | None]]
"""An outage's brokers, named (with addresses where the client knows them), and the
partitions that wait for them ("topic[partition]"; None where nothing consumes)."""


def named(change: Degraded) -> tuple[list[str], None]:
    """The `Describe` of a process that consumes nothing: the brokers as the errors name them."""
    return [str(node) for node in sorted(change.nodes)] + sorted(change.addresses), None


def report(change: Degraded | Recovered | None, bootstrap: str, describe: Describe) -> None:
    """Log `change`: "Kafka degraded" (which brokers, which partitions wait) or "Kafka
    recovered" (how long, how many library errors were held back)."""
    if isinstance(change, Recovered):
        log.info(
            "Kafka recovered after %.1fs; %d aiokafka error(s) were held back (DEBUG shows them)",
            change.seconds,
            change.held_back,
            extra={"outage_s": change.seconds, "held_back": change.held_back},
        )
    elif isinstance(change, Degraded):
        brokers, waiting = describe(change)
        extra: dict[str, object] = {"brokers": brokers or [bootstrap]}
        waits = ""
        if waiting is not None:
            extra["waiting"] = waiting
            waits = f"; {len(waiting)} partition(s) wait: {_listed(waiting, MAX_NAMED)}"
        log.warning(
            "Kafka degraded: broker(s) %s unreachable%s. aiokafka retries by itself; its "
            "per-attempt errors are held back until it recovers",
            ", ".join(brokers or [f"unknown (bootstrap {bootstrap})"]),
            waits,
            extra=extra,
        )


async def watch(bootstrap: str, describe: Describe = named, health: KafkaHealth = HEALTH) -> None:
    """Until cancelled, log each change of `health` once: its own task, since whoever
    talks to Kafka may be held up for the whole outage (a commit, a send)."""
    last = health.clock()
    while True:
        now = health.clock()
        if now - last > STALL:  # this tick is late: something blocked the event loop
            health.stalled(since=last)
        last = now
        try:
            report(health.check(), bootstrap, describe)
        except Exception:  # a bug here must not go unseen, nor end the process
            log.exception("reporting Kafka's health failed; outage lines are off")
            return
        await asyncio.sleep(WATCH_INTERVAL)


def _listed(names: list[str], cap: int) -> str:
    more = f" and {len(names) - cap} more" if len(names) > cap else ""
    return ", ".join(names[:cap]) + more if names else "none"


class HeldBack(logging.Filter):
    """Demotes aiokafka's per-attempt connection and fetch errors to DEBUG and tells `health`.

    Attached to the loggers in RETRIED; records it does not recognize pass unchanged.
    """

    def __init__(self, health: KafkaHealth = HEALTH) -> None:
        super().__init__()
        self.health = health

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(record.msg, str):
            return True
        template = record.msg
        if template.startswith(FIRST_START) or (
            "GroupCoordinatorNotAvailable" in record.getMessage()
        ):
            return _demote(record)  # retried at once, not an outage
        found = [
            where for prefix, where in RETRIED.get(record.name, ()) if template.startswith(prefix)
        ]
        if not found:
            return True
        where = found[0]
        args = record.args if isinstance(record.args, tuple) else ()
        error = _error(args)
        if error is not None and not issubclass(error, UNANSWERED):
            # The broker answered: retried, the answer is held back; else it is shown.
            return _demote(record) if getattr(error, "retriable", False) else True
        if where == ANSWER:
            return _demote(record)
        if where == ADDRESS and len(args) >= 2:
            self.health.failed(address=f"{args[0]}:{args[1]}")
        else:
            self.health.failed(node=_node(args, where))
        return _demote(record)


def _demote(record: logging.LogRecord) -> bool:
    """The record as DEBUG: shown only when its logger is at DEBUG."""
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _error(args: tuple[object, ...]) -> type[BaseException] | None:
    """The error a record names: an exception, or the class of a broker's error code."""
    for arg in args:
        if isinstance(arg, BaseException):
            return type(arg)
        if isinstance(arg, type) and issubclass(arg, BaseException):
            return arg
    return None


def _node(args: tuple[object, ...], at: int | None) -> int | None:
    if at is None or len(args) <= at:
        return None
    try:
        return int(str(args[at]))
    except ValueError:
        return None


def hold_back_retries() -> None:
    """Attach one HeldBack (feeding HEALTH) to each logger in RETRIED; idempotent."""
    for name in RETRIED:
        logger = logging.getLogger(name)
        if not any(isinstance(found, HeldBack) for found in logger.filters):
            logger.addFilter(HeldBack())
