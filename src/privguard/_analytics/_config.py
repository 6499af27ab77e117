"""``AnalyticsConfig``: what the analytics opt-out does, checked once when built."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from .._errors import PolicyError
from ._collectors import COLLECTOR_HOSTS, DEFAULT_ANALYTICS_COOKIES, LOADERS
from ._csp import check_source

if TYPE_CHECKING:
    from .._subject import Subject

__all__ = [
    "GPC_LAST_UPDATE",
    "AnalyticsConfig",
    "CspMode",
    "JurisdictionResolver",
    "SubjectResolver",
]

ASGIScope = Mapping[str, Any]
SubjectResolver = Callable[[ASGIScope], "Subject | Awaitable[Subject | None] | None"]
JurisdictionResolver = Callable[[ASGIScope], "str | None"]

#: When privguard's GPC support last changed: the default ``lastUpdate`` of gpc.json.
GPC_LAST_UPDATE: Final = date(2026, 11, 26)


class CspMode(StrEnum):
    """How the added Content-Security-Policy is sent."""

    #: ``Content-Security-Policy``: the browser blocks requests to collectors.
    ENFORCE = "enforce"
    #: ``Content-Security-Policy-Report-Only``: reports, blocks nothing (for a rollout).
    REPORT_ONLY = "report_only"
    #: No added policy.
    OFF = "off"


_MEASUREMENT_ID: Final = re.compile(r"G-[A-Z0-9]{4,20}|UA-\d{4,10}-\d{1,4}")
_MIXPANEL_TOKEN: Final = re.compile(r"[A-Za-z0-9]{8,64}")
_TOKEN_CHARS: Final = re.compile(r"[!#$%&'+\-.^_`|~0-9A-Za-z]+")
_COOKIE_PATTERN: Final = re.compile(r"[!#$%&'+\-.^_`|~0-9A-Za-z*]+")
_DOMAIN: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_ORIGIN: Final = re.compile(r"https?://[a-z0-9.-]+(?::\d{1,5})?")
_JURISDICTION: Final = re.compile(r"[A-Z0-9_]+(?:-[A-Z0-9]{1,3})?")


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or value is None:
        raise PolicyError(f"{what} must be a collection of strings, not one string")
    if not isinstance(value, Iterable):
        raise PolicyError(f"{what} must be a collection of strings")
    items = tuple(value)
    if not all(isinstance(v, str) for v in items):
        raise PolicyError(f"{what} must hold strings")
    return items


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """What the analytics opt-out honours and does. Immutable; checked when built.

    >>> AnalyticsConfig(
    ...     measurement_ids=["G-ABC123XYZ"],
    ...     opt_in_jurisdictions={"EEA", "UK"},
    ...     jurisdiction_resolver=country_from_cdn_header,   # scope -> "DE" | None
    ...     csp_allow=["https://cdn.shop.example"],
    ... )

    Signals: ``honor_gpc`` (``Sec-GPC: 1`` opts out of analytics; default on),
    ``honor_dnt`` (``DNT: 1``; default off), the stored preference of a signed-in
    subject (``stored_preference``: an objection in the consent ledger), and
    ``opt_in_jurisdictions``: where analytics need an opt-in first (jurisdiction codes or
    group names such as ``"EEA"``; empty by default, as the policy makes analytics an
    opt-out). With a non-empty set, a person whose jurisdiction is unknown counts as in
    one (``unknown_jurisdiction_opt_in``), the strictest reading.

    Everything else is described in ``docs/analytics.md``.
    """

    measurement_ids: tuple[str, ...] = ()
    mixpanel_tokens: tuple[str, ...] = ()
    # signals
    honor_gpc: bool = True
    honor_dnt: bool = False
    stored_preference: bool = True
    opt_in_jurisdictions: frozenset[str] = frozenset()
    unknown_jurisdiction_opt_in: bool = True
    jurisdiction_resolver: JurisdictionResolver | None = None
    subject_resolver: SubjectResolver | None = None
    # privguard's own opt-out cookie
    cookie_name: str = "privguard_analytics"
    cookie_max_age: int = 365 * 24 * 3600
    cookie_secure: bool = True
    cookie_domain: str | None = None
    # the analytics cookies expired for an opted-out person
    analytics_cookies: tuple[str, ...] = DEFAULT_ANALYTICS_COOKIES
    cookie_domains: tuple[str, ...] = ()
    # HTML
    inject_head_script: bool = True
    remove_loaders: frozenset[str] = frozenset(LOADERS)
    extra_loaders: tuple[str, ...] = ()
    max_head_scan: int = 64 * 1024
    max_script: int = 512 * 1024
    # the added Content-Security-Policy
    csp: CspMode = CspMode.ENFORCE
    csp_allow: tuple[str, ...] = ()
    csp_script_src: tuple[str, ...] = ()
    csp_connect_src: tuple[str, ...] = ()
    csp_img_src: tuple[str, ...] = ()
    csp_inherit: bool = True
    csp_report_uri: str | None = None
    first_party_collectors: tuple[str, ...] = ()
    # first-party collector paths (proxies) answered without reaching the app
    block_collector_paths: bool = True
    collector_paths: tuple[str, ...] = ()
    # endpoints
    csrf_secret: bytes | None = field(default=None, repr=False)
    trusted_origins: tuple[str, ...] = ()
    gpc_last_update: date = GPC_LAST_UPDATE
    # derived
    collector_hosts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    csrf_key: bytes = field(init=False, repr=False, compare=False)
    loader_patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        ids = _strings(self.measurement_ids, "measurement_ids")
        for mid in ids:
            if not _MEASUREMENT_ID.fullmatch(mid):
                raise PolicyError(f"{mid!r} is not a Google Analytics id (G-… or UA-…-…)")
        set_(self, "measurement_ids", tuple(dict.fromkeys(ids)))
        tokens = _strings(self.mixpanel_tokens, "mixpanel_tokens")
        for token in tokens:
            if not _MIXPANEL_TOKEN.fullmatch(token):
                raise PolicyError("a Mixpanel project token is 8 to 64 letters and digits")
        set_(self, "mixpanel_tokens", tokens)
        for name in (
            "honor_gpc",
            "honor_dnt",
            "stored_preference",
            "unknown_jurisdiction_opt_in",
            "cookie_secure",
            "inject_head_script",
            "csp_inherit",
            "block_collector_paths",
        ):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name} must be True or False")
        jurisdictions = frozenset(
            j.upper() for j in _strings(self.opt_in_jurisdictions, "opt_in_jurisdictions")
        )
        for j in jurisdictions:
            if not _JURISDICTION.fullmatch(j):
                raise PolicyError(f"{j!r} is not a jurisdiction code or group name")
        set_(self, "opt_in_jurisdictions", jurisdictions)
        for name in ("jurisdiction_resolver", "subject_resolver"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise PolicyError(f"{name} must be a callable taking the ASGI scope")
        if not _TOKEN_CHARS.fullmatch(self.cookie_name or ""):
            raise PolicyError("cookie_name must be a cookie name (letters, digits, -_.)")
        for name in ("cookie_max_age", "max_head_scan", "max_script"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PolicyError(f"{name} must be a positive integer")
        if self.cookie_domain is not None:
            set_(self, "cookie_domain", self._domain(self.cookie_domain, "cookie_domain"))
        set_(
            self,
            "cookie_domains",
            tuple(
                self._domain(d, "cookie_domains")
                for d in _strings(self.cookie_domains, "cookie_domains")
            ),
        )
        patterns = _strings(self.analytics_cookies, "analytics_cookies")
        for pattern in patterns:
            if not _COOKIE_PATTERN.fullmatch(pattern) or pattern.strip("*") == "":
                raise PolicyError(f"analytics cookie pattern {pattern!r} is not a cookie name")
        set_(self, "analytics_cookies", patterns)
        loaders = frozenset(_strings(self.remove_loaders, "remove_loaders"))
        unknown = loaders - LOADERS.keys()
        if unknown:
            raise PolicyError(
                f"unknown loaders {sorted(unknown)}; known: {', '.join(sorted(LOADERS))}"
            )
        set_(self, "remove_loaders", loaders)
        compiled = [LOADERS[name] for name in sorted(loaders)]
        for pattern in _strings(self.extra_loaders, "extra_loaders"):
            try:
                compiled.append(re.compile(pattern, re.I))
            except re.error as exc:
                raise PolicyError(f"extra_loaders: bad pattern ({exc})") from None
        set_(self, "loader_patterns", tuple(compiled))
        try:
            set_(self, "csp", CspMode(self.csp))
        except ValueError:
            raise PolicyError(f"csp must be one of {[m.value for m in CspMode]}") from None
        hosts = []
        for host in _strings(self.first_party_collectors, "first_party_collectors"):
            host = host.lower().rstrip(".")
            if not _HOST.fullmatch(host):
                raise PolicyError(f"first_party_collectors: {host!r} is not a host name")
            hosts.append(host)
        set_(self, "first_party_collectors", tuple(hosts))
        set_(self, "collector_hosts", (*COLLECTOR_HOSTS, *hosts))
        for name in ("csp_allow", "csp_script_src", "csp_connect_src", "csp_img_src"):
            sources = _strings(getattr(self, name), name)
            for source in sources:
                check_source(source, self.collector_hosts, name)
            set_(self, name, sources)
        if self.csp_report_uri is not None and (
            not isinstance(self.csp_report_uri, str)
            or not self.csp_report_uri
            or any(c in self.csp_report_uri for c in " \t\r\n;,")
        ):
            raise PolicyError("csp_report_uri must be one URI")
        paths = _strings(self.collector_paths, "collector_paths")
        for path in paths:
            if not path.startswith("/"):
                raise PolicyError(f"collector path {path!r} must start with '/'")
        set_(self, "collector_paths", paths)
        origins = tuple(
            o.lower().rstrip("/") for o in _strings(self.trusted_origins, "trusted_origins")
        )
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise PolicyError(f"trusted origin {origin!r} must be scheme://host[:port]")
        set_(self, "trusted_origins", origins)
        if self.csrf_secret is not None and (
            not isinstance(self.csrf_secret, bytes) or len(self.csrf_secret) < 32
        ):
            raise PolicyError("csrf_secret must be at least 32 random bytes")
        # Without a configured secret, one per process: tokens do not survive a restart
        # and are not shared between workers. Configure csrf_secret in production.
        set_(self, "csrf_key", self.csrf_secret or secrets.token_bytes(32))
        if not isinstance(self.gpc_last_update, date):
            raise PolicyError("gpc_last_update must be a datetime.date")

    @staticmethod
    def _domain(value: str, what: str) -> str:
        domain = value.lower().lstrip(".") if isinstance(value, str) else ""
        if not _DOMAIN.fullmatch(domain):
            raise PolicyError(f"{what}: {value!r} is not a domain name")
        return domain

    @property
    def honored_headers(self) -> tuple[str, ...]:
        """The request headers the outcome depends on (for ``Vary``)."""
        names = ["Cookie"]
        if self.honor_gpc:
            names.append("Sec-GPC")
        if self.honor_dnt:
            names.append("DNT")
        return tuple(names)
