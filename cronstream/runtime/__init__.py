"""What every layer runs with: logs, metrics, retry, shutdown, identifier rules (names) and
the display of untrusted text (untrusted). Imports errors only.
"""
