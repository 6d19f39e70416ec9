"""cronstream: cron-driven Postgres scanners and stream workers with Postgres checkpoints.

A handler module needs only this package's public names:

    from cronstream import Event, Handler, Registry

Everything else (cronstream.handlers, .streams, .schedulers and the core modules) is
internal and may move between releases.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cronstream.events.envelope import Event
    from cronstream.handlers.registry import Handler, Registry

try:
    __version__ = version("cronstream")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["Event", "Handler", "Registry", "__version__"]


def __getattr__(name: str) -> object:
    # Imported on first use: `import cronstream.config.settings` must not load the handlers
    # package (and asyncpg) just because this package's __init__ runs first.
    if name == "Event":
        from cronstream.events.envelope import Event

        return Event
    if name in ("Handler", "Registry"):
        from cronstream.handlers import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'cronstream' has no attribute '{name}'")
