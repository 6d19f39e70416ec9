"""faust-streaming is an optional extra: without it, choosing the faust engine ends in one
line that says what to install (exit code 2), never in an ImportError's traceback."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import cronstream.streams
from cronstream.cli import app
from cronstream.errors import CronstreamError

MISSING = "the faust engine needs faust-streaming: pip install 'cronstream[faust]'"


@pytest.fixture
def without_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    """faust not importable, and the faust engine not imported yet."""
    monkeypatch.setitem(sys.modules, "faust", None)  # `import faust` raises ImportError
    for name in [name for name in sys.modules if name.startswith("cronstream.streams.faust")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(cronstream.streams, "faust", raising=False)


@pytest.mark.usefixtures("without_faust")
@pytest.mark.parametrize("module", ["cronstream.streams.faust", "cronstream.streams.faust.engine"])
def test_importing_the_faust_engine_without_faust_says_what_to_install(module: str) -> None:
    with pytest.raises(CronstreamError) as raised:
        importlib.import_module(module)
    assert str(raised.value) == MISSING
    assert raised.value.exit_code == 2
    assert not isinstance(raised.value, ImportError)


@pytest.mark.usefixtures("without_faust")
def test_the_worker_with_the_faust_engine_ends_in_one_line_before_kafka() -> None:
    # An unreachable Kafka: the error must come before anything talks to it.
    options = ["--kafka-bootstrap", "127.0.0.1:1", "worker", "--engine", "faust"]
    result = CliRunner().invoke(app, options)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"error: {MISSING}"  # after "starting"
    assert "Traceback" not in result.output


def test_the_batch_engine_never_imports_faust() -> None:
    code = (
        "import sys; import cronstream.streams.worker, cronstream.streams.replay; "
        "assert 'faust' not in sys.modules, 'faust imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
