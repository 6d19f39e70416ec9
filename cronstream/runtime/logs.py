"""Structured logs: one JSON object a line (or a text line), carrying the current trace_id.

At INFO the libraries cronstream runs on (aiokafka, faust, ...) log every group join
and partition assignment; those lines would drown the pipeline's own (job runs,
batches applied), so they are held at WARNING unless the level is DEBUG. aiokafka's
per-attempt connection errors during a broker outage are demoted to DEBUG as well, by a
filter that importing cronstream.kafka installs (cronstream/kafka/health.py): the worker
says once that Kafka is degraded instead.

`trace()` sets the trace id every line inside it carries: the stream engines set one
per batch and per run of events given to a handler, the scheduler one per job run.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

# LogRecord attributes that are not user-supplied `extra=` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Libraries whose INFO lines are their own bookkeeping. A user's handler modules are
# not listed: their lines show at the chosen level.
LIBRARIES = ("aiokafka", "kafka", "faust", "mode", "aiohttp", "asyncio", "asyncpg", "venusian")


def parse_level(text: str) -> int:
    """A level name, any case, as a number; ValueError naming the choices otherwise."""
    name = text.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"'{text}' is not a log level (use {', '.join(LEVELS)})")
    return logging.getLevelNamesMapping()[name]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or trace_id_var.get()
        if trace_id:
            entry["trace_id"] = trace_id
        for name, value in vars(record).items():
            if name not in _STANDARD and name != "trace_id":
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        # The structured fields, as key=value, except those the message already shows.
        shown = record.args if isinstance(record.args, tuple) else ()
        for name, value in vars(record).items():
            if name not in _STANDARD and name != "trace_id" and value not in shown:
                line += f" {name}={value}"
        trace_id = getattr(record, "trace_id", None) or trace_id_var.get()
        if trace_id:
            line += f" trace_id={trace_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Fields(logging.Filter):
    """Adds the same fields to every line (a worker process's number, say)."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__()
        self.fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.fields.items():
            setattr(record, name, value)
        return True


def configure(
    level: str = "INFO",
    fmt: Literal["json", "text"] = "json",
    fields: Mapping[str, object] | None = None,
) -> None:
    """Send logs to stderr in the chosen format; the LIBRARIES' at WARNING unless DEBUG.
    `fields`: added to every line.

    A bad `level` raises ValueError (see parse_level) before anything changes.
    """
    threshold = parse_level(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if fields:
        handler.addFilter(Fields(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    debug = threshold <= logging.DEBUG
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(threshold if debug else max(threshold, logging.WARNING))


def current() -> tuple[str, Literal["json", "text"]]:
    """The level and format the root logger has now, as `configure` takes them (JSON
    unless a text formatter is in use), for a child process to log alike."""
    root = logging.getLogger()
    text = any(isinstance(handler.formatter, TextFormatter) for handler in root.handlers)
    level = logging.getLevelName(root.level)
    return level if level in LEVELS else "WARNING", "text" if text else "json"


@contextmanager
def trace(trace_id: str | None) -> Iterator[None]:
    """Tag every log line inside the block with `trace_id`."""
    token = trace_id_var.set(trace_id)
    try:
        yield
    finally:
        trace_id_var.reset(token)
