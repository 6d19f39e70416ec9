"""The `cronstream` command line: the typer app (app.py), one module per command group
(migrate, publish, worker, replay, jobs, status), the options they share (options.py),
progress display (progress.py), and the composition root that wires the packages
together for the commands and for programs embedding cronstream (compose.py).
"""

from cronstream.cli.app import app, main

__all__ = ["app", "main"]
