"""Job definitions: from a TOML file and from the cron_jobs table, validated alike.

A file looks like this; a cron_jobs row carries the same fields, `scan` in `config`:

    [jobs.customers]
    schedule = "*/5 * * * *"
    timezone = "Europe/Berlin"
    misfire_policy = "once"      # skip | once | all
    misfire_grace = 60           # seconds, at most 31 days
    max_catchup = 10
    jitter = 0                   # seconds, at most 1 day and less than the shortest
                                 # interval between two ticks

    [jobs.customers.scan]
    mode = "flag"                # flag | watermark | outbox
    table = "customers"
    key_column = "id"
    flag_column = "needs_sync"
    notify_channel = "customers_changed"

`jobs` is the only top-level key of a file. A cron_jobs row's own columns define the job;
its `config` holds only `scan`. A row in the table wins over a file entry of the same
name, even an invalid row: that job is then not scheduled at all (and says why).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cronstream.errors import CronstreamError, problems
from cronstream.events.envelope import EnvelopeError, json_object
from cronstream.runtime import names
from cronstream.runtime.untrusted import json_type_name, shown
from cronstream.schedulers.cron import CronError, Schedule, shortest_interval
from cronstream.schedulers.sql import query

MAX_GRACE = 31 * 86_400.0  # seconds
MAX_JITTER = 86_400.0  # seconds


class JobError(CronstreamError, ValueError):
    """A job definition that cannot be scheduled; the message names the job and field."""

    exit_code = 2


MisfirePolicy = Literal["skip", "once", "all"]


@dataclass(frozen=True)
class Job:
    """A valid job, as the timetable plans it and the scheduler runs it."""

    name: str
    schedule: Schedule
    kind: str = "scan"
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    misfire_policy: MisfirePolicy = "once"
    misfire_grace: timedelta = timedelta(seconds=60)
    max_catchup: int = 10
    jitter: timedelta = timedelta(0)
    enabled: bool = True
    origin: str = "config"

    def jitter_for(self, tick: datetime) -> timedelta:
        """A delay in [0, jitter), the same for a tick wherever it is computed."""
        if not self.jitter:
            return timedelta(0)
        digest = hashlib.sha256(f"{self.name}@{tick.isoformat()}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return self.jitter * fraction


def checked_identifier(value: str) -> str:
    """Accept `name` or `schema.name` made of plain SQL identifiers; refuse anything else."""
    if not names.is_identifier(value):
        raise ValueError(f"'{shown(value)}' {names.NOT_AN_IDENTIFIER}")
    return value


SYSTEM_SCHEMA = "is in a system schema: scans read only user tables"


def user_table(value: str) -> str:
    """A table outside the system schemas: a scan of pg_catalog.pg_authid would send
    whatever the scheduler's role may read of it to Kafka."""
    schema, _, _ = value.rpartition(".")
    if schema and names.is_system_schema(schema):
        raise ValueError(f"{value} {SYSTEM_SCHEMA}")
    return value


def quote(name: str) -> str:
    """Quote a validated identifier (schema-qualified allowed) for use in SQL text."""
    return names.quote(checked_identifier(name))


Identifier = Annotated[str, AfterValidator(checked_identifier)]


class ScanConfig(BaseModel):
    """What a scan job reads and how it knows what is new (see schedulers/scan/)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mode: Literal["flag", "watermark", "outbox"]
    table: Annotated[Identifier, AfterValidator(user_table)]
    entity: Annotated[str, Field(pattern=names.NAME_PATTERN, max_length=200)] | None = None
    key_column: Identifier = "id"
    flag_column: Identifier = "needs_sync"
    watermark_column: Identifier = "changed_xid"
    batch_size: int = Field(500, ge=1, le=50_000)
    notify_channel: Identifier | None = None

    @property
    def entity_name(self) -> str:
        return self.entity or self.table.split(".")[-1]


class JobSpec(BaseModel):
    # strict: `jitter = true` or `max_catchup = "3"` is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", strict=True)

    schedule: str
    timezone: str = "UTC"
    kind: Literal["scan"] = "scan"
    misfire_policy: MisfirePolicy = "once"
    misfire_grace: float = Field(60, ge=0, le=MAX_GRACE, allow_inf_nan=False)
    max_catchup: int = Field(10, ge=1, le=10_000)
    jitter: float = Field(0, ge=0, le=MAX_JITTER, allow_inf_nan=False)
    enabled: bool = True
    scan: ScanConfig


def to_job(name: str, fields: object, origin: str) -> Job:
    """A validated Job; a JobError naming the job and the field otherwise."""
    if not names.is_identifier(name.replace("-", "_").replace(".", "_"), qualified=False):
        raise JobError(
            f"job '{shown(name)}' ({origin}): names use letters, digits, '_', '-', '.' (at most 63)"
        )
    where = f"job '{name}' ({origin})"
    if not isinstance(fields, dict):
        kind = json_type_name(fields)  # JSON's words, TOML's but for integer and float: number
        article = "an" if kind[0] in "aeiou" else "a"
        raise JobError(f"{where}: expected a table of fields, found {article} {kind}")
    try:
        spec = JobSpec.model_validate(fields)
        schedule = Schedule(spec.schedule, spec.timezone)
    except ValidationError as error:
        field, message = problems(error)[0]
        raise JobError(f"{where}: {shown(field or 'fields')}: {message}") from None
    except CronError as error:
        raise JobError(f"{where}: schedule: {error}") from None
    if spec.jitter:
        interval = shortest_interval(schedule)
        if timedelta(seconds=spec.jitter) >= interval:
            # A run still sleeping its jitter at the next tick would skip that tick.
            raise JobError(
                f"{where}: jitter: {spec.jitter:g} s is not less than the schedule's "
                f"shortest interval ({interval.total_seconds():g} s)"
            )
    return Job(
        name=name,
        schedule=schedule,
        kind=spec.kind,
        config={"scan": spec.scan},
        misfire_policy=spec.misfire_policy,
        misfire_grace=timedelta(seconds=spec.misfire_grace),
        max_catchup=spec.max_catchup,
        jitter=timedelta(seconds=spec.jitter),
        enabled=spec.enabled,
        origin=origin,
    )


def scan_config(job: Job) -> ScanConfig:
    config = job.config["scan"]
    assert isinstance(config, ScanConfig)
    return config


def load_file(path: Path) -> list[Job]:
    """Every job of a TOML file; any invalid one refuses the whole file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise JobError(f"cannot read jobs file {path}: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise JobError(
            f"jobs file {path}: line {line}: not UTF-8 (byte 0x{data[error.start]:02x})"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise JobError(f"jobs file {path} is not valid TOML: {error}") from None
    # A misspelt [job.x] would otherwise leave a scheduler running no jobs.
    _only(
        document,
        {"jobs"},
        f"jobs file {path}: unknown top-level key",
        "expected only [jobs.<name>] tables",
    )
    jobs = document.get("jobs", {})
    if not isinstance(jobs, dict):
        raise JobError(f"jobs file {path}: expected [jobs.<name>] tables")
    return [to_job(name, fields, str(path)) for name, fields in jobs.items()]


def _only(keys: Iterable[str], allowed: set[str], unknown_key: str, hint: str) -> None:
    """Refuse the first key not `allowed`: "<unknown_key> 'x' (<hint>)"."""
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise JobError(f"{unknown_key} '{shown(unknown[0])}' ({hint})")


async def load_table(connection: asyncpg.Connection) -> tuple[list[Job], dict[str, str]]:
    """Every valid cron_jobs row, and {name: error} for the invalid ones."""
    jobs: list[Job] = []
    invalid: dict[str, str] = {}
    for row in await connection.fetch(query("cron_jobs_all")):
        try:
            jobs.append(row_job(row))
        except JobError as error:
            invalid[row["name"]] = str(error)
    return jobs, invalid


def row_job(row: Mapping[str, Any]) -> Job:
    """A cron_jobs row as a Job: its columns define it, `config` carries only `scan`."""
    where = f"job '{row['name']}' (cron_jobs)"
    try:
        config = json_object(row["config"])
    except EnvelopeError as error:  # jsonb is JSON, but maybe no object, or nested too deeply
        raise JobError(f"{where}: config: {error.reason}") from None
    # The row's columns must win: a config {"enabled": true} must not revive it.
    hint = "config holds only 'scan'; schedule, timezone, enabled and the rest are columns"
    _only(config, {"scan"}, f"{where}: config: unknown key", f"{hint} of cron_jobs")
    fields = {
        "schedule": row["schedule"],
        "timezone": row["timezone"],
        "kind": row["kind"],
        "misfire_policy": row["misfire_policy"],
        "misfire_grace": row["misfire_grace_s"],
        "max_catchup": row["max_catchup"],
        "jitter": row["jitter_s"],
        "enabled": row["enabled"],
    }
    if "scan" in config:
        fields["scan"] = config["scan"]
    return to_job(row["name"], fields, "cron_jobs")


def merge(
    from_file: list[Job], from_table: list[Job], invalid_rows: Iterable[str] = ()
) -> list[Job]:
    """File jobs overridden by table rows of the same name; an invalid row shadows too."""
    merged = {job.name: job for job in from_file}
    for name in invalid_rows:
        merged.pop(name, None)
    for job in from_table:
        merged[job.name] = job
    return sorted(merged.values(), key=lambda job: job.name)
