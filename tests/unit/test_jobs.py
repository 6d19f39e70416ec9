from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from schedulers.jobs import JobError, load_file, merge, quote, scan_config, to_job

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
        with pytest.raises(JobError, match=r"scan\.table: Value error, '.*' is not a plain SQL"):
            to_job("j", fields, "test")


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
    ],
)
def test_invalid_jobs_name_the_job_and_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(JobError, match=f"job 'bad' \\(test\\): .*{message}"):
        to_job("bad", fields, "test")


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
