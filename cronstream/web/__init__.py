"""The HTTP surface beside a worker: health and readiness probes, metrics, the status page
and event ingress (server), and its connection and time limits (limits). Imports status
and everything below it; never cli.
"""
