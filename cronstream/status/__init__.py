"""What an operator sees: one status model (model), gathered from Postgres and Kafka
(collect), rendered as text (text), HTML (page) or JSON (`Status.to_json`). Imports the
feature packages (schedulers, streams) and the core below.
"""
