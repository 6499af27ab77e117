"""The second Content-Security-Policy: an allow-list that leaves the collectors out.

Browsers enforce every policy a response carries, so a request is allowed only when each
policy allows it: a policy privguard adds can only take away, never loosen or change the
app's own. CSP has no "everything except" form, so the added policy lists what *is*
allowed in ``script-src``, ``connect-src`` and ``img-src``: ``'self'``, the origins the
host configures, and, by default, the app's own sources for those directives with every
source that could reach a collector dropped (``*``, ``https:``, ``*.google.com``, ...).
It has no ``default-src``, so styles, fonts, frames and media are left to the app.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from .._errors import PolicyError

__all__ = [
    "DIRECTIVES",
    "build_policy",
    "check_source",
    "nonce_of",
    "parse_policies",
    "source_covers",
]

#: The directives the added policy restricts, and what each allows by default.
DIRECTIVES: Final[dict[str, tuple[str, ...]]] = {
    # Inline code and eval are the app's own policy's business: allowing them here
    # loosens nothing (the app's policy still applies) and keeps inline apps working.
    "script-src": ("'self'", "'unsafe-inline'", "'unsafe-eval'", "'wasm-unsafe-eval'", "blob:"),
    "connect-src": ("'self'",),
    "img-src": ("'self'", "data:", "blob:"),
}
# Where a directive falls back to when a policy does not name it (CSP Level 3).
_FALLBACK: Final = {
    "script-src": ("script-src", "default-src"),
    "connect-src": ("connect-src", "default-src"),
    "img-src": ("img-src", "default-src"),
}
# Sources never inherited from the app's policy: they only make sense in that policy
# (a nonce or hash there turns 'unsafe-inline' off, which is the app's choice, not ours).
_NOT_INHERITED: Final = re.compile(
    r"'(?:nonce-|sha256-|sha384-|sha512-|strict-dynamic|report-sample|none|unsafe-hashes)",
    re.I,
)
_SCHEMES_COVERING_WEB: Final = frozenset({"http:", "https:"})
_HOST_SOURCE: Final = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>\*|(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*)"
    r"(?::(?P<port>\d+|\*))?(?P<path>/[^\s;,]*)?$",
    re.I,
)
_NONCE: Final = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")


def source_covers(source: str, hosts: Iterable[str]) -> bool:
    """True when the CSP source expression could allow a request to one of ``hosts``
    (each host counts with its subdomains)."""
    src = source.strip().lower()
    if src.startswith("'"):
        return False  # keywords: 'self' is the app's own origin, handled server-side
    if src == "*" or src in _SCHEMES_COVERING_WEB:
        return True
    if src.endswith(":") and "/" not in src:
        return False  # data:, blob:, wss:, mediastream:
    m = _HOST_SOURCE.match(src)
    if m is None:
        return True  # unparseable: assume the worst
    scheme = m.group("scheme")
    if scheme is not None and scheme not in ("http", "https"):
        return False
    host = m.group("host")
    if host == "*":
        return True
    for collector in hosts:
        collector = collector.lower()
        if host.startswith("*."):
            base = host[2:]
            if (
                collector == base
                or collector.endswith("." + base)
                or base.endswith("." + collector)
            ):
                return True
        elif host == collector or host.endswith("." + collector):
            return True
    return False


def check_source(source: str, hosts: Sequence[str], what: str) -> str:
    """Validate one configured source: well formed, and no way through to a collector."""
    if not isinstance(source, str) or not source or any(c in source for c in " \t\r\n;,"):
        raise PolicyError(f"{what}: {source!r} is not one CSP source expression")
    reached = [h for h in hosts if source_covers(source, (h,))]
    if reached:
        raise PolicyError(
            f"{what}: {source!r} would let analytics collectors through "
            f"({', '.join(reached[:3])}{', ...' if len(reached) > 3 else ''}); "
            "list the exact origins you need instead"
        )
    return source


def parse_policies(values: Iterable[str]) -> list[dict[str, list[str]]]:
    """Each policy in the given header values (a value may hold several, comma-separated)."""
    policies: list[dict[str, list[str]]] = []
    for value in values:
        for policy_text in value.split(","):
            directives: dict[str, list[str]] = {}
            for part in policy_text.split(";"):
                tokens = part.split()
                if not tokens:
                    continue
                name = tokens[0].lower()
                directives.setdefault(name, tokens[1:])  # the first occurrence wins
            if directives:
                policies.append(directives)
    return policies


def _effective(policy: dict[str, list[str]], directive: str) -> list[str] | None:
    for name in _FALLBACK[directive]:
        if name in policy:
            return policy[name]
    return None


def nonce_of(policies: Sequence[dict[str, list[str]]]) -> str | None:
    """The app's script nonce, so privguard's inline script runs under the app's policy."""
    for policy in policies:
        for name in ("script-src-elem", "script-src", "default-src"):
            if name in policy:
                for token in policy[name]:
                    m = _NONCE.fullmatch(token)
                    if m is not None:
                        return m.group(1)
                break
    return None


def build_policy(
    *,
    allow: Sequence[str],
    extra: Mapping[str, Sequence[str]],
    inherited: Sequence[dict[str, list[str]]],
    hosts: Sequence[str],
    report_uri: str | None = None,
) -> str:
    """The added policy's header value."""
    parts: list[str] = []
    for directive, base in DIRECTIVES.items():
        sources: list[str] = [*base, *allow, *extra.get(directive, ())]
        for policy in inherited:
            for token in _effective(policy, directive) or ():
                if _NOT_INHERITED.match(token) or source_covers(token, hosts):
                    continue
                if any(c in token for c in '"\\'):
                    continue
                sources.append(token)
        seen: dict[str, None] = {}
        for source in sources:
            seen.setdefault(source.lower() if source.startswith("'") else source, None)
        parts.append(directive + " " + " ".join(seen))
    if report_uri:
        parts.append("report-uri " + report_uri)
    return "; ".join(parts)
