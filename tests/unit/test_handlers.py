from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cronstream.events.envelope import Event
from cronstream.handlers.projection import newest_per_key
from cronstream.handlers.registry import Registry, RegistryError, load_modules
from cronstream.runtime.retry import RetryPolicy


async def first(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    return None


async def second(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    return None


def test_second_handler_for_a_type_is_an_error_naming_both() -> None:
    registry = Registry()
    registry.register("order_paid", first)
    with pytest.raises(RegistryError) as raised:
        registry.register("order_paid", second)
    message = str(raised.value)
    assert "order_paid" in message
    assert f"{__name__}.first" in message and f"{__name__}.second" in message
    assert registry.get("order_paid") is first


def test_handler_modules_must_exist_and_register() -> None:
    with pytest.raises(RegistryError, match=r"cannot import handler module 'no\.such\.module'"):
        load_modules(Registry(), ["no.such.module"])
    with pytest.raises(RegistryError, match="has no register"):
        load_modules(Registry(), ["json"])


def event(key: str, version: int | None, minutes: int) -> Event:
    return Event.new(
        type="sync_required",
        source="t",
        entity="customer",
        key=key,
        version=version,
        payload={"v": version, "m": minutes},
        occurred_at=datetime(2027, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
    )


def test_projection_keeps_the_newest_version_per_key_whatever_the_order() -> None:
    batch = [event("1", 3, 0), event("1", 5, 0), event("1", 4, 9), event("2", 1, 0)]
    kept = {e.key: e.version for e in newest_per_key(batch)}
    assert kept == {"1": 5, "2": 1}


def test_projection_orders_by_time_without_versions() -> None:
    batch = [event("1", None, 5), event("1", None, 2)]
    assert [e.payload["m"] for e in newest_per_key(batch)] == [5]


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.5, backoff_max=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
