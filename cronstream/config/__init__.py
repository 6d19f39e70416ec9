"""Configuration: one Settings object read from CRONSTREAM_* variables (settings) and the
input topic specs (topics). Imports runtime and errors only.
"""
