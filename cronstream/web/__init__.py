"""The HTTP surface beside a worker (and, probes and metrics only, a scheduler): the app,
its routes and lifetime (app), who may reach what (access), probes and metrics (health),
event ingress (ingress), the Kafka producer these two share (producer), and connection
and time limits (limits). Imports status and everything below it; never cli.
"""
