"""The root of cronstream's own errors, and pydantic's errors as plain messages."""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError


class CronstreamError(Exception):
    """An error cronstream raises on purpose; its message is written for the user.

    `exit_code`: what the CLI exits with (2 bad input or settings, 1 otherwise).
    `retriable`: a service is unavailable, so the same work may pass later.
    """

    exit_code: ClassVar[int] = 1
    retriable: ClassVar[bool] = False

    def cli_line(self) -> str:
        """The text after `error: ` when this ends a command."""
        return str(self)


# pydantic's messages that name Python's types ("a valid dictionary", "a valid list",
# "instance of ScanConfig"), in the words of JSON (and TOML, for a jobs file).
_IN_USERS_WORDS = {
    "dict_type": "Input should be an object",
    "model_type": "Input should be an object",
    "model_attributes_type": "Input should be an object",
    "list_type": "Input should be an array",
    "tuple_type": "Input should be an array",
}


def problems(error: ValidationError) -> list[tuple[str, str]]:
    """Each problem as (dotted field path, message); the path is "" for the whole value.

    Only pydantic's messages: its str() would quote the input, a password perhaps.
    """
    return [
        (
            ".".join(str(part) for part in problem["loc"]),
            _IN_USERS_WORDS.get(problem["type"], problem["msg"]).removeprefix("Value error, "),
        )
        for problem in error.errors()
    ]


# What the CLI adds to an error that a service being down would explain.
START_SERVICES = "start local services with 'make services'"
