"""OpenTelemetry: the only module that imports it. API only, never the SDK.

A disclosure call (one :meth:`Privguard.disclose`, one guarded HTTP request) is one span,
one counter increment per recipient kind and purpose, and one log record through the OTel
logs API where it is available (``opentelemetry._logs`` is experimental, so its import is
guarded). Attribute names are the constants below and nothing else; no attribute ever
holds a personal value: counts, categories, purposes, reason codes, recipient names and
kinds, tenant ids and policy versions only. ``docs/telemetry.md`` lists them.

With no SDK configured every call is a no-op: attributes are built only when the span
is recording.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, StatusCode

try:  # the logs API is experimental: privguard works without it
    from opentelemetry import _logs
    from opentelemetry._logs import SeverityNumber
except ImportError:  # pragma: no cover - depends on the installed API version
    _logs = None  # type: ignore[assignment]
    SeverityNumber = None  # type: ignore[assignment,misc]

__all__ = [
    "ATTR_BASIS",
    "ATTR_BATCH_ID",
    "ATTR_BLOCK_REASON",
    "ATTR_CATEGORIES",
    "ATTR_CHANNEL",
    "ATTR_CONTROLLER",
    "ATTR_DROPPED_COUNT",
    "ATTR_DROPPED_REASON",
    "ATTR_DROPPED_REASONS",
    "ATTR_EVENT_NAME",
    "ATTR_OUTCOME",
    "ATTR_POLICY_VERSION",
    "ATTR_PURPOSE",
    "ATTR_RECIPIENT_KIND",
    "ATTR_RECIPIENT_NAME",
    "ATTR_SERVER_ADDRESS",
    "ATTR_SUBJECT_COUNT",
    "LOG_EVENT_DISCLOSURE",
    "METRIC_BLOCKED",
    "METRIC_DISCLOSURES",
    "METRIC_DROPPED",
    "SPAN_DISCLOSE",
    "DisclosureTelemetry",
    "Telemetry",
]

# -- names: the whole vocabulary privguard puts into telemetry -------------------------------
SPAN_DISCLOSE: Final = "privguard.disclose"
LOG_EVENT_DISCLOSURE: Final = "privguard.disclosure"

ATTR_RECIPIENT_NAME: Final = "privguard.recipient.name"
ATTR_RECIPIENT_KIND: Final = "privguard.recipient.kind"
ATTR_PURPOSE: Final = "privguard.purpose"
ATTR_CATEGORIES: Final = "privguard.categories"
ATTR_BASIS: Final = "privguard.basis"
ATTR_SUBJECT_COUNT: Final = "privguard.subject_count"
ATTR_DROPPED_COUNT: Final = "privguard.dropped_count"
ATTR_DROPPED_REASONS: Final = "privguard.dropped_reasons"
ATTR_DROPPED_REASON: Final = "privguard.dropped_reason"
ATTR_CHANNEL: Final = "privguard.channel"
ATTR_OUTCOME: Final = "privguard.outcome"
ATTR_BLOCK_REASON: Final = "privguard.block_reason"
ATTR_POLICY_VERSION: Final = "privguard.policy_version"
ATTR_CONTROLLER: Final = "privguard.controller"
ATTR_BATCH_ID: Final = "privguard.batch_id"
ATTR_SERVER_ADDRESS: Final = "server.address"  # OTel semantic convention
ATTR_EVENT_NAME: Final = "event.name"  # OTel semantic convention, on log records

METRIC_DISCLOSURES: Final = "privguard.disclosures"
METRIC_DROPPED: Final = "privguard.disclosures.dropped"
METRIC_BLOCKED: Final = "privguard.disclosures.blocked"

OUTCOME_DISCLOSED: Final = "disclosed"
OUTCOME_NOTHING: Final = "nothing_disclosed"
OUTCOME_BLOCKED: Final = "blocked"

_SCOPE: Final = "privguard"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("privguard")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"


class Telemetry:
    """Where privguard's spans, metrics and log records go.

    By default the global providers (whatever the host configured, or nothing: no-ops).
    Tests and hosts with several pipelines pass providers explicitly:

    >>> Telemetry(tracer_provider=tp, meter_provider=mp, logger_provider=lp)  # doctest: +SKIP

    ``Telemetry.disabled()`` emits nothing at all.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        enabled: bool = True,
    ) -> None:
        version = _version()
        self.enabled = enabled
        self._tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self._disclosed = meter.create_counter(
            METRIC_DISCLOSURES,
            unit="{subject}",
            description="Subjects whose data was disclosed, by recipient kind and purpose",
        )
        self._dropped = meter.create_counter(
            METRIC_DROPPED,
            unit="{subject}",
            description="Subjects left out of a disclosure, by recipient kind, purpose, reason",
        )
        self._blocked = meter.create_counter(
            METRIC_BLOCKED,
            unit="{call}",
            description="Disclosures refused as a whole (nothing sent), by kind and reason",
        )
        self._logger: Any = None
        if _logs is not None:
            self._logger = _logs.get_logger(_SCOPE, version, logger_provider=logger_provider)

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls(enabled=False)

    def _log_enabled(self, warn: bool) -> bool:
        """Whether a log record would go anywhere: without a logs SDK, none is built."""
        logger = self._logger
        if logger is None or SeverityNumber is None:
            return False
        enabled = getattr(logger, "enabled", None)  # the API has it since 1.37
        if enabled is None:
            return True
        severity = SeverityNumber.WARN if warn else SeverityNumber.INFO
        try:
            return bool(enabled(severity_number=severity))
        except TypeError:  # pragma: no cover - an older signature
            return True

    @contextmanager
    def disclosure(
        self,
        *,
        channel: str,
        recipient: str | None,
        recipient_kind: str | None,
        purpose: str | None,
    ) -> Iterator[DisclosureTelemetry]:
        """One span around one disclosure call. An exception marks the span as an error."""
        if not self.enabled:
            yield DisclosureTelemetry(self, None, channel, recipient, recipient_kind, purpose)
            return
        # Exceptions are neither recorded nor described by the SDK: a host's exception
        # message could hold a personal value. The span gets the exception's type only.
        with self._tracer.start_as_current_span(
            SPAN_DISCLOSE,
            kind=trace.SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle = DisclosureTelemetry(self, span, channel, recipient, recipient_kind, purpose)
            if span.is_recording():
                span.set_attributes(handle.base_attributes())
            try:
                yield handle
            except BaseException as exc:
                if span.is_recording() and not handle.blocked_reason:
                    # The type only: an exception message could one day carry a value.
                    span.set_status(StatusCode.ERROR, type(exc).__name__)
                raise


class DisclosureTelemetry:
    """The telemetry of one disclosure call: its span ids, and what to report at its end."""

    __slots__ = (
        "_span",
        "_telemetry",
        "blocked_reason",
        "channel",
        "purpose",
        "recipient",
        "recipient_kind",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        span: Span | None,
        channel: str,
        recipient: str | None,
        recipient_kind: str | None,
        purpose: str | None,
    ) -> None:
        self._telemetry = telemetry
        self._span = span
        self.channel = channel
        self.recipient = recipient
        self.recipient_kind = recipient_kind
        self.purpose = purpose
        self.blocked_reason: str | None = None

    def base_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {ATTR_CHANNEL: self.channel}
        if self.recipient is not None:
            attrs[ATTR_RECIPIENT_NAME] = self.recipient
        if self.recipient_kind is not None:
            attrs[ATTR_RECIPIENT_KIND] = self.recipient_kind
        if self.purpose is not None:
            attrs[ATTR_PURPOSE] = self.purpose
        return attrs

    def set_recipient(self, name: str, kind: str) -> None:
        """The recipient, once known (the outbound guard resolves it after the span opens)."""
        self.recipient, self.recipient_kind = name, kind
        span = self._span
        if span is not None and span.is_recording():
            span.set_attributes({ATTR_RECIPIENT_NAME: name, ATTR_RECIPIENT_KIND: kind})

    def set_purpose(self, purpose: str) -> None:
        self.purpose = purpose
        span = self._span
        if span is not None and span.is_recording():
            span.set_attribute(ATTR_PURPOSE, purpose)

    def ids(self) -> tuple[str | None, str | None]:
        """Trace and span id (hex) to write into disclosure records; ``None`` if invalid.

        The span of this call when an SDK records it; otherwise whatever span context
        is current (a propagated one, say).
        """
        span = self._span if self._span is not None else trace.get_current_span()
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return None, None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    def disclosed(
        self,
        *,
        subjects: int,
        dropped: Mapping[str, int],
        categories: Iterable[str],
        bases: Iterable[str],
        policy_version: str,
        controller: str | None,
        batch_id: str | None,
    ) -> None:
        """Report a committed disclosure call (its records are written)."""
        telemetry = self._telemetry
        if not telemetry.enabled:
            return
        dropped_count = sum(dropped.values())
        span = self._span
        recording = span is not None and span.is_recording()
        logging = telemetry._log_enabled(warn=False)
        if recording or logging:
            attrs = self.base_attributes()
            attrs[ATTR_OUTCOME] = OUTCOME_DISCLOSED if subjects else OUTCOME_NOTHING
            attrs[ATTR_SUBJECT_COUNT] = subjects
            attrs[ATTR_DROPPED_COUNT] = dropped_count
            attrs[ATTR_DROPPED_REASONS] = sorted(dropped)
            attrs[ATTR_CATEGORIES] = sorted(set(categories))
            attrs[ATTR_BASIS] = sorted(set(bases))
            attrs[ATTR_POLICY_VERSION] = policy_version
            if controller is not None:
                attrs[ATTR_CONTROLLER] = controller
            if batch_id is not None:
                attrs[ATTR_BATCH_ID] = batch_id
            if recording:
                assert span is not None
                span.set_attributes(attrs)
            if logging:
                self._log(attrs, warn=False)
        kind = self.recipient_kind or ""
        purpose = self.purpose or ""
        if subjects:
            telemetry._disclosed.add(subjects, {ATTR_RECIPIENT_KIND: kind, ATTR_PURPOSE: purpose})
        for reason, count in dropped.items():
            telemetry._dropped.add(
                count,
                {ATTR_RECIPIENT_KIND: kind, ATTR_PURPOSE: purpose, ATTR_DROPPED_REASON: reason},
            )

    def blocked(self, reason: str, *, host: str | None = None) -> None:
        """Report a call refused as a whole: nothing was sent and nothing recorded."""
        self.blocked_reason = reason
        telemetry = self._telemetry
        if not telemetry.enabled:
            return
        span = self._span
        recording = span is not None and span.is_recording()
        logging = telemetry._log_enabled(warn=True)
        if recording or logging:
            attrs = self.base_attributes()
            attrs[ATTR_OUTCOME] = OUTCOME_BLOCKED
            attrs[ATTR_BLOCK_REASON] = reason
            if host is not None:
                attrs[ATTR_SERVER_ADDRESS] = host
            if recording:
                assert span is not None
                span.set_attributes(attrs)
                span.set_status(StatusCode.ERROR, f"disclosure blocked: {reason}")
            if logging:
                self._log(attrs, warn=True)
        telemetry._blocked.add(
            1, {ATTR_RECIPIENT_KIND: self.recipient_kind or "", ATTR_BLOCK_REASON: reason}
        )

    def _log(self, attrs: dict[str, Any], *, warn: bool) -> None:
        logger = self._telemetry._logger
        if logger is None or SeverityNumber is None:
            return
        severity = SeverityNumber.WARN if warn else SeverityNumber.INFO
        body = "disclosure blocked" if warn else "disclosure recorded"
        record = _logs.LogRecord(
            timestamp=time.time_ns(),
            severity_number=severity,
            severity_text=severity.name,
            body=body,
            attributes={**attrs, ATTR_EVENT_NAME: LOG_EVENT_DISCLOSURE},
        )
        logger.emit(record)
