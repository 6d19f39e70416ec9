"""cronstream as a user installs it: the wheel, not the checkout, in a clean virtualenv,
next to a project of the user's own that has a package named `handlers`.

The wheel must install no top-level module of a generic name and ship its migrations and
SQL; its commands (migrate, status, jobs, publish, run, replay) must work from the user's
folder against the real services: the user's cron job scanning the user's table, and the
user's handlers, written against the public API.
"""

from __future__ import annotations

import json
import signal
import sys
import zipfile
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from cronstream.config.settings import Settings
from tests.integration.commands import environment
from tests.integration.kafka_helpers import wait_for
from tests.integration.packaging import checkout_copy, clean_venv, package_sql, run, start
from tests.integration.services import Services
from tests.integration.session import empty_database
from tests.integration.workers import checkpoints_at_end

USER_HANDLERS = '''
"""The user's own handlers: only cronstream's public API."""
from collections.abc import Sequence

import asyncpg

from cronstream import Event, Registry


async def order_paid(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Events the user publishes with `cronstream publish`."""
    await connection.executemany(
        "INSERT INTO paid_orders (id, amount) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(event.key, event.payload["amount"]) for event in events],
    )


def register(registry: Registry) -> None:
    registry.register("order_paid", order_paid)
'''

# The user's cron job: every 2 seconds, the rows of `orders` flagged needs_sync, as
# sync_required events that the built-in projection applies.
USER_JOBS = """
[jobs.orders]
schedule = "*/2 * * * * *"

[jobs.orders.scan]
mode = "flag"
table = "orders"
entity = "order"
"""

USER_TABLES = """
CREATE TABLE paid_orders (id text PRIMARY KEY, amount int NOT NULL);
CREATE TABLE orders (
    id int PRIMARY KEY, amount int NOT NULL, needs_sync boolean NOT NULL DEFAULT true
);
INSERT INTO orders (id, amount) SELECT n, 100 + n FROM generate_series(1, 20) AS n;
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with the wheel built from this checkout installed; its bin/."""
    where = tmp_path_factory.mktemp("wheel")
    source = checkout_copy(where / "source")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where), "."], source)
    [wheel] = where.glob("cronstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"cronstream"}, f"the wheel installs other top-level names: {sorted(tops)}"
    # Every migration and every package's SQL, as the checkout has them (links followed).
    checkout = package_sql(source)
    assert len(checkout) >= 13, checkout
    assert {name for name in names if name.endswith(".sql")} == checkout
    [license_file] = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(license_file) == (source / "LICENSE").read_bytes()
    return clean_venv(where / "venv", wheel)


async def test_installed_wheel_runs_every_command_on_the_users_project(
    installed: Path, settings: Settings, services: Services, tmp_path: Path
) -> None:
    project = tmp_path / "userproject"
    (project / "handlers").mkdir(parents=True)
    (project / "handlers" / "__init__.py").write_text(USER_HANDLERS)
    (project / "jobs.toml").write_text(USER_JOBS)
    lines = [
        json.dumps({"type": "order_paid", "entity": "order", "key": n, "payload": {"amount": n}})
        for n in range(1, 21)
    ]
    (project / "paid.jsonl").write_text("\n".join(lines) + "\n")
    async with empty_database(services.database_url) as database:
        own = settings.model_copy(update={"database_url": SecretStr(database)})
        env = environment(own) | {"PYTHONPATH": str(project), "CRONSTREAM_LOG_LEVEL": "INFO"}
        cronstream = str(installed / "cronstream")

        def command(*args: str) -> str:
            """A command of the installed wheel, from the user's project folder (nothing of
            the checkout in sight); its stdout and stderr."""
            done = run([cronstream, *args], project, env, timeout=120)
            return done.stdout + done.stderr

        public = "import cronstream; print(cronstream.__all__)"
        api = run([str(installed / "python"), "-c", public], project, env)
        assert api.stdout.strip() == (
            "['Event', 'Handler', 'Registry', 'Settings', '__version__', 'add_agent', "
            "'run_scheduler', 'run_worker']"
        )
        assert "0006_projection_deletes" in command("migrate")
        assert '"partitions"' in command("status", "--json")  # core and schedulers SQL
        assert "orders" in command("jobs", "list", "--jobs-file", "jobs.toml")
        connection = await asyncpg.connect(database)
        try:
            await connection.execute(USER_TABLES)
            assert "sent 20, skipped 0, failed 0" in command("publish", "--file", "paid.jsonl")
            log = tmp_path / "installed-run.log"
            both = ["run", "--jobs-file", "jobs.toml", "--handlers", "handlers"]
            running = start([cronstream, *both], project, env, log)
            try:

                async def applied() -> bool:
                    assert running.poll() is None, log.read_text()[-3000:]
                    counts = await connection.fetchrow(
                        "SELECT (SELECT count(*) FROM paid_orders) AS paid, (SELECT count(*)"
                        " FROM entity_projection WHERE entity = 'order') AS synced,"
                        " (SELECT count(*) FROM orders WHERE needs_sync) AS flagged"
                    )
                    # Scanned rows are marked once Kafka has their events.
                    if (counts["paid"], counts["synced"], counts["flagged"]) != (20, 20, 0):
                        return False
                    return await checkpoints_at_end(own, own.sync_topic)

                await wait_for(applied, 90, "the installed scheduler and worker to apply all")
            finally:
                running.send_signal(signal.SIGTERM)
                assert running.wait(timeout=60) == 0, log.read_text()[-3000:]
            replayed = command(
                "replay", "--topic", own.sync_topic, "--from-beginning", "--handlers", "handlers"
            )
            # The streams package's SQL; the handlers are idempotent, so nothing changes.
            assert f"{own.sync_topic} succeeded: 40 records read, 40 applied" in replayed, replayed
            paid = await connection.fetch("SELECT id, amount FROM paid_orders ORDER BY amount")
            synced = await connection.fetch(
                "SELECT key, (payload->>'amount')::int AS amount FROM entity_projection"
                " WHERE entity = 'order' ORDER BY amount"
            )
        finally:
            await connection.close()
    assert [(row["id"], row["amount"]) for row in paid] == [(str(n), n) for n in range(1, 21)]
    assert [(row["key"], row["amount"]) for row in synced] == [
        (str(n), 100 + n) for n in range(1, 21)
    ]
