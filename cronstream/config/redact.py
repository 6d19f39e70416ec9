"""Passwords out of connection URLs: for logs, error messages and a driver's own errors.

A URL in any DSN form (`user:password@`, `?password=`, key=value `password=`, several
hosts, unencoded special characters in the password) is redacted without ever raising.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# A query parameter: `?password=...`, `&sslpassword=...`, or a name percent-encoded
# (`passwor%64`), which drivers decode; a value runs to the next `&`, as drivers read it.
_QUERY_PARAM = re.compile(r"([?&][^=&?]*=)([^&]*)")
# `password=...` in a key=value connection string, quoted or not.
_KEYWORD_SECRET = re.compile(r"(?i)(\b[a-z]*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def _userinfo_end(url: str) -> int:
    """Where the user:password part of a URL ends (its last '@'), or -1.

    The last '@' of the whole URL, not urlsplit's: an unencoded '#', '/' or '?' in a
    password makes urlsplit end the netloc inside it. Too far is safe: more is hidden.
    """
    return url.rfind("@", url.find("://") + 3) if "://" in url else -1


def _secret_param(match: re.Match[str]) -> bool:
    return "password" in unquote(match.group(1)).lower()


def secrets_of(url: str) -> list[str]:
    """Every text that `redact_url` hides, raw and percent-decoded, longest first."""
    found: list[str] = []
    end = _userinfo_end(url)
    if end >= 0:
        userinfo = url[url.find("://") + 3 : end]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    if "://" in url:
        found.extend(m.group(2) for m in _QUERY_PARAM.finditer(url) if _secret_param(m))
    else:
        found.extend(match.group(2) for match in _KEYWORD_SECRET.finditer(url))
    found.extend([unquote(text) for text in found] + [text.strip("'") for text in found])
    return sorted({text for text in found if text}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """`url` (any DSN form) with every password replaced by ***; never raises.

    For logs and error messages: `user:password@`, `?password=` and key=value
    `password=` forms, multi-host URLs, and passwords with unencoded special characters.
    """
    if "://" not in url:
        return _KEYWORD_SECRET.sub(r"\1***", url)
    end = _userinfo_end(url)
    if end >= 0:
        start = url.find("://") + 3
        user, colon, _ = url[start:end].partition(":")
        url = f"{url[:start]}{user}{':***' if colon else ''}{url[end:]}"
    return _QUERY_PARAM.sub(lambda m: f"{m.group(1)}***" if _secret_param(m) else m[0], url)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message, say) with every secret of `url` replaced by ***."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
