"""cronstream as a user installs it from its sdist: the package is built from folders
linked into it (cronstream/streams -> ../streams, ...), which the sdist must hold as
real files; installed without extras into a clean virtualenv, it migrates and runs a
worker against the real services, and the faust engine it lacks is one line that says
what to install."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
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

# The top-level folders the package links to; each ships inside it.
LINKED = ("streams", "schedulers", "handlers", "migrations")
FAUST_MISSING = "error: the faust engine needs faust-streaming: pip install 'cronstream[faust]'"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with the sdist built from this checkout installed; its bin/."""
    where = tmp_path_factory.mktemp("sdist")
    source = checkout_copy(where / "source")
    build = [sys.executable, "-m", "build", "--sdist", "--outdir", str(where), "."]
    run(build, source, timeout=600)
    [sdist] = where.glob("cronstream-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {member.name.partition("/")[2]: member for member in tar.getmembers()}
        license_text = tar.extractfile(members["LICENSE"])
        assert license_text is not None and license_text.read() == (source / "LICENSE").read_bytes()
    links = [name for name, member in members.items() if not (member.isfile() or member.isdir())]
    assert links == [], f"the sdist holds links, not files: {links}"
    for folder in LINKED:
        assert (source / "cronstream" / folder).is_symlink()
        checkout = {
            f"cronstream/{folder}/{path.relative_to(source / folder)}"
            for path in (source / folder).rglob("*")
            if path.is_file()
        }
        shipped = {name for name in members if name.startswith(f"cronstream/{folder}/")}
        assert checkout and checkout <= shipped, sorted(checkout - shipped)
    assert {name for name in members if name.endswith(".sql")} == package_sql(source)
    return clean_venv(where / "venv", sdist)


async def test_installed_sdist_migrates_and_runs_a_worker(
    installed: Path, settings: Settings, services: Services, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"type": "sync_required", "entity": "order", "key": n, "payload": {"n": n}})
        for n in range(1, 11)
    ]
    (tmp_path / "orders.jsonl").write_text("\n".join(lines) + "\n")
    cronstream = str(installed / "cronstream")
    async with empty_database(services.database_url) as database:
        own = settings.model_copy(update={"database_url": SecretStr(database)})
        env = environment(own) | {"CRONSTREAM_LOG_LEVEL": "INFO"}
        migrated = run([cronstream, "migrate"], tmp_path, env, timeout=120)
        assert "0006_projection_deletes" in migrated.stdout + migrated.stderr
        published = run([cronstream, "publish", "--file", "orders.jsonl"], tmp_path, env)
        assert "sent 10, skipped 0, failed 0" in published.stdout + published.stderr
        log = tmp_path / "installed-worker.log"
        worker = start([cronstream, "worker"], tmp_path, env, log)
        connection = await asyncpg.connect(database)
        try:

            async def applied() -> bool:
                assert worker.poll() is None, log.read_text()[-3000:]
                synced = await connection.fetchval(
                    "SELECT count(*) FROM entity_projection WHERE entity = 'order'"
                )
                return synced == 10 and await checkpoints_at_end(own, own.sync_topic)

            await wait_for(applied, 90, "the installed worker to apply all")
        finally:
            await connection.close()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]


def test_the_faust_engine_without_its_extra_says_what_to_install(
    installed: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(installed / "cronstream"), "worker", "--engine", "faust"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == FAUST_MISSING
    assert "Traceback" not in done.stderr
