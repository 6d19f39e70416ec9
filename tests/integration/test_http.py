"""The worker's HTTP surface, against a real `cronstream worker` process: every status
code of /healthz, /readyz, /metrics, POST /events and / (cronstream/web/), who may
reach each (token, Host), and the settings that refuse to start an exposed surface."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from cronstream.config.settings import Settings
from cronstream.events.envelope import TRACE_HEADER
from cronstream.kafka.clients import connection_options
from tests.integration.commands import environment, run_cli
from tests.integration.http_helpers import (
    free_port,
    get,
    http_env,
    port_in_use_line,
    readyz,
    wait_ready,
)
from tests.integration.kafka_helpers import end_offsets, read_all, wait_for
from tests.integration.services import Services
from tests.integration.session import TEMPLATE, admin, drop_database, unique_name, with_database
from tests.integration.workers import WorkerProcess

TOKEN = "tok-3f9a1c-not-for-logs"
LIMIT = 256 * 1024  # CRONSTREAM_INGRESS_MAX_BYTES of the module's worker
JSON = "application/json"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def envelope(**fields: Any) -> dict[str, Any]:
    return {"type": "count", "entity": "item", "key": "1", "payload": {"i": 1}} | fields


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class Served:
    url: str
    settings: Settings
    process: WorkerProcess


@pytest.fixture(scope="module")
def served(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One worker for the module, with a token and a small body limit; ready when yielded."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(services.database_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
    topic = unique_name("test.")
    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        database_url=with_database(services.database_url, name),
        sync_topic=topic,
        consumer_group=f"group.{topic}",
    )
    port = free_port()
    env = http_env(
        environment(settings),
        port,
        CRONSTREAM_INGRESS_TOKEN=TOKEN,
        CRONSTREAM_INGRESS_MAX_BYTES=str(LIMIT),
    )
    process = WorkerProcess(env, tmp_path_factory.mktemp("http"), "worker")
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        asyncio.run(wait_ready(url, process))
        yield Served(url, settings, process)
    finally:
        process.stop()
        asyncio.run(drop_database(services.database_url, name))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: Any,
    content_type: str | None = JSON,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """POST /events: status, JSON body and response headers."""
    sent = dict(AUTH if headers is None else headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with session.post(f"{url}/events", data=data, headers=sent) as response:
        return response.status, await response.json(), response.headers


async def test_healthz_and_metrics(served: Served, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{served.url}/healthz") as response:
        assert response.status == 200
        assert (await response.text()).strip() == "ok"
    async with session.get(f"{served.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        families = list(text_string_to_metric_families(await response.text()))
    assert families, "a scrape parses into metric families"


async def test_readyz_is_200_once_partitions_are_assigned(served: Served) -> None:
    status, answer = await readyz(served.url)
    assert (status, answer) == (200, {"ready": True, "reasons": []})


async def test_readyz_and_ingress_on_each_engine(
    engine: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Both engines serve the surface and say when their partitions are positioned."""
    port = free_port()
    env = http_env(cli_env, port, CRONSTREAM_ENGINE=engine, CRONSTREAM_INGRESS_TOKEN=TOKEN)
    process = WorkerProcess(env, tmp_path, engine)
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, process)
        async with aiohttp.ClientSession() as session:
            status, answer, _ = await post(session, url, body(envelope()))
        assert status == 202, answer
    finally:
        code, _ = process.terminate()
    assert code == 0, process.logs()[-3000:]


async def test_post_events_is_202_with_ids_once_kafka_has_them(
    served: Served, session: aiohttp.ClientSession
) -> None:
    trace = f"trace-{uuid.uuid4().hex}"
    one = envelope(id="given-id", trace_id=trace)
    status, answer, _ = await post(session, served.url, body(one))
    assert status == 202, answer
    assert answer == {"ids": ["given-id"]}

    many = [envelope(key=str(k), payload={"k": k}) for k in range(3)]
    status, answer, _ = await post(session, served.url, body(many))
    assert status == 202, answer
    ids = answer["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3  # ids filled in, as publish does

    records = await read_all(served.settings, served.settings.sync_topic, 4)
    values = [json.loads(r.value) for r in records]
    assert sorted(v["id"] for v in values) == sorted(["given-id", *ids])
    first = next(r for r in records if json.loads(r.value)["id"] == "given-id")
    assert (TRACE_HEADER, trace.encode()) in first.headers
    assert {v["source"] for v in values} == {"cronstream-http"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": f"bearer {TOKEN}"}, 202),  # the scheme is case-insensitive
        (AUTH, 202),
    ],
)
async def test_post_events_needs_the_bearer_token(
    served: Served, session: aiohttp.ClientSession, headers: dict[str, str], expected: int
) -> None:
    status, answer, response_headers = await post(
        session, served.url, body(envelope()), headers=headers
    )
    assert status == expected, answer
    if expected == 401:
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in answer["errors"][0]
    assert TOKEN not in served.process.logs()


# Host header ({port}: the worker's), method, path, status; the token is sent.
HOSTS = [
    ("127.0.0.1:{port}", "POST", "/events", 202),
    ("localhost:{port}", "POST", "/events", 202),
    ("LocalHost", "POST", "/events", 202),
    ("[::1]:{port}", "POST", "/events", 202),
    ("attacker.example", "POST", "/events", 421),
    ("attacker.example:{port}", "POST", "/events", 421),
    ("127.0.0.1.attacker.example", "POST", "/events", 421),
    ("attacker.example:{port}", "GET", "/", 421),
    ("", "GET", "/", 421),
    ("attacker.example:{port}", "GET", "/healthz", 200),  # probes use any name
    ("attacker.example:{port}", "GET", "/metrics", 200),
    ("attacker.example:{port}", "GET", "/readyz", 200),
]


@pytest.mark.parametrize(("host", "method", "path", "expected"), HOSTS)
async def test_only_our_host_names_are_answered(
    served: Served,
    session: aiohttp.ClientSession,
    host: str,
    method: str,
    path: str,
    expected: int,
) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host."""
    port = served.url.rsplit(":", 1)[1]
    headers = AUTH | {"Host": host.format(port=port), "Content-Type": JSON}
    data = body(envelope()) if method == "POST" else None
    before = await end_offsets(served.settings, served.settings.sync_topic)
    async with session.request(method, served.url + path, data=data, headers=headers) as answer:
        assert answer.status == expected, await answer.text()
        if expected == 421:
            message = (await answer.json())["errors"]
            assert len(message) == 1 and "CRONSTREAM_HTTP_ALLOWED_HOSTS" in message[0]
    if expected != 202:
        assert await end_offsets(served.settings, served.settings.sync_topic) == before


async def test_ingress_is_closed_without_a_token(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The defaults: POST /events is 403 with one line saying what to set; the page is
    served to the loopback names only."""
    port = free_port()
    process = WorkerProcess(http_env(cli_env, port), tmp_path, "worker")
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        await wait_ready(url, process)
        before = await end_offsets(settings, settings.sync_topic)
        async with aiohttp.ClientSession() as session:
            status, answer, _ = await post(session, url, body(envelope()), headers={})
            assert status == 403, answer
            assert len(answer["errors"]) == 1 and "CRONSTREAM_INGRESS_TOKEN" in answer["errors"][0]
            status, answer, _ = await post(session, url, body(envelope()), headers=AUTH)
            assert status == 403, answer  # a token nobody set opens nothing
            rebound = {"Host": "attacker.example"}
            status, answer, _ = await post(session, url, body(envelope()), headers=rebound)
            assert status == 421, answer
            async with session.get(f"{url}/") as page:
                assert page.status == 200
            async with session.get(f"{url}/", headers=rebound) as page:
                assert page.status == 421
        assert await end_offsets(settings, settings.sync_topic) == before
    finally:
        process.stop()


@pytest.mark.parametrize("opened", [False, True])
def test_a_network_address_without_a_token_does_not_start(
    cli_env: dict[str, str], opened: bool
) -> None:
    extra = {"CRONSTREAM_INGRESS_OPEN": "true"} if opened else {}
    env = http_env(cli_env, free_port(), CRONSTREAM_HTTP_HOST="0.0.0.0", **extra)
    result = run_cli(["worker"], env, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "CRONSTREAM_HTTP_HOST=0.0.0.0" in lines[0] and "CRONSTREAM_INGRESS_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


# body, Content-Type, status, and the (index, field) the first error names (None: any).
BAD_INPUT: list[tuple[bytes, str | None, int, tuple[int | None, str] | None]] = [
    (b"", JSON, 400, (None, "<value>")),
    (b"  \n ", JSON, 400, (None, "<value>")),
    (b"[]", JSON, 400, (None, "<value>")),
    (b"[ ]", JSON, 400, (None, "<value>")),
    (b"\xff\xfe\x00garbage", JSON, 400, (0, "<value>")),
    (b"\x00\x01\x02", JSON, 400, (0, "<value>")),
    (b'{"type": "count", "entity": "\xff", "key": "1", "payload": {}}', JSON, 400, None),
    (b"[" * 50_000 + b"]" * 50_000, JSON, 400, (None, "<value>")),
    (b'{"a":' * 30_000 + b"1" + b"}" * 30_000, JSON, 400, (0, "<value>")),
    (body(envelope(payload={"deep": json.loads("[" * 300 + "]" * 300)})), JSON, 400, None),
    (body(envelope()).replace(b'"i": 1', b'"i": 1e400'), JSON, 400, (0, "<value>")),
    (body(envelope()).replace(b'"i": 1', b'"i": ' + b"9" * 5000), JSON, 400, (0, "<value>")),
    (body(envelope()).replace(b'"i": 1', b'"i": NaN'), JSON, 400, (0, "<value>")),
    (body(envelope(version="5")), JSON, 400, (0, "version")),
    (body(envelope(version=2**63)), JSON, 400, (0, "version")),
    (body(envelope(entity="no spaces")), JSON, 400, (0, "entity")),
    (body(envelope(payload=[])), JSON, 400, (0, "payload")),
    (body(envelope(extra=1)), JSON, 400, (0, "extra")),
    (body(envelope(payload={"t": "nul\u0000"})), JSON, 400, (0, "<value>")),
    (body({"type": "count"}), JSON, 400, (0, "entity")),
    (body([envelope(), {"type": "count"}]), JSON, 400, (1, "entity")),
    (body([envelope(), 1]), JSON, 400, (1, "<value>")),
    (body("just a string"), JSON, 400, (0, "<value>")),
    (b"null", JSON, 400, (0, "<value>")),
    (b"[1, 2", JSON, 400, (None, "<value>")),
    (b"[" + b",".join([b"1"] * 10_001) + b"]", JSON, 400, (None, "<value>")),  # too many
    (body([envelope(), envelope(type="sync_required")]), JSON, 422, (1, "type")),
    (body(envelope(type="sync_required", version=2**63 - 1)), JSON, 422, (0, "type")),
    (body(envelope()), "text/plain", 415, None),
    (body(envelope()), "application/x-www-form-urlencoded", 415, None),
    (body(envelope()), None, 415, None),  # aiohttp sends application/octet-stream
]


@pytest.mark.parametrize(("data", "content_type", "expected", "where"), BAD_INPUT)
async def test_post_events_refuses_bad_input_and_sends_nothing(
    served: Served,
    session: aiohttp.ClientSession,
    data: bytes,
    content_type: str | None,
    expected: int,
    where: tuple[int | None, str] | None,
) -> None:
    before = await end_offsets(served.settings, served.settings.sync_topic)
    status, answer, _ = await post(session, served.url, data, content_type)
    assert status == expected, answer
    assert answer["errors"], answer
    if where is not None:
        first = answer["errors"][0]
        assert (first["index"], first["field"]) == where, first
        assert first["message"]
    assert await end_offsets(served.settings, served.settings.sync_topic) == before
    assert served.process.alive()


async def test_post_events_over_the_limit_is_413(
    served: Served, session: aiohttp.ClientSession
) -> None:
    padding = "x" * LIMIT
    big = body(envelope(payload={"pad": padding}))
    status, answer, _ = await post(session, served.url, big)
    assert status == 413, answer
    assert "CRONSTREAM_INGRESS_MAX_BYTES" in answer["errors"][0]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while read
        for _ in range(8):
            yield b" " * (LIMIT // 4)

    status, answer, _ = await post(session, served.url, chunks())
    assert status == 413, answer


async def test_status_page_escapes_untrusted_text(
    served: Served, session: aiohttp.ClientSession
) -> None:
    hostile_topic = "<script>alert(1)</script>"
    hostile_error = "<img src=x onerror=alert(2)>"
    connection = await asyncpg.connect(served.settings.database_dsn)
    try:
        await connection.execute(
            'INSERT INTO checkpoints (consumer, topic, partition, "offset") '
            "VALUES ('other', $1, 0, 5)",
            hostile_topic,
        )
        await connection.execute(
            'INSERT INTO dead_letters (consumer, topic, partition, "offset", dlq_topic, '
            "error, attempts) VALUES ('other', $1, 0, 3, 'x.dlq', $2, 1)",
            hostile_topic,
            hostile_error,
        )
    finally:
        await connection.close()
    async with session.get(f"{served.url}/") as response:
        assert response.status == 401  # a token is set: the page needs it too
    async with session.get(f"{served.url}/status.json") as response:
        assert response.status == 401  # and its data
    async with session.get(f"{served.url}/status.json", headers=AUTH) as response:
        assert response.status == 200
        data = await response.json()
    assert {g["consumer"] for g in data["groups"]} == {"other"}
    assert data["dead_letters"][0]["error"] == hostile_error
    async with session.get(f"{served.url}/", headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert served.settings.sync_topic in page


async def test_readyz_is_503_naming_postgres_when_it_is_unreachable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Why (the server, user, database) only with the token; without, only what."""
    port = free_port()
    closed = free_port()  # nothing listens there
    env = http_env(
        cli_env,
        port,
        CRONSTREAM_DATABASE_URL=f"postgresql://appuser:hunter2@127.0.0.1:{closed}/proddb",
        CRONSTREAM_CONNECT_TIMEOUT="1",
        CRONSTREAM_INGRESS_TOKEN=TOKEN,
    )
    process = WorkerProcess(env, tmp_path, "worker")
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        answers: list[tuple[int, dict[str, object]]] = []

        async def answered() -> bool:
            answers.append(await readyz(url))
            return answers[-1][0] != 0

        await wait_for(answered, 60, "/readyz to answer")
        status, answer = answers[-1]
        assert status == 503
        reasons = answer["reasons"]
        assert isinstance(reasons, list) and "postgres" in reasons, answer
        assert set(reasons) <= {"engine", "postgres", "kafka"}, answer  # names, no more
        for text in ("appuser", "proddb", "hunter2", "127.0.0.1"):
            assert text not in json.dumps(answer), answer
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/readyz", headers=AUTH) as response,
        ):
            detailed = await response.json()
        assert response.status == 503
        assert any(r.startswith("postgres: ") and "proddb" in r for r in detailed["reasons"])
        assert "hunter2" not in json.dumps(detailed)
        # The page still answers, saying so at the top; its sampler waits, said once.
        code, page = await get(f"{url}/", **AUTH)
        assert code == 200, page[:2000]
        summary = page[page.find('<p id="summary"') :][:800]
        assert re.search(
            r'<p id="summary" class="not-ready">NOT READY \(.*; postgres: cannot', summary
        ), summary
        assert "hunter2" not in page
        await wait_for(
            lambda: "status samples paused" in process.logs(), 30, "the sampler to pause"
        )
        assert process.alive()
    finally:
        process.stop()
    assert process.logs().count("status samples paused") == 1
    assert "hunter2" not in process.logs()


async def test_post_events_is_503_when_kafka_refuses(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A topic whose max.message.bytes is below the event: the broker refuses the send."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()  # inside: a cancelled start must still stop it
        small = {"max.message.bytes": "2000"}
        await admin.create_topics([NewTopic(settings.sync_topic, 1, 1, topic_configs=small)])
    finally:
        await admin.close()
    port = free_port()
    env = http_env(cli_env, port, CRONSTREAM_INGRESS_OPEN="true")  # no token: opened loudly
    process = WorkerProcess(env, tmp_path, "worker")
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, process)
        assert process.log_entries("POST /events takes events from every local process")
        async with aiohttp.ClientSession() as session:
            status, answer, headers = await post(
                session, url, body(envelope(payload={"pad": "x" * 5000})), headers={}
            )
            assert status == 503, answer
            assert answer["errors"] and answer["sent"] == 0
            assert "Retry-After" in headers
            # The refusal does not poison the ingress: a small event goes through.
            status, answer, _ = await post(session, url, body(envelope()), headers={})
            assert status == 202, answer
        assert process.alive()
    finally:
        process.stop()


def test_a_port_in_use_is_one_line_naming_the_variable(cli_env: dict[str, str]) -> None:
    port, line = port_in_use_line(["worker"], lambda port: http_env(cli_env, port))
    assert str(port) in line and "CRONSTREAM_HTTP_PORT" in line
