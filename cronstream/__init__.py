"""cronstream: cron-driven Postgres scanners and stream workers with Postgres checkpoints."""

__version__ = "0.1.0"
