"""What an operator sees: one status collected from Postgres and Kafka (collect), rendered
as HTML (page). Imports the feature packages (schedulers, streams) and the core below.
"""
