"""The CRONSTREAM_* environment: each setting's variable, and the error that names it."""

from __future__ import annotations

from cronstream.errors import CronstreamError

ENV_PREFIX = "CRONSTREAM_"


class SettingsError(CronstreamError, ValueError):
    """A setting cannot be used; the message names its CRONSTREAM_* variable."""

    exit_code = 2

    def cli_line(self) -> str:
        return f"invalid settings: {self}"


def env_var(field: str) -> str:
    """The environment variable that sets a Settings field, for --help texts."""
    return f"{ENV_PREFIX}{field.upper()}"
