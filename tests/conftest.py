"""Fixtures for every test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def main_thread_event_loop() -> Iterator[None]:
    """A current event loop for the session, closed at its end.

    Without one, pytest-asyncio's first test has `asyncio.get_event_loop()` make a loop
    that nobody closes; once a synchronous test's `asyncio.run` (a CLI command run
    in-process) unsets it, the garbage collector warns about it in whatever test is
    running then, and that warning fails the test.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()
