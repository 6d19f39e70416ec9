"""How many connections the HTTP surface holds open, and how long one may take to ask.

aiohttp's server has no deadline for a request's headers and no cap on connections:
a client sending a byte a second, or opening connections and sending nothing, holds
one each for as long as it likes. `Guard` is the protocol factory given to
`loop.create_server` in place of the aiohttp server itself: over `most` open
connections it answers 503 and closes; otherwise it hands out aiohttp's own protocol
with a timer that closes the connection unless its first request's headers arrived in
`header_timeout` seconds (`started` disarms it, from a middleware). Later requests on
the connection are bounded by aiohttp's keep-alive timeout, which closes a connection
still waiting for headers (idle, or sending them slowly) that long after a response.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web

TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class _Refused(asyncio.Protocol):
    """A connection over the cap: told so, and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writable = cast(asyncio.WriteTransport, transport)
        writable.write(TOO_MANY)
        writable.close()


class Guard:
    """The protocol factory of the surface's listening socket (see the module docstring)."""

    def __init__(self, server: web.Server, most: int, header_timeout: float) -> None:
        self.server = server
        self.most = most
        self.header_timeout = header_timeout
        self.due: dict[web.RequestHandler, asyncio.TimerHandle] = {}
        self.unmade: set[web.RequestHandler] = set()

    def __call__(self) -> asyncio.BaseProtocol:
        # The loop accepts a burst of connections in one pass and makes them afterwards:
        # those handed out and not made yet count too, or a burst passes the cap.
        self.unmade = {protocol for protocol in self.unmade if _unmade(protocol)}
        if len(self.server.connections) + len(self.unmade) >= self.most:
            return _Refused()
        protocol = self.server()
        self.unmade.add(protocol)
        loop = asyncio.get_running_loop()
        self.due[protocol] = loop.call_later(self.header_timeout, self._late, protocol)
        return protocol

    def _late(self, protocol: web.RequestHandler) -> None:
        del self.due[protocol]
        protocol.force_close()  # a no-op when the client left already

    def started(self, protocol: web.RequestHandler) -> None:
        """A request's headers arrived whole on `protocol`: its deadline is met."""
        timer = self.due.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    def stop(self) -> None:
        for timer in self.due.values():
            timer.cancel()
        self.due.clear()


def _unmade(protocol: web.RequestHandler) -> bool:
    """Accepted, and its connection_made has not run yet (it has no transport, and it
    still has the server it reports to, which connection_lost takes away)."""
    return protocol.transport is None and protocol._manager is not None
