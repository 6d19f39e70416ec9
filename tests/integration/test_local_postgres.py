"""The local Postgres of scripts/postgres.sh is private: another OS user reaches neither
its socket nor, without the password, its TCP port; a cluster an older version made to
trust every local user is made private when `up` meets it, running or stopped.

Runs a cluster of its own on a free port (never the shared one), stopped at the end.
Needs root, to act as another OS user (nobody).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
# What an older version of scripts/postgres.sh left: every local user in as anyone.
TRUSTING_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


@dataclass(frozen=True)
class Cluster:
    port: int
    env: dict[str, str]
    data: Path  # the data directory (resolved: as root it may live in postgres's home)

    @property
    def socket_dir(self) -> Path:
        return self.data.parent / f"run-{self.port}"

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts/postgres.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def psql(
        self, host: str, role: str, sql: str, *as_user: str
    ) -> subprocess.CompletedProcess[str]:
        """`sql` as role `role`, with no password to give; `as_user` prefixes the command."""
        command = [*as_user, "psql", "-X", "-w", "-h", host, "-p", str(self.port)]
        command += ["-U", role, "-d", "postgres", "-tAc", sql]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            command, env=env, cwd="/", capture_output=True, text=True, timeout=30, check=False
        )

    def superuser(self, sql: str) -> str:
        """`sql` as postgres over the socket, as root (which the cluster lets in)."""
        result = self.psql(str(self.socket_dir), "postgres", sql)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def as_nobody(self, host: str, role: str) -> subprocess.CompletedProcess[str]:
        return self.psql(host, role, "SELECT 1", "runuser", "-u", "nobody", "--")

    def nobody_gets_in(self) -> list[str]:
        """How `nobody` got in: over the socket or TCP, as postgres or cronstream."""
        tries = [
            (host, role)
            for host in (str(self.socket_dir), "127.0.0.1")
            for role in ("postgres", "cronstream")
        ]
        return [f"{role}@{host}" for host, role in tries if self.as_nobody(host, role).stdout]


def needs_root_and_postgres() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to connect as another OS user (runuser -u nobody)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or not shutil.which("psql"):
        reason = "no Debian postgresql package to run a cluster with (make services installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    needs_root_and_postgres()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Under pytest's mode-700 temporary folder, as a clone in a mode-700 home would be.
    cache = tmp_path_factory.mktemp("cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONSTREAM_", "PG"))}
    env |= {"CRONSTREAM_PG_PORT": str(port), "CRONSTREAM_CACHE_DIR": str(cache)}
    link = cache / "postgres" / f"data-{port}"
    found = Cluster(port, env, link)
    started = found.script("up")
    try:
        assert started.returncode == 0, started.stderr
        yield Cluster(port, env, link.resolve())
    finally:
        stopped = found.script("down")
        home = link.resolve().parent
        if home != link.parent:  # it lived in postgres's home: leave that as it was
            for leftover in (link.resolve(), home / f"run-{port}"):
                shutil.rmtree(leftover, ignore_errors=True)
            (home / f"postgres-{port}.log").unlink(missing_ok=True)
            if not any(home.iterdir()):
                home.rmdir()
        assert stopped.returncode == 0, stopped.stderr


def test_only_the_owner_and_root_connect_without_a_password(cluster: Cluster) -> None:
    assert cluster.nobody_gets_in() == []
    refused = cluster.as_nobody("127.0.0.1", "postgres")
    assert "no password supplied" in refused.stderr
    # `make psql` (as root here) works, over the socket and without a password.
    result = cluster.script("psql", "-tAc", "SELECT current_user")
    assert (result.returncode, result.stdout) == (0, "cronstream\n"), result.stderr
    assert cluster.socket_dir.stat().st_mode & 0o777 == 0o700
    # The running server's rules: nothing trusts, the socket asks the OS who it is.
    rules = cluster.superuser("SELECT type, auth_method FROM pg_hba_file_rules").split()
    assert sorted(rules) == ["host|scram-sha-256", "host|scram-sha-256", "local|peer"]


def make_trusting(cluster: Cluster) -> None:
    """Turn the cluster into one an older version made: trust, a socket open to all."""
    (cluster.data / "pg_hba.conf").write_text(TRUSTING_HBA)
    cluster.socket_dir.chmod(0o755)


@pytest.mark.parametrize("state", ["running", "stopped"])
async def test_a_cluster_that_trusted_every_user_is_made_private_by_up(
    cluster: Cluster, state: str
) -> None:
    make_trusting(cluster)
    if state == "running":
        cluster.superuser("SELECT pg_reload_conf()")
        # Only TCP: the server made the socket itself mode 700 when it started.
        await wait_for(
            lambda: "postgres@127.0.0.1" in cluster.nobody_gets_in(),
            30,
            "the trusting rules to let nobody in (the state `up` must repair)",
        )
    else:
        stopped = cluster.script("down")
        assert stopped.returncode == 0, stopped.stderr
    started = cluster.script("up")
    assert started.returncode == 0, started.stderr
    # A reload takes effect when the server gets to it: wait for it, with a deadline.
    await wait_for(lambda: cluster.nobody_gets_in() == [], 30, "nobody to be refused")
    assert cluster.socket_dir.stat().st_mode & 0o777 == 0o700
