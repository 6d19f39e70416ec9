"""Postgres: connections and pools with the session settings (connections), migrations
(migrate), named SQL (queries, sql/). Imports config and runtime only.
"""
