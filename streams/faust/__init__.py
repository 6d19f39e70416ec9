"""The faust engine, an optional extra (`pip install 'cronstream[faust]'`): the
checkpointed agent (engine) and the faust Consumer that starts each partition at its
checkpoint (consumer). faust's private attributes are touched only in this package.

Importing it without faust-streaming installed raises FaustMissing (exit code 2), one
line that says what to install, rather than an ImportError.
"""

from __future__ import annotations

from cronstream.errors import CronstreamError


class FaustMissing(CronstreamError):
    """faust-streaming is not installed, so the faust engine cannot run."""

    exit_code = 2


try:
    import faust  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "faust":  # faust is there, something it needs is not: say that
        raise
    raise FaustMissing(
        "the faust engine needs faust-streaming: pip install 'cronstream[faust]'"
    ) from None

from cronstream.streams.faust.engine import add_agent, create_app, run_faust_worker  # noqa: E402

__all__ = ["FaustMissing", "add_agent", "create_app", "run_faust_worker"]
