"""Job definitions: from a TOML file and from the cron_jobs table, validated alike.

A file looks like this; a cron_jobs row carries the same fields, `scan` in `config`:

    [jobs.customers]
    schedule = "*/5 * * * *"
    timezone = "Europe/Berlin"
    misfire_policy = "once"      # skip | once | all
    misfire_grace = 60           # seconds
    max_catchup = 10
    jitter = 0                   # seconds

    [jobs.customers.scan]
    mode = "flag"                # flag | watermark | outbox
    table = "customers"
    key_column = "id"
    flag_column = "needs_sync"
    notify_channel = "customers_changed"

A row in the table wins over a file entry of the same name.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cronstream.queries import query
from schedulers.cron import CronError, Schedule
from schedulers.engine import Job

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class JobError(ValueError):
    """A job definition that cannot be scheduled; the message names the job and field."""


def identifier(value: str) -> str:
    """Accept `name` or `schema.name` made of plain SQL identifiers; refuse anything else."""
    parts = value.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise ValueError(f"'{value}' is not a plain SQL identifier (letters, digits, _)")
    return value


def quote(name: str) -> str:
    """Quote a validated identifier (schema-qualified allowed) for use in SQL text."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier(name).split("."))


Identifier = Annotated[str, AfterValidator(identifier)]


class ScanConfig(BaseModel):
    """What a scan job reads and how it knows what is new (see schedulers/scanner.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["flag", "watermark", "outbox"]
    table: Identifier
    entity: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")] | None = None
    key_column: Identifier = "id"
    flag_column: Identifier = "needs_sync"
    watermark_column: Identifier = "changed_xid"
    batch_size: int = Field(500, ge=1, le=50_000)
    notify_channel: Identifier | None = None

    @property
    def entity_name(self) -> str:
        return self.entity or self.table.split(".")[-1]


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: str
    timezone: str = "UTC"
    kind: Literal["scan"] = "scan"
    misfire_policy: Literal["skip", "once", "all"] = "once"
    misfire_grace: float = Field(60, ge=0, description="seconds")
    max_catchup: int = Field(10, ge=1, le=10_000)
    jitter: float = Field(0, ge=0, description="seconds")
    enabled: bool = True
    scan: ScanConfig


def to_job(name: str, fields: dict[str, Any], origin: str) -> Job:
    if not _IDENTIFIER.match(name.replace("-", "_").replace(".", "_")):
        raise JobError(f"job '{name}' ({origin}): names use letters, digits, '_', '-', '.'")
    try:
        spec = JobSpec.model_validate(fields)
        schedule = Schedule(spec.schedule, spec.timezone)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise JobError(f"job '{name}' ({origin}): {where}: {problem['msg']}") from None
    except CronError as error:
        raise JobError(f"job '{name}' ({origin}): {error}") from None
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
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise JobError(f"cannot read jobs file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise JobError(f"jobs file {path} is not valid TOML: {error}") from None
    jobs = document.get("jobs", {})
    if not isinstance(jobs, dict):
        raise JobError(f"jobs file {path}: expected [jobs.<name>] tables")
    return [to_job(name, fields, str(path)) for name, fields in jobs.items()]


async def load_table(connection: asyncpg.Connection) -> list[Job]:
    """Every valid cron_jobs row; an invalid row is logged and left out."""
    jobs = []
    for row in await connection.fetch(query("cron_jobs_all")):
        config = json.loads(row["config"])
        fields = {
            "schedule": row["schedule"],
            "timezone": row["timezone"],
            "kind": row["kind"],
            "misfire_policy": row["misfire_policy"],
            "misfire_grace": row["misfire_grace"].total_seconds(),
            "max_catchup": row["max_catchup"],
            "jitter": row["jitter"].total_seconds(),
            "enabled": row["enabled"],
        }
        try:
            if not isinstance(config, dict):
                raise JobError(f"job '{row['name']}' (cron_jobs): config must be a JSON object")
            jobs.append(to_job(row["name"], fields | config, "cron_jobs"))
        except JobError as error:
            log.error("%s; the job is not scheduled", error, extra={"job": row["name"]})
    return jobs


def merge(from_file: list[Job], from_table: list[Job]) -> list[Job]:
    merged = {job.name: job for job in from_file}
    for job in from_table:
        if job.name in merged:
            log.info("job %s: the cron_jobs row overrides the jobs file", job.name)
        merged[job.name] = job
    return sorted(merged.values(), key=lambda job: job.name)
