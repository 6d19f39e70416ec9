"""GET /healthz, /readyz and /metrics: what probes and Prometheus ask.

/healthz is 200 while the process runs. /readyz is 200 when Postgres and Kafka answer
and the engine's partitions are assigned and positioned (a scheduler's surface: when
Postgres answers and the scheduler started; Kafka is not asked); otherwise 503 naming
what is not, and why only to whom may see details (the reasons name servers, users and
databases). Where a scheduler runs, the body's "scheduler" says whether it is the
"leader", on "standby" or "starting". Concurrent probes share one check, made at most every
`READY_CACHE_SECONDS`: a probe storm costs no connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import prometheus_client
from aiohttp import web
from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.pg import connections
from cronstream.runtime.untrusted import shown
from cronstream.web.access import Access
from cronstream.web.producer import SharedProducer
from cronstream.web.responses import json_reply

if TYPE_CHECKING:
    from cronstream.streams.worker import Readiness

CHECK_TIMEOUT = 3.0  # seconds for each readiness check of Postgres and Kafka
READY_CACHE_SECONDS = 1.0


class Health:
    def __init__(
        self,
        settings: Settings,
        checks: Mapping[str, Readiness],
        access: Access,
        producer: SharedProducer | None,
        role: Callable[[], str] | None = None,
        metrics: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.checks = checks
        self.access = access
        self.producer = producer  # None: Kafka is not asked
        self.role = role
        self.registry = metrics if metrics is not None else prometheus_client.REGISTRY
        self.ready: list[tuple[str, str]] = []
        self.ready_at = float("-inf")
        self.ready_lock = asyncio.Lock()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def not_ready(self) -> list[tuple[str, str]]:
        """What is not ready and why (empty when all is), from the shared check."""
        async with self.ready_lock:  # concurrent probes share one check
            if time.monotonic() - self.ready_at > READY_CACHE_SECONDS:
                self.ready = await self._check_ready()
                self.ready_at = time.monotonic()
            return self.ready

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = await self.not_ready()
        body: dict[str, Any] = {"ready": not reasons}
        if self.role is not None:
            body["scheduler"] = self.role()
        if not reasons:
            return json_reply(200, body | {"reasons": []})
        # Why names servers, users and databases: only for whom may see the page.
        if self.access.our_host(request) and self.access.authorized(request):
            details = [f"{name}: {why}" for name, why in reasons]
            return json_reply(503, body | {"reasons": details})
        return json_reply(503, body | {"reasons": [name for name, _ in reasons]})

    async def metrics(self, request: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(self.registry)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def _check_ready(self) -> list[tuple[str, str]]:
        """What is not ready and why; empty when all is."""
        found = [(name, ready()) for name, ready in self.checks.items()]
        postgres, kafka_reason = await asyncio.gather(self._postgres(), self._kafka())
        found += [("postgres", postgres), ("kafka", kafka_reason)]
        return [(name, reason) for name, reason in found if reason is not None]

    async def _postgres(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with connections.connection(self.settings) as connection:
                    await connection.fetchval("SELECT 1")
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g}s"
        except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
            return (
                str(error)
                if isinstance(error, connections.DatabaseUnavailable)
                else type(error).__name__
            )
        return None

    async def _kafka(self) -> str | None:
        if self.producer is None:
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                producer = await self.producer.get()
                await producer.client.fetch_all_metadata()  # one metadata request
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g}s"
        except (KafkaError, OSError) as error:
            return f"{type(error).__name__}: {shown(str(error))}"
        return None
