"""A worker with its HTTP surface on a free port, and waiting for it to be ready."""

from __future__ import annotations

import socket
from collections.abc import Callable

import aiohttp

from tests.integration.commands import run_cli
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import WorkerProcess, worker_env


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_in_use_line(
    command: list[str], env_for: Callable[[int], dict[str, str]]
) -> tuple[int, str]:
    """Run `command` with its port taken by another socket: it must exit 1 with one
    `error:` line and no traceback; the port and that line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        result = run_cli(command, env_for(port), timeout=120)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return port, lines[0]


def http_env(base: dict[str, str], port: int, **extra: str) -> dict[str, str]:
    return worker_env(base, **({"CRONSTREAM_HTTP_PORT": str(port)} | extra))


async def readyz(url: str) -> tuple[int, dict[str, object]]:
    """GET /readyz: its status and JSON body; (0, {}) while nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{url}/readyz") as response,
        ):
            return response.status, await response.json()
    except aiohttp.ClientConnectionError:
        return 0, {}


async def get(url: str, **headers: str) -> tuple[int, str]:
    """GET `url`: its status and body; (0, "") while nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, await response.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def wait_ready(url: str, process: WorkerProcess, seconds: float = 90) -> None:
    """Until /readyz says 200; fails early, with the log, if the process died."""

    answers: list[tuple[int, dict[str, object]]] = []

    async def ready() -> bool:
        assert process.alive(), f"{process.name} exited:\n{process.logs()[-3000:]}"
        answers.append(await readyz(url))
        return answers[-1][0] == 200

    try:
        await wait_for(ready, seconds, f"{url}/readyz to say 200")
    except AssertionError as error:
        raise AssertionError(f"{error}; it said {answers[-1:]}") from None
