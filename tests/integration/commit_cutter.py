"""A TCP proxy in front of Postgres that loses a COMMIT's acknowledgement: for the
backends a test arms, it drops the connection right after Postgres answered COMMIT,
so the transaction is committed and the client never hears it (a network cut at the
worst moment, made deterministic)."""

from __future__ import annotations

import asyncio
import struct
from contextlib import suppress
from urllib.parse import urlsplit, urlunsplit

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
COMMIT_DONE = b"COMMIT\x00"


class CommitCutter:
    """Forwards connections to `upstream` (a postgresql:// URL); `url` is the proxy's."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.armed: set[int] = set()  # backend pids whose next COMMIT answer is lost
        self.cut: list[int] = []  # backend pids whose COMMIT answer was lost
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CommitCutter:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.connections):
            writer.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's host and port."""
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        credentials = self.upstream.netloc.rpartition("@")[0]
        return urlunsplit(self.upstream._replace(netloc=f"{credentials}@127.0.0.1:{port}"))

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections.add(client_out)
        server_out: asyncio.StreamWriter | None = None
        try:
            first = await client_in.readexactly(8)
            if first == SSL_REQUEST:  # no TLS through the proxy: the client goes on without
                client_out.write(b"N")
                first = b""
            server_in, server_out = await asyncio.open_connection(
                self.upstream.hostname, self.upstream.port or 5432
            )
            self.connections.add(server_out)
            server_out.write(first)
            pipes = [
                asyncio.ensure_future(_pipe(client_in, server_out)),
                asyncio.ensure_future(self._answers(server_in, client_out)),
            ]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for pipe in pipes:
                pipe.cancel()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for writer in (client_out, server_out):
                if writer is not None:
                    self.connections.discard(writer)
                    writer.close()

    async def _answers(
        self, server_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        """Postgres's messages to the client, read one by one: the backend's pid from
        BackendKeyData, and an armed backend's COMMIT answer swallowed with the connection."""
        pid = None
        while True:
            head = await server_in.readexactly(5)
            kind, length = head[:1], struct.unpack("!i", head[1:])[0]
            body = await server_in.readexactly(length - 4)
            if kind == b"K":
                pid = struct.unpack("!i", body[:4])[0]
            if kind == b"C" and body == COMMIT_DONE and pid in self.armed:
                self.armed.discard(pid)
                self.cut.append(pid)
                return  # the caller closes both sides: the answer never arrives
            client_out.write(head + body)
            await client_out.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
