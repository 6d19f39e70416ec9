"""cronstream as a user installs it: the wheel, not the checkout, in a clean virtualenv,
next to a project of the user's own that has a package named `handlers`.

The wheel must install no top-level module of a generic name, ship its migrations and
SQL, and run a worker on the user's handlers (written against the public API) against
the real services.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from cronstream.envelope import Event
from cronstream.settings import Settings
from tests.integration.conftest import _admin, _drop_database, environment, with_database
from tests.integration.kafka_helpers import wait_for
from tests.integration.services import Services
from tests.integration.workers import ROOT, checkpoints_at_end, publish

USER_HANDLERS = '''
"""The user's own handlers: only cronstream's public API."""
from collections.abc import Sequence

import asyncpg

from cronstream import Event, Registry


async def order_paid(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    await connection.executemany(
        "INSERT INTO paid_orders (id, amount) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(event.key, event.payload["amount"]) for event in events],
    )


def register(registry: Registry) -> None:
    registry.register("order_paid", order_paid)
'''


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)


def checkout_copy(target: Path) -> Path:
    """The checkout's files but the ignored ones (symlinks as symlinks), as they are now:
    a build in the checkout itself could pick up a stale, ignored build/ folder."""
    files = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = run(files, ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source, copy = ROOT / name, target / name
        if source.exists() or source.is_symlink():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy, follow_symlinks=False)
    return target


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
    checkout = {
        str((Path(folder) / name).relative_to(source))
        for folder, _, files in os.walk(source / "cronstream", followlinks=True)
        for name in files
        if name.endswith(".sql")
    }
    assert len(checkout) >= 13, checkout
    assert {name for name in names if name.endswith(".sql")} == checkout
    venv = where / "venv"
    run([sys.executable, "-m", "venv", str(venv)], where)
    run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], where, timeout=600)
    return venv / "bin"


async def test_installed_wheel_migrates_and_runs_the_users_handlers(
    installed: Path, settings: Settings, services: Services, tmp_path: Path
) -> None:
    project = tmp_path / "userproject"
    (project / "handlers").mkdir(parents=True)
    (project / "handlers" / "__init__.py").write_text(USER_HANDLERS)
    name = f"w_{uuid.uuid4().hex[:12]}"
    await _admin(services.database_url, f"CREATE DATABASE {name}")
    try:
        database = with_database(services.database_url, name)
        own = settings.model_copy(update={"database_url": SecretStr(database)})
        env = environment(own) | {"PYTHONPATH": str(project), "CRONSTREAM_LOG_LEVEL": "INFO"}
        cronstream = str(installed / "cronstream")
        # From the user's project folder, as a user would: nothing of the checkout in sight.
        migrated = run([cronstream, "migrate"], project, env, timeout=120)
        assert "0006_projection_deletes" in migrated.stdout + migrated.stderr, migrated
        # status reads the SQL of the core and of the schedulers package.
        status = run([cronstream, "status", "--json"], project, env, timeout=120)
        assert '"partitions"' in status.stdout, status.stdout[:2000]
        connection = await asyncpg.connect(database)
        try:
            await connection.execute("CREATE TABLE paid_orders (id text PRIMARY KEY, amount int)")
            events = [
                Event.new(
                    type="order_paid", source="shop", entity="order", key=n, payload={"amount": n}
                )
                for n in range(1, 21)
            ]
            await publish(own, events)
            log = tmp_path / "installed-worker.log"
            worker = start([cronstream, "worker", "--handlers", "handlers"], project, env, log)
            try:

                async def applied() -> bool:
                    assert worker.poll() is None, log.read_text()[-3000:]
                    return await checkpoints_at_end(own, own.sync_topic)

                await wait_for(applied, 90, "the installed worker to apply every event")
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
            paid = await connection.fetch("SELECT id, amount FROM paid_orders ORDER BY amount")
        finally:
            await connection.close()
    finally:
        await _drop_database(services.database_url, name)
    assert [(row["id"], row["amount"]) for row in paid] == [(str(n), n) for n in range(1, 21)]
