"""cronstream as a user installs it: built from a copy of this checkout (a wheel or an
sdist), installed into a clean virtualenv, its commands run as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.workers import ROOT


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; fail with its output unless it succeeded."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running command, its output to `log`."""
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


def package_sql(source: Path) -> set[str]:
    """Every migration and every package's SQL of a checkout, as paths in the package
    (cronstream/migrations/0001_init.sql, ...): the symlinked folders followed."""
    return {
        str((Path(folder) / name).relative_to(source))
        for folder, _, files in os.walk(source / "cronstream", followlinks=True)
        for name in files
        if name.endswith(".sql")
    }


def clean_venv(where: Path, distribution: Path) -> Path:
    """A new virtualenv at `where` with `distribution` (a wheel or an sdist) installed,
    without extras; its bin/."""
    run([sys.executable, "-m", "venv", str(where)], where.parent)
    run([str(where / "bin" / "pip"), "install", "-q", str(distribution)], where.parent, timeout=600)
    return where / "bin"
