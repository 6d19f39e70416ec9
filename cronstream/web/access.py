"""Who may reach what on the HTTP surface: the Host allow-list and the bearer token.

A Host header not in the allow-list is refused: a web page whose name was rebound to
127.0.0.1 cannot post events or read the page. The bearer token
(CRONSTREAM_INGRESS_TOKEN) is compared in constant time and never logged. A surface
reachable from the network without a token is refused before it starts.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from cronstream.config.settings import Settings, SettingsError, env_var, host_name
from cronstream.web.responses import errors_reply

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(host: str) -> bool:
    name = host_name(host).strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(settings: Settings, port_setting: str = "http_port") -> None:
    """Refuse a surface reachable from the network without a token (SettingsError);
    `port_setting` names the surface's port field (0: it does not serve)."""
    host = settings.http_host
    port = getattr(settings, port_setting)
    if port == 0 or settings.ingress_token is not None or is_loopback(host):
        return
    raise SettingsError(
        f"{env_var('http_host')}={host} is reachable from the network: set "
        f"{env_var('ingress_token')} (POST /events, / and /readyz details need it), or "
        "bind a loopback address"
    )


class Access:
    """The surface's names and token, asked of each request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        extra = settings.http_allowed_hosts
        self.hosts = frozenset([*LOOPBACK_NAMES, host_name(settings.http_host), *extra])

    def our_host(self, request: web.Request) -> bool:
        return host_name(request.headers.get("Host", "")) in self.hosts

    def authorized(self, request: web.Request) -> bool:
        """The request may see details: it carries the token, or none is set."""
        token = self.settings.ingress_token
        if token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # surrogateescape: the header's own bytes, whatever they are, compared whole.
        offered = given.strip().encode("utf-8", "surrogateescape")
        return scheme.lower() == "bearer" and hmac.compare_digest(offered, expected)

    @staticmethod
    def challenge() -> web.Response:
        """401 for a request without the right token."""
        challenge = 'Bearer realm="cronstream"'
        message = "missing or wrong bearer token (Authorization: Bearer <token>)"
        return errors_reply(401, [message], **{"WWW-Authenticate": challenge})
