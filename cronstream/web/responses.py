"""The JSON answers of the HTTP surface: a body, or `{"errors": [...]}` for a refusal."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def json_reply(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def errors_reply(status: int, errors: list[Any], **headers: str) -> web.Response:
    return json_reply(status, {"errors": errors}, **headers)
