from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cronstream.cli import app
from cronstream.schedulers.jobs import (
    JobError,
    load_file,
    merge,
    quote,
    row_job,
    scan_config,
    to_job,
)

SCAN = {"mode": "flag", "table": "customers"}


def test_file_jobs_load_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[jobs.customers]\nschedule = "*/5 * * * *"\ntimezone = "Europe/Berlin"\n'
        'misfire_policy = "all"\nmax_catchup = 3\njitter = 2.5\n'
        '[jobs.customers.scan]\nmode = "watermark"\ntable = "app.customers"\n'
    )
    (job,) = load_file(path)
    assert job.name == "customers"
    assert job.schedule.timezone == "Europe/Berlin"
    assert (job.misfire_policy, job.max_catchup, job.jitter) == ("all", 3, timedelta(seconds=2.5))
    config = scan_config(job)
    assert (config.table, config.entity_name, config.key_column) == (
        "app.customers",
        "customers",
        "id",
    )


@pytest.mark.parametrize(
    ("table", "ok"),
    [
        ("customers", True),
        ("app.customers", True),
        ("customers; DROP TABLE x", False),
        ("customers\n", False),  # `$` alone would accept the trailing newline
        ("app.customers\n", False),
        ("c" * 64, False),
        ('cust"omers', False),
        ("a.b.c", False),
        ("1table", False),
    ],
)
def test_table_and_column_names_must_be_plain_identifiers(table: str, ok: bool) -> None:
    fields = {"schedule": "* * * * *", "scan": {"mode": "flag", "table": table}}
    if ok:
        assert scan_config(to_job("j", fields, "test")).table == table
    else:
        with pytest.raises(JobError, match=r"scan\.table: '.*' is not a plain SQL"):
            to_job("j", fields, "test")


@pytest.mark.parametrize(
    "table",
    [
        "pg_catalog.pg_authid",
        "PG_CATALOG.pg_authid",  # unquoted, Postgres folds it to pg_catalog
        "information_schema.role_table_grants",
        "Information_Schema.tables",
        "pg_toast.pg_toast_1260",
        "pg_temp.t",
        "pg_temp_3.t",
        "pg_toast_temp_3.t",
    ],
)
def test_tables_in_system_schemas_are_refused(table: str) -> None:
    fields = {"schedule": "* * * * *", "scan": {"mode": "flag", "table": table}}
    message = (
        f"job 'j' (test): scan.table: {table} is in a system schema: scans read only user tables"
    )
    with pytest.raises(JobError) as raised:
        to_job("j", fields, "test")
    assert str(raised.value) == message


@pytest.mark.parametrize("table", ["pg_authid", "public.pg_roles", "pgcatalog.t", "app.pg_t"])
def test_a_user_schema_or_an_unqualified_name_passes_the_config_check(table: str) -> None:
    """An unqualified name is resolved, and refused if need be, when the scan runs."""
    fields = {"schedule": "* * * * *", "scan": {"mode": "flag", "table": table}}
    assert scan_config(to_job("j", fields, "test")).table == table


def test_quote_quotes_each_part() -> None:
    assert quote("app.customers") == '"app"."customers"'


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": "61 * * * *", "scan": SCAN}, "not a valid cron expression"),
        ({"schedule": "* * * * *", "timezone": "Nowhere/X", "scan": SCAN}, "unknown time zone"),
        ({"schedule": "* * * * *", "misfire_policy": "sometimes", "scan": SCAN}, "misfire_policy"),
        ({"schedule": "* * * * *", "scan": {"mode": "guess", "table": "t"}}, "scan.mode"),
        ({"schedule": "* * * * *", "scan": SCAN, "colour": "red"}, "colour"),
        ({"schedule": "0 0 30 2 *", "scan": SCAN}, r"schedule: '0 0 30 2 \*' never fires"),
        ({"schedule": "* * 31 2 *", "scan": SCAN}, "never fires"),
        ({"schedule": "* * * * *", "jitter": 1e300, "scan": SCAN}, "jitter: .*less than or"),
        ({"schedule": "* * * * *", "jitter": float("inf"), "scan": SCAN}, "jitter: .*finite"),
        ({"schedule": "* * * * *", "jitter": float("nan"), "scan": SCAN}, "jitter: .*finite"),
        ({"schedule": "* * * * *", "jitter": -1, "scan": SCAN}, "jitter: .*greater than"),
        ({"schedule": "* * * * *", "jitter": True, "scan": SCAN}, "jitter: .*valid number"),
        ({"schedule": "* * * * *", "misfire_grace": 1e300, "scan": SCAN}, "misfire_grace"),
        ({"schedule": "* * * * *", "misfire_grace": float("inf"), "scan": SCAN}, "finite"),
        ({"schedule": "* * * * *", "max_catchup": "3", "scan": SCAN}, "max_catchup"),
        ({"schedule": "* * * * *", "enabled": "no", "scan": SCAN}, "enabled"),
        # A run still sleeping its jitter would make the next tick "still running".
        ({"schedule": "* * * * *", "jitter": 60, "scan": SCAN}, r"jitter: 60 s is not less"),
        ({"schedule": "0,1 0 * * *", "jitter": 90, "scan": SCAN}, r"shortest interval \(60 s\)"),
        ({"schedule": "* * * * *", "scan": SCAN | {"entity": "c\n"}}, "scan.entity"),
        ({"schedule": "* * * * *", "scan": SCAN | {"batch_size": "5"}}, "scan.batch_size"),
        ({"schedule": "* * * * *", "scan": "customers"}, "scan: Input should be an object"),
    ],
)
def test_invalid_jobs_name_the_job_and_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(JobError, match=f"job 'bad' \\(test\\): .*{message}") as raised:
        to_job("bad", fields, "test")
    assert "\n" not in str(raised.value)


def test_jitter_below_the_interval_is_accepted() -> None:
    job = to_job("ok", {"schedule": "* * * * *", "jitter": 59.5, "scan": SCAN}, "test")
    assert job.jitter == timedelta(seconds=59.5)


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("a\nb", {"schedule": "* * * * *", "scan": SCAN}, r"job 'a\\nb' \(test\): names use"),
        ("ok\n", {"schedule": "* * * * *", "scan": SCAN}, "names use"),
        ("x" * 64, {"schedule": "* * * * *", "scan": SCAN}, "at most 63"),
        ("ok", 5, r"job 'ok' \(test\): expected a table of fields, found a number"),
    ],
)
def test_invalid_names_and_shapes_are_one_line_errors(
    name: str, fields: object, message: str
) -> None:
    with pytest.raises(JobError, match=message) as raised:
        to_job(name, fields, "test")
    assert "\n" not in str(raised.value)


JOB = '[jobs.x]\nschedule = "* * * * *"\n[jobs.x.scan]\nmode = "flag"\ntable = "t"\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (JOB.replace("jobs.", "job.").encode(), "unknown top-level key 'job' "),
        (b"schedule = 1\n" + JOB.encode(), "unknown top-level key 'schedule'"),
        (b"\xff\xfe", r"line 1: not UTF-8 \(byte 0xff\)"),
        (b'# jobs\n\n[jobs.x]\nschedule = "\xe9 * * * *"\n', "line 4: not UTF-8"),
        (b"jobs = 5\n", r"expected \[jobs.<name>\] tables"),
        (b"[jobs]\nx = 5\n", "job 'x' .*: expected a table of fields, found a number"),
        (JOB.replace("* * * * *", "0 0 31 4 *").encode(), "job 'x' .*: schedule: .* never fires"),
        (JOB.replace('"\n[', '"\njitter = inf\n[').encode(), "job 'x' .*: jitter: .*finite"),
        (JOB.replace('"\n[', '"\njitter = 1e300\n[').encode(), "job 'x' .*: jitter"),
        (JOB.replace('"\n[', '"\nmisfire_grace = nan\n[').encode(), "misfire_grace"),
        (JOB.replace("jobs.x", 'jobs."x\\ny"').encode(), r"job 'x\\ny' .*: names use"),
        (b"[jobs.x\n", "is not valid TOML"),
    ],
)
def test_a_bad_jobs_file_is_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "jobs.toml"
    path.write_bytes(content)
    with pytest.raises(JobError, match=message) as raised:
        load_file(path)
    assert "\n" not in str(raised.value)


def row(**overrides: Any) -> dict[str, Any]:
    """A cron_jobs row as the cron_jobs_all query returns it."""
    return {
        "name": "r",
        "schedule": "*/5 * * * *",
        "timezone": "UTC",
        "kind": "scan",
        "config": json.dumps({"scan": SCAN}),
        "misfire_policy": "once",
        "misfire_grace_s": 60.0,
        "max_catchup": 10,
        "jitter_s": 0.0,
        "enabled": True,
    } | overrides


def test_a_rows_columns_define_the_job() -> None:
    job = row_job(row(enabled=False, jitter_s=1.5, misfire_policy="all"))
    assert (job.enabled, job.jitter, job.misfire_policy) == (False, timedelta(seconds=1.5), "all")
    assert scan_config(job).table == "customers"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # The row's columns must win: config may not re-enable it or change its schedule.
        (
            {"enabled": False, "config": json.dumps({"scan": SCAN, "enabled": True})},
            "config: unknown key 'enabled' .*config holds only 'scan'",
        ),
        ({"config": json.dumps({"scan": SCAN, "schedule": "* * * * * *"})}, "key 'schedule'"),
        ({"config": json.dumps({"scan": SCAN, "jitter": 1e300})}, "key 'jitter'"),
        ({"config": "[1]"}, "config: is JSON array, not an object"),
        ({"config": "{}"}, "scan: Field required"),
        ({"config": '{"scan": ' + "[" * 5000 + "]" * 5000 + "}"}, "nested too deeply"),
        ({"jitter_s": 1e300}, "jitter: .*less than or equal"),
        ({"jitter_s": float("inf")}, "jitter: .*finite"),
        ({"misfire_grace_s": -1.0}, "misfire_grace: .*greater than"),
        ({"schedule": "0 0 30 2 *"}, "schedule: .*never fires"),
        ({"timezone": "America"}, "unknown time zone 'America'"),
    ],
)
def test_invalid_rows_name_the_job_and_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=f"job 'r' \\(cron_jobs\\): .*{message}") as raised:
        row_job(row(**overrides))
    assert "\n" not in str(raised.value)


def test_invalid_toml_is_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text("[jobs.x\n")
    with pytest.raises(JobError, match="is not valid TOML"):
        load_file(path)


def test_table_rows_override_file_jobs() -> None:
    from_file = [to_job("a", {"schedule": "* * * * *", "scan": SCAN}, "file")]
    from_table = [to_job("a", {"schedule": "0 * * * *", "scan": SCAN}, "cron_jobs")]
    (merged,) = merge(from_file, from_table)
    assert merged.origin == "cron_jobs" and merged.schedule.expression == "0 * * * *"


def test_an_invalid_row_shadows_the_file_job_of_its_name() -> None:
    from_file = [
        to_job(name, {"schedule": "* * * * *", "scan": SCAN}, "file") for name in ("a", "b")
    ]
    (kept,) = merge(from_file, [], invalid_rows=["a"])
    assert kept.name == "b"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (JOB.replace("jobs.", "job.").encode(), "unknown top-level key 'job'"),
        (b"\xff", "line 1: not UTF-8"),
        (JOB.replace("* * * * *", "0 0 30 2 *").encode(), "never fires"),
        (JOB.replace('"\n[', '"\njitter = inf\n[').encode(), "jitter"),
    ],
)
def test_jobs_list_refuses_a_bad_jobs_file_with_one_line_and_exit_2(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "jobs.toml"
    path.write_bytes(content)
    # Refused before any connection: nothing listens on port 1.
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            "postgresql://x@127.0.0.1:1/x",
            "jobs",
            "list",
            "--jobs-file",
            str(path),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_system_table_refuses_the_jobs_file_and_the_cron_jobs_row(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(JOB.replace('table = "t"', 'table = "pg_catalog.pg_authid"'))
    with pytest.raises(JobError, match=r"job 'x' \(.*\): scan.table: pg_catalog.pg_authid is in"):
        load_file(path)
    scan = {"mode": "flag", "table": "information_schema.tables"}
    with pytest.raises(JobError, match=r"job 'r' \(cron_jobs\): scan.table: information_schema"):
        row_job(row(config=json.dumps({"scan": scan})))
