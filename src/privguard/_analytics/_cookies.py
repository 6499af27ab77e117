"""Analytics cookies: expired for an opted-out person, never set for one (C23)."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["CookieRules"]

# A cookie name privguard will write back: RFC 6265 token characters only, so a name
# taken from the request can never smuggle attributes into a Set-Cookie header.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_EPOCH: Final = "Thu, 01 Jan 1970 00:00:00 GMT"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def request_host(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's host name (no port), if it is a plain DNS name."""
    for key, value in headers:
        if key.lower() == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return None
            host = host.rsplit(":", 1)[0] if ":" in host else host
            host = host.rstrip(".")
            if _HOST.fullmatch(host) and not _is_ip(host):
                return host
            return None
    return None


class CookieRules:
    """Which cookie names are analytics cookies, and the headers that expire them."""

    def __init__(self, patterns: Sequence[str], parent_domains: Sequence[str]) -> None:
        self._regex = re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)"
        )
        self.parent_domains = tuple(parent_domains)

    def matches(self, name: str) -> bool:
        return self._regex.match(name) is not None

    def expiring(
        self, cookies: Mapping[str, str], host: str | None, secure: bool
    ) -> list[tuple[bytes, bytes]]:
        """``Set-Cookie`` headers that expire every analytics cookie the request carried:
        host-only, for the host's domain, and for each configured parent domain of it."""
        names = [n for n in cookies if _TOKEN.fullmatch(n) and self.matches(n)]
        if not names:
            return []
        domains: list[str | None] = [None]
        if host is not None:
            domains.append(host)
            domains.extend(d for d in self.parent_domains if d != host and host.endswith("." + d))
        tail = "; Secure" if secure else ""
        out: list[tuple[bytes, bytes]] = []
        for name in names:
            for domain in domains:
                where = f"; Domain={domain}" if domain else ""
                value = f"{name}=; Max-Age=0; Expires={_EPOCH}; Path=/{where}{tail}"
                out.append((b"set-cookie", value.encode("latin-1")))
        return out

    def blocks(self, set_cookie: bytes) -> bool:
        """True when the app's ``Set-Cookie`` would set (not delete) an analytics cookie."""
        text = set_cookie.decode("latin-1")
        first, _, attributes = text.partition(";")
        name = first.partition("=")[0].strip()
        if not self.matches(name):
            return False
        return not _deletes(attributes)


def _deletes(attributes: str) -> bool:
    """True when the attributes expire the cookie (Max-Age wins over Expires)."""
    expires: bool | None = None
    for part in attributes.split(";"):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if key == "max-age":
            try:
                return int(value) <= 0
            except ValueError:
                return False
        if key == "expires" and expires is None:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                expires = False
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            expires = when <= datetime.now(UTC)
    return bool(expires)
