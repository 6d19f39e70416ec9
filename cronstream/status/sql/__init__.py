"""The named SQL of cronstream.status, beside the code that runs it."""

from cronstream.pg.queries import Queries

query = Queries(__name__)
