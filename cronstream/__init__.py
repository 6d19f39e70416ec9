"""cronstream: cron-driven Postgres scanners and stream workers with Postgres checkpoints.

A handler module needs only this package's public names:

    from cronstream import Event, Handler, Registry

Everything else (cronstream.handlers, .streams, .schedulers and the core modules) is
internal and may move between releases.
"""

from importlib.metadata import PackageNotFoundError, version

from cronstream.envelope import Event
from cronstream.handlers.registry import Handler, Registry

try:
    __version__ = version("cronstream")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["Event", "Handler", "Registry", "__version__"]
