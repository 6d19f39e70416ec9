"""cronstream: cron-driven Postgres scanners and stream workers with Postgres checkpoints.

A handler module needs only this package's public names:

    from cronstream import Event, Handler, Registry

A program that embeds cronstream runs a worker or a scheduler with its own settings and
handlers (each call blocks until SIGINT or SIGTERM):

    from cronstream import Registry, Settings, run_worker

    run_worker(Settings(consumer_group="myapp"), registry=my_registry)

`add_agent` puts the checkpointed agent into a faust app of your own (faust-streaming
must be installed). Everything else (cronstream.handlers, .streams, .schedulers and the
core modules) is internal and may move between releases.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cronstream.cli.compose import run_scheduler, run_worker
    from cronstream.config.settings import Settings
    from cronstream.events.envelope import Event
    from cronstream.handlers.registry import Handler, Registry
    from cronstream.streams.faust import add_agent

try:
    __version__ = version("cronstream")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Event",
    "Handler",
    "Registry",
    "Settings",
    "__version__",
    "add_agent",
    "run_scheduler",
    "run_worker",
]

# Where each public name lives. Imported on first use: `import cronstream.config.settings`
# must not load the handlers package (and asyncpg), nor `import cronstream` faust.
_HOMES = {
    "Event": "cronstream.events.envelope",
    "Handler": "cronstream.handlers.registry",
    "Registry": "cronstream.handlers.registry",
    "Settings": "cronstream.config.settings",
    "add_agent": "cronstream.streams.faust",
    "run_scheduler": "cronstream.cli.compose",
    "run_worker": "cronstream.cli.compose",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cronstream' has no attribute '{name}'")
    from importlib import import_module

    return getattr(import_module(home), name)
