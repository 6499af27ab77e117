"""Opt-out signals: privguard's cookie, Global Privacy Control, Do Not Track, the stored
preference of a signed-in subject, and jurisdictions where analytics need an opt-in.

The outcome of a request is an :class:`AnalyticsStatus` in a ``ContextVar``
(:func:`current_analytics`), set by the middleware and reset with its token.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import cookie_parser

from .._context import current_context
from .._decisions import Reason
from .._errors import PrivguardError
from .._subject import Subject
from .._taxonomy import Purposes
from ._config import AnalyticsConfig

if TYPE_CHECKING:
    from .._guard import Privguard

__all__ = [
    "COOKIE_IN",
    "COOKIE_OUT",
    "AnalyticsStatus",
    "OptOutSignal",
    "bound_analytics",
    "cookies_of",
    "current_analytics",
    "header_flag",
    "resolve_status",
    "resolve_subject",
]

logger = logging.getLogger("privguard.analytics")

#: Values of privguard's analytics cookie.
COOKIE_OUT: Final = "out"
COOKIE_IN: Final = "in"


class OptOutSignal(StrEnum):
    """What said "no analytics", in the order they are consulted."""

    #: privguard's opt-out cookie (set by the opt-out endpoint).
    COOKIE = "cookie"
    #: ``Sec-GPC: 1`` (Global Privacy Control).
    GPC = "gpc"
    #: An objection recorded in the consent ledger for the signed-in subject.
    STORED = "stored"
    #: The policy does not allow analytics for this subject (e.g. consent missing).
    POLICY = "policy"
    #: ``DNT: 1``, when configured to count.
    DNT = "dnt"
    #: A jurisdiction where analytics need an opt-in, and no opt-in was given.
    JURISDICTION = "jurisdiction"
    #: The stored preference could not be read: no analytics (fail closed).
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class AnalyticsStatus:
    """Whether this request's person is opted out of analytics, and why.

    ``signal`` is the signal that decided (the first in :class:`OptOutSignal` order),
    ``signals`` every one that said so among those consulted (once a header or cookie
    has decided, the consent ledger is not read), ``opted_in`` whether the person
    explicitly opted in (cookie or a recorded grant). Holds no personal data.

    >>> status = privguard.current_analytics()
    >>> status.opted_out, status.signal
    (True, <OptOutSignal.GPC: 'gpc'>)
    """

    opted_out: bool
    signal: OptOutSignal | None = None
    signals: tuple[OptOutSignal, ...] = ()
    opted_in: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "opted_out": self.opted_out,
            "signal": self.signal.value if self.signal is not None else None,
            "signals": [s.value for s in self.signals],
            "opted_in": self.opted_in,
        }


NOT_OPTED_OUT: Final = AnalyticsStatus(False)

_STATUS: Final[ContextVar[AnalyticsStatus | None]] = ContextVar(
    "privguard_analytics_status", default=None
)


def current_analytics() -> AnalyticsStatus | None:
    """The analytics status of the running request, or ``None`` outside one."""
    return _STATUS.get()


def set_status(status: AnalyticsStatus | None) -> Token[AnalyticsStatus | None]:
    return _STATUS.set(status)


def reset_status(token: Token[AnalyticsStatus | None]) -> None:
    _STATUS.reset(token)


@contextmanager
def bound_analytics(status: AnalyticsStatus | bool) -> Iterator[AnalyticsStatus]:
    """Run a block (a job, a test) with an analytics status, as a request would.

    >>> with bound_analytics(True):            # opted out
    ...     client.post("https://www.google-analytics.com/mp/collect", ...)  # blocked
    """
    if isinstance(status, bool):
        out = (OptOutSignal.STORED,)
        status = AnalyticsStatus(True, out[0], out) if status else NOT_OPTED_OUT
    token = _STATUS.set(status)
    try:
        yield status
    finally:
        _STATUS.reset(token)


# -- reading the request ----------------------------------------------------------------------
def header_flag(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bool:
    """True when a header ``name`` says exactly ``1`` (GPC and DNT semantics).

    Any other value is no signal. Repeated fields count (one ``1`` is enough), also when
    a proxy folded them into one comma-separated value. Header names are compared
    case-insensitively; surrounding whitespace is not part of a field value.
    """
    for key, value in headers:
        if key.lower() == name:
            for item in value.split(b","):
                if item.strip(b" \t") == b"1":
                    return True
    return False


def cookies_of(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's cookies (every ``Cookie`` field, as HTTP/2 may split them)."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == b"cookie"]
    if not values:
        return {}
    return cookie_parser("; ".join(values))


async def resolve_subject(config: AnalyticsConfig, scope: Mapping[str, Any]) -> Subject | None:
    """The signed-in subject: the configured resolver, else the privacy context's."""
    resolver = config.subject_resolver
    if resolver is None:
        ctx = current_context()
        return ctx.subject if ctx is not None else None
    found: Any = resolver(scope)
    if inspect.isawaitable(found):
        found = await found
    if found is not None and not isinstance(found, Subject):
        raise TypeError("subject_resolver must return a privguard Subject or None")
    return found


def _jurisdiction(
    config: AnalyticsConfig, scope: Mapping[str, Any], subject: Subject | None
) -> str:
    if config.jurisdiction_resolver is not None:
        code = config.jurisdiction_resolver(scope)
        return code.strip().upper() if isinstance(code, str) else ""
    return subject.jurisdiction if subject is not None else ""


def _in_opt_in_jurisdiction(config: AnalyticsConfig, guard: Privguard | None, code: str) -> bool:
    wanted = config.opt_in_jurisdictions
    if not wanted:
        return False
    if not code or len(code) > 8:
        return config.unknown_jurisdiction_opt_in
    if guard is not None:
        keys: Iterable[str] = guard.policy.taxonomy.jurisdiction_keys(code)
    else:
        from .._taxonomy import Taxonomy

        keys = Taxonomy.default().jurisdiction_keys(code)
    return any(k in wanted for k in keys)


async def resolve_status(
    scope: Mapping[str, Any],
    config: AnalyticsConfig,
    guard: Privguard | None,
    *,
    subject: Subject | None = None,
    full: bool = False,
) -> AnalyticsStatus:
    """Read every signal of one request. ``full``: read the ledger even when a header or
    cookie already decided (for the status endpoint)."""
    headers = scope.get("headers") or ()
    signals: list[OptOutSignal] = []
    cookie = cookies_of(headers).get(config.cookie_name)
    opted_in = cookie == COOKIE_IN
    if cookie == COOKIE_OUT:
        signals.append(OptOutSignal.COOKIE)
    if config.honor_gpc and header_flag(headers, b"sec-gpc"):
        signals.append(OptOutSignal.GPC)
    dnt = config.honor_dnt and header_flag(headers, b"dnt")
    jurisdiction_applies = bool(config.opt_in_jurisdictions)
    if (
        subject is not None
        and guard is not None
        and config.stored_preference
        and (full or not (signals or dnt))
    ):
        try:
            decision = await guard.acheck(subject, Purposes.ANALYTICS)
        except Exception as exc:  # the store is down: no analytics rather than a guess
            what = str(exc) if isinstance(exc, PrivguardError) else type(exc).__name__
            logger.error("privguard: analytics preference unreadable, opting out: %s", what)
            signals.append(OptOutSignal.UNAVAILABLE)
        else:
            if decision.reason is Reason.OBJECTED:
                signals.append(OptOutSignal.STORED)
                opted_in = False
            elif not decision.allowed:
                signals.append(OptOutSignal.POLICY)
            elif decision.consent_id is not None:
                opted_in = True
    if dnt:
        signals.append(OptOutSignal.DNT)
    if jurisdiction_applies and not opted_in:
        code = _jurisdiction(config, scope, subject)
        if _in_opt_in_jurisdiction(config, guard, code):
            signals.append(OptOutSignal.JURISDICTION)
    if not signals:
        return AnalyticsStatus(False, None, (), opted_in)
    order = list(OptOutSignal)
    ordered = tuple(sorted(signals, key=order.index))
    return AnalyticsStatus(True, ordered[0], ordered, opted_in)
