"""The named SQL of the migration runner."""

from cronstream.pg.queries import Queries

query = Queries(__name__)
