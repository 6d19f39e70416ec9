"""The named SQL of the core modules (migrations, status)."""

from cronstream.pg.queries import Queries

query = Queries(__name__)
