"""Configuration: one Settings object read from CRONSTREAM_* variables (settings), the
Kafka and database connections it hands to clients (connections), the input topic specs
(topics), Host names (hosts), passwords kept out of URLs shown (redact), and each
setting's variable and the error that names it (env). Imports runtime and errors only.
"""
