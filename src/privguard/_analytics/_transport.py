"""``AnalyticsGuardTransport``: server-side analytics calls, held to the opt-out and to C21.

An httpx transport that wraps the one that really sends. Every request is classified
(:func:`~._payloads.classify`); one that is not an analytics hit passes untouched. A hit
for an opted-out person is not sent. Every other hit is scrubbed of personal data and
sent, unless personal data is still in it, in which case it is not sent either. What is
not sent is answered ``204`` (analytics code carries on) and recorded: a log line on
``privguard.analytics`` and the ``on_block`` hook, both without personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx

from .._decisions import Reason
from .._errors import PrivguardError
from .._taxonomy import Purposes, RecipientKind
from .._telemetry import Telemetry
from ._collectors import AnalyticsVendor
from ._payloads import AnalyticsHit, AnalyticsHitKind, AnalyticsScrubRules, classify, scrub
from ._signals import current_analytics

if TYPE_CHECKING:
    from .._guard import Privguard
    from .._subject import Subject

__all__ = ["AnalyticsGuardTransport", "BlockedHit", "record_blocked"]

#: The telemetry channel of a guarded HTTP request (as the outbound guard's).
CHANNEL_HTTP: Final = "http"

logger = logging.getLogger("privguard.analytics")

#: The header on the ``204`` a blocked hit gets instead of the collector's reply.
BLOCKED_HEADER: Final = "x-privguard-analytics"


@dataclass(frozen=True, slots=True)
class BlockedHit:
    """A hit that was not sent, and why (``opted_out:gpc``, ``personal_data:email``, ...).

    Names the vendor, the kind and the collector host, never a value of the payload.
    """

    vendor: AnalyticsVendor
    kind: AnalyticsHitKind
    host: str
    reason: str


class AnalyticsGuardTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Wrap the transport of the client that sends server-side analytics.

    >>> client = httpx.AsyncClient(
    ...     transport=AnalyticsGuardTransport(httpx.AsyncHTTPTransport(), guard=guard)
    ... )

    Opted out means: the request's :func:`~privguard.current_analytics` status says so
    (the middleware set it), or, when ``subject_of`` maps a hit to a
    :class:`~privguard.Subject` (for hits sent outside a request, or about someone
    else), the guard's check of the ``analytics`` purpose for that subject is not
    allowed. ``rules`` says how payloads are scrubbed; by default user ids are
    pseudonymised with the guard's keyring (dropped without one) and IP addresses
    dropped. ``telemetry``: where blocked hits are reported (the guard's by default).
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | httpx.AsyncBaseTransport,
        *,
        guard: Privguard | None = None,
        rules: AnalyticsScrubRules | None = None,
        subject_of: Callable[[AnalyticsHit], Subject | None] | None = None,
        on_block: Callable[[BlockedHit], None] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.inner = inner
        self.guard = guard
        if telemetry is None:
            telemetry = guard.telemetry if guard is not None else Telemetry()
        self.telemetry = telemetry
        if rules is None:
            pseudonymizer = None
            if guard is not None and guard.keyring is not None:
                from .._crypto import Pseudonymizer

                pseudonymizer = Pseudonymizer(guard.keyring)
            rules = AnalyticsScrubRules(pseudonymizer=pseudonymizer)
        self.rules = rules
        self.subject_of = subject_of
        self.on_block = on_block

    # -- deciding -------------------------------------------------------------------------------
    def _from_context(self) -> str | None:
        status = current_analytics()
        if status is not None and status.opted_out:
            signal = status.signal.value if status.signal is not None else "unknown"
            return f"opted_out:{signal}"
        return None

    @staticmethod
    def _from_decision(reason: Reason, allowed: bool) -> str | None:
        if allowed:
            return None
        return "opted_out:stored" if reason is Reason.OBJECTED else "opted_out:policy"

    def _subject(self, hit: AnalyticsHit) -> Subject | None:
        if self.subject_of is None or self.guard is None:
            return None
        return self.subject_of(hit)

    def _opted_out(self, hit: AnalyticsHit) -> str | None:
        reason = self._from_context()
        if reason is not None:
            return reason
        subject = self._subject(hit)
        if subject is None or self.guard is None:
            return None
        try:
            decision = self.guard.check(subject, Purposes.ANALYTICS)
        except Exception as exc:
            return self._unavailable(exc)
        return self._from_decision(decision.reason, decision.allowed)

    async def _aopted_out(self, hit: AnalyticsHit) -> str | None:
        reason = self._from_context()
        if reason is not None:
            return reason
        subject = self._subject(hit)
        if subject is None or self.guard is None:
            return None
        try:
            decision = await self.guard.acheck(subject, Purposes.ANALYTICS)
        except Exception as exc:
            return self._unavailable(exc)
        return self._from_decision(decision.reason, decision.allowed)

    @staticmethod
    def _unavailable(exc: Exception) -> str:
        what = str(exc) if isinstance(exc, PrivguardError) else type(exc).__name__
        logger.error("privguard: analytics preference unreadable, hit not sent: %s", what)
        return "opted_out:unavailable"

    def _prepare(self, hit: AnalyticsHit, opted_out: str | None) -> httpx.Request | httpx.Response:
        if opted_out is not None:
            return self._blocked(hit, opted_out)
        result = scrub(hit, self.rules)
        if result.request is None:
            return self._blocked(hit, result.blocked or "blocked")
        return result.request

    def _blocked(self, hit: AnalyticsHit, reason: str) -> httpx.Response:
        record = BlockedHit(hit.vendor, hit.kind, hit.host, reason)
        level = logging.INFO if reason.startswith("opted_out:") else logging.WARNING
        logger.log(
            level,
            "privguard: %s hit (%s) to %s not sent: %s",
            record.vendor.value,
            record.kind.value,
            record.host,
            record.reason,
        )
        record_blocked(self.telemetry, record)
        if self.on_block is not None:
            self.on_block(record)
        return httpx.Response(204, headers={BLOCKED_HEADER: "blocked"}, request=hit.request)

    # -- httpx ---------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.inner
        if not isinstance(inner, httpx.BaseTransport):
            raise TypeError("the inner transport is async: use an httpx.AsyncClient")
        request.read()
        hit = classify(request)
        if hit is None:
            return inner.handle_request(request)
        prepared = self._prepare(hit, self._opted_out(hit))
        if isinstance(prepared, httpx.Response):
            return prepared
        return inner.handle_request(prepared)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.inner
        if not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError("the inner transport is sync: use an httpx.Client")
        await request.aread()
        hit = classify(request)
        if hit is None:
            return await inner.handle_async_request(request)
        prepared = self._prepare(hit, await self._aopted_out(hit))
        if isinstance(prepared, httpx.Response):
            return prepared
        return await inner.handle_async_request(prepared)

    def close(self) -> None:
        if isinstance(self.inner, httpx.BaseTransport):
            self.inner.close()

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            await self.inner.aclose()

    def __repr__(self) -> str:
        return f"AnalyticsGuardTransport(inner={type(self.inner).__name__})"


def record_blocked(telemetry: Telemetry, record: BlockedHit) -> None:
    """Report a hit not sent, as the outbound guard reports a blocked disclosure."""
    with telemetry.disclosure(
        channel=CHANNEL_HTTP,
        recipient=None,
        recipient_kind=RecipientKind.ANALYTICS_PROVIDER.value,
        purpose=Purposes.ANALYTICS,
    ) as handle:
        handle.blocked(record.reason, host=record.host)
