"""Host names as the HTTP surface compares them (CRONSTREAM_HTTP_ALLOWED_HOSTS, Host headers)."""

from __future__ import annotations

import re

# What a Host header's name may be: a DNS name, an IPv4 address or a bracketed IPv6 one.
_HOST_NAME = re.compile(r"[a-z0-9.\-_]{1,253}|\[[0-9a-f:.]{2,45}\]")


def host_name(host: str) -> str:
    """A Host header (or an address) as its lower-case name, without a port."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:8080
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") == 1:  # name:port; a bare IPv6 address has more colons
        return host.split(":")[0]
    return f"[{host}]" if ":" in host else host


def allowed_host(item: str) -> str:
    """An entry of CRONSTREAM_HTTP_ALLOWED_HOSTS as its name; ValueError if it is none."""
    name = host_name(item)
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(f"'{item}' is not a host name, IP address or [IPv6] address")
    return name
