"""The HTTP surface of `cronstream worker`, `run` and `scheduler` (aiohttp).

    GET  /healthz  200 while the process runs                        (health.py)
    GET  /readyz   200 when Postgres, Kafka and the engine are ready  (health.py)
    GET  /metrics  Prometheus text (prometheus-client's default registry)
    POST /events   one envelope or a JSON array of them -> 202       (ingress.py)
    GET  /         the status page (cronstream/status/page.py)
    GET  /status.json  what the page shows, as `cronstream status --json` prints it

A worker (and `run`) serves all five on CRONSTREAM_HTTP_PORT; a scheduler serves the
first three on CRONSTREAM_SCHEDULER_HTTP_PORT (`Surface.probes_only`), its /readyz
ready when Postgres answers and saying whether it leads. A Host header not in the
allow-list (access.py) is refused (421) except on /healthz, /metrics and /readyz, which
probes reach by any name. Connections are capped and given deadlines by `limits.Guard`.
Off when the port is 0; a non-loopback address without CRONSTREAM_INGRESS_TOKEN does
not start. The status page is collected at most every `STATUS_CACHE_SECONDS`, so a
refreshing browser cannot hammer Postgres. Beside the page, a sampler (status/sampler.py)
keeps an hour of the group's checkpoints and log ends for its plots and stalls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from cronstream.config.settings import Settings, env_var
from cronstream.errors import CronstreamError
from cronstream.runtime import shutdown
from cronstream.runtime.untrusted import shown
from cronstream.status import collect, page
from cronstream.status.model import Status
from cronstream.status.sampler import Sampler
from cronstream.web import limits
from cronstream.web.access import Access, check_exposure
from cronstream.web.health import Health
from cronstream.web.ingress import Ingress
from cronstream.web.producer import SharedProducer
from cronstream.web.responses import errors_reply, json_reply

if TYPE_CHECKING:
    from cronstream.streams.worker import Readiness

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

STATUS_CACHE_SECONDS = 2.0
SHUTDOWN_SECONDS = 3.0
# After answering a request whose body was not read (refused, timed out), aiohttp reads
# and drops the rest this long, so the client gets the answer rather than a reset.
LINGER_SECONDS = 2.0
ANY_HOST = ("/healthz", "/metrics", "/readyz")  # probes and Prometheus use any name


class PortInUse(CronstreamError):
    """The HTTP surface could not bind its address; the message names the variable."""


class Surface:
    """The aiohttp app and its server; `start` and `stop` around the engine's run.

    `checks`: what else must be ready, by name (the worker's "engine", the "scheduler",
    a supervisor's "workers"), each a `Readiness`. `role`: the scheduler's "leader",
    "standby" or "starting", shown in /readyz's body. `port_setting`: the settings field
    of its port. `metrics`: what /metrics serves (a supervisor's: its children's), by
    default this process's own.
    """

    def __init__(
        self,
        settings: Settings,
        checks: Mapping[str, Readiness],
        role: Callable[[], str] | None = None,
        port_setting: str = "http_port",
        ingress: bool = True,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.port_setting = port_setting
        self.access = Access(settings)
        self.producer = SharedProducer(settings) if ingress else None
        self.health = Health(settings, checks, self.access, self.producer, role, metrics)
        self.ingress = (
            Ingress(settings, self.access, self.producer) if self.producer is not None else None
        )
        self.runner: web.AppRunner | None = None
        self.listener: asyncio.Server | None = None
        self.guard: limits.Guard | None = None
        self.status: Status | None = None
        self.status_at = 0.0
        self.status_lock = asyncio.Lock()
        self.sampler = Sampler(settings) if ingress else None
        self.sampling: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        # Bodies over the limit are refused by aiohttp while reading: never held whole.
        app = web.Application(
            client_max_size=self.settings.ingress_max_bytes, middlewares=[self.gate]
        )
        app.router.add_get("/healthz", self.health.healthz)
        app.router.add_get("/readyz", self.health.readyz)
        app.router.add_get("/metrics", self.health.metrics)
        if self.ingress is not None:
            app.router.add_post("/events", self.ingress.events)
            app.router.add_get("/", self.page)
            app.router.add_get("/status.json", self.status_json)
        return app

    @classmethod
    def probes_only(
        cls, settings: Settings, readiness: Readiness, role: Callable[[], str]
    ) -> Surface:
        """A scheduler's surface: /healthz, /readyz and /metrics on its own port."""
        checks = {"scheduler": readiness}
        return cls(settings, checks, role, port_setting="scheduler_http_port", ingress=False)

    async def start(self) -> None:
        """Serve on http_host and its port (nothing when it is 0); PortInUse if taken."""
        settings = self.settings
        host, port = settings.http_host, getattr(settings, self.port_setting)
        if port == 0:
            return
        check_exposure(settings, self.port_setting)
        # In-flight requests get a few seconds at shutdown, not aiohttp's default minute.
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=settings.http_keepalive_timeout,
            lingering_time=LINGER_SECONDS,
        )
        await runner.setup()
        assert runner.server is not None  # set by setup()
        guard = limits.Guard(
            runner.server, settings.http_max_connections, settings.http_header_timeout
        )
        try:
            # Our own listener rather than web.TCPSite: the guard is its protocol factory.
            listener = await asyncio.get_running_loop().create_server(guard, host, port)
        except OSError as error:
            await runner.cleanup()
            raise PortInUse(
                f"cannot serve HTTP on {host}:{port}: {error.strerror or error}; set "
                f"{env_var(self.port_setting)} to a free port, or to 0 to turn HTTP off"
            ) from None
        self.runner, self.listener, self.guard = runner, listener, guard
        if self.sampler is not None:
            self.sampling = asyncio.create_task(self.sampler.run())
        log.info("HTTP on http://%s:%d/", host, port, extra={"host": host, "port": port})
        if self.ingress is not None and settings.ingress_token is None and settings.ingress_open:
            log.warning(
                "POST /events takes events from every local process without a token "
                "(%s=true); set %s instead",
                env_var("ingress_open"),
                env_var("ingress_token"),
            )

    async def stop(self) -> None:
        if self.sampling is not None:
            await shutdown.cancel_and_wait(self.sampling)
            self.sampling = None
        if self.listener is not None:
            self.listener.close()  # no new connections; the runner closes the open ones
            self.listener = None
        if self.guard is not None:
            self.guard.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.producer is not None:
            await self.producer.stop()

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: its headers arrived in time; its Host is one of ours."""
        if self.guard is not None:
            self.guard.started(request.protocol)
        if request.path not in ANY_HOST and not self.access.our_host(request):
            message = (
                f"Host {shown(request.headers.get('Host', ''))!r} is not a name of this "
                f"server: add it to {env_var('http_allowed_hosts')}"
            )
            return errors_reply(421, [message])
        return await handler(request)

    async def page(self, request: web.Request) -> web.Response:
        if not self.access.authorized(request):
            return self.access.challenge()
        return web.Response(text=page.render(await self.collected()), content_type="text/html")

    async def status_json(self, request: web.Request) -> web.Response:
        if not self.access.authorized(request):
            return self.access.challenge()
        return json_reply(200, (await self.collected()).to_json())

    async def collected(self) -> Status:
        """The status, with this process's samples and readiness; concurrent requests
        share one collection, made at most every STATUS_CACHE_SECONDS."""
        async with self.status_lock:
            if self.status is None or time.monotonic() - self.status_at > STATUS_CACHE_SECONDS:
                not_ready = [f"{name}: {why}" for name, why in await self.health.not_ready()]
                live = collect.Live(not_ready=not_ready)
                if self.sampler is not None:
                    live.samples = self.sampler.samples
                    live.reader, live.pool = self.sampler.reader, self.sampler.pool
                    live.committed = self.sampler.committed
                self.status = await collect.collect(self.settings, self.settings.jobs_file, live)
                self.status_at = time.monotonic()
            return self.status
