"""The Handler protocol and the registry that routes event types to handlers."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import asyncpg

from cronstream.errors import CronstreamError
from cronstream.events.envelope import Event


class Handler(Protocol):
    """Applies a batch of events of one type, from one partition, in offset order.

    `connection` is inside the open transaction that will also record the checkpoint:
    write the effects through it and they commit together with the offset, or not at all.
    Raise to reject the batch; the worker retries and finally dead-letters the event.
    """

    async def __call__(self, events: Sequence[Event], connection: asyncpg.Connection) -> None: ...


Router = Callable[[str, str], Handler | None]
"""(topic, event type) -> the handler, or None when nothing handles it."""


class RegistryError(CronstreamError):
    """A handler registration or a handler module is invalid."""

    exit_code = 2


def describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", "?")
    name = getattr(handler, "__qualname__", type(handler).__qualname__)
    return f"{module}.{name}"


class Registry:
    """Event type -> handler; one handler per type."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        # For events of an external change topic whose type has no handler of its own
        # (the built-in projection, once handlers/projection.py registered itself).
        self.external_fallback: Handler | None = None

    def register(self, event_type: str, handler: Handler) -> None:
        existing = self._handlers.get(event_type)
        if existing is not None:
            raise RegistryError(
                f"event type '{event_type}' already has handler {describe(existing)}; "
                f"cannot also register {describe(handler)}"
            )
        self._handlers[event_type] = handler

    def get(self, event_type: str) -> Handler | None:
        return self._handlers.get(event_type)

    def types(self) -> list[str]:
        return sorted(self._handlers)


def load_modules(registry: Registry, modules: Iterable[str]) -> None:
    """Import each module and call its `register(registry)`."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise RegistryError(f"cannot import handler module '{name}': {error}") from error
        register = getattr(module, "register", None)
        if not callable(register):
            raise RegistryError(f"handler module '{name}' has no register(registry) function")
        register(registry)
