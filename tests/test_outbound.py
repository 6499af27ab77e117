"""The outbound guard: what a guarded httpx client sends, records, and refuses to send.

``respx`` stands in for the remote APIs. Tests assert the exact body the mock received,
and ``route.called is False`` when a request was blocked.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from privguard import (
    AsyncGuardedTransport,
    Basis,
    Categories,
    ConsentMethod,
    DisclosureBlocked,
    Evidence,
    GuardedTransport,
    PolicyError,
    Privguard,
    Purposes,
    Recipient,
    RecipientKind,
    Scope,
    Store,
    Subject,
    Telemetry,
    bound_privacy_context,
)

C = Categories
P = Purposes
R = RecipientKind
TENANT = "acme-events"

STRIPE = Recipient(
    "stripe",
    R.PAYMENT_PROCESSOR,
    hosts=["api.stripe.com"],
    purposes=[P.PAYMENT, P.FRAUD],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL, C.ADDRESS],
    agreement="DPA-stripe-2023",
)
LEDGERLY = Recipient(
    "ledgerly",
    R.PROCESSOR,
    hosts=["api.ledgerly.example/v2"],
    purposes=[P.BILLING],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL],
)
MAILER = Recipient(
    "mailer",
    R.PROCESSOR,
    hosts=["*.mailer.example"],
    purposes=[P.SERVICE],
    categories=[C.NAME, C.EMAIL],
)
LINKEDIN = Recipient(
    "linkedin",
    R.SOCIAL_PROVIDER,
    hosts=["api.linkedin.example"],
    purposes=[P.SOCIAL_SHARING],
    categories=[C.NAME, C.EMAIL, C.SOCIAL_ACCOUNT_ID],
)
POLICE = Recipient(
    "bka",
    R.AUTHORITY,
    hosts=["requests.bka.example"],
    purposes=[P.LEGAL_DISCLOSURE],
    categories=[C.USER],
)
PARTNER = Recipient(
    "eventpartner",
    R.PARTNER,
    hosts=["api.eventpartner.example"],
    purposes=[P.PARTNER_SHARING],
    categories=[C.NAME, C.CONTACT],
)
MEGACORP = Recipient(
    "megacorp",
    R.ACQUIRER,
    hosts=["transfer.megacorp.example"],
    purposes=[P.CORPORATE_TRANSACTION],
    categories=[C.USER],
)

BUYER = Subject.customer("buyer-1", tenant=TENANT, jurisdiction="US")
CARD = "4111 1111 1111 1111"
PAYMENT = {
    "name": "Jane Doe",
    "email": "jane@example.com",
    "card_number": CARD,
    "cvv": "123",
    "amount": 12900,
}


@pytest.fixture
def guard(store: Store) -> Iterator[Privguard]:
    yield Privguard(
        store=store,
        recipients=[STRIPE, LEDGERLY, MAILER, LINKEDIN, POLICE, PARTNER, MEGACORP],
        telemetry=Telemetry.disabled(),
    )


@pytest.fixture
def remote() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def client(guard: Privguard, **options: object) -> httpx.Client:
    return httpx.Client(transport=GuardedTransport(httpx.HTTPTransport(), guard=guard, **options))  # type: ignore[arg-type]


def sent_json(route: respx.Route) -> object:
    request = route.calls.last.request
    assert request.headers["content-length"] == str(len(request.content))
    return json.loads(request.content)


def as_subject(subject: Subject, **more: object) -> dict[str, object]:
    return {"privguard": {"subject": subject, **more}}


# -- C10: card data ------------------------------------------------------------------------


def test_c10_card_data_passes_unmasked_only_to_the_payment_processor(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C10: "Card data is passed to payment card processors to validate and complete
    payment" - card fields reach only payment_processor recipients; everywhere else masked
    or encrypted."""
    stripe = remote.post("https://api.stripe.com/v1/charges").respond(200, json={"ok": True})
    ledgerly = remote.post("https://api.ledgerly.example/v2/invoices").respond(201)

    with client(guard, purpose=P.PAYMENT) as http:
        r = http.post(
            "https://api.stripe.com/v1/charges", json=PAYMENT, extensions=as_subject(BUYER)
        )
    assert r.json() == {"ok": True}
    assert sent_json(stripe) == PAYMENT  # exactly what was given: unmasked

    with client(guard, purpose=P.BILLING) as http:
        http.post(
            "https://api.ledgerly.example/v2/invoices", json=PAYMENT, extensions=as_subject(BUYER)
        )
    assert sent_json(ledgerly) == {
        "name": "Jane Doe",
        "email": "jane@example.com",
        "card_number": "**** **** **** 1111",
        "cvv": None,
        "amount": 12900,
    }

    log = guard.disclosures.for_subject(BUYER)
    assert [(r.recipient, r.channel, r.basis) for r in log] == [
        ("stripe", "http", Basis.CONTRACT),
        ("ledgerly", "http", Basis.CONTRACT),
    ]
    assert C.CARD in log[0].categories and log[0].agreement == "DPA-stripe-2023"


def test_c10_a_form_body_to_the_payment_processor(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C10, with Stripe's form encoding: bracketed keys name their categories; card data
    under a key that names nothing never goes, even to the payment processor."""
    route = remote.post("https://api.stripe.com/v1/payment_methods").respond(200)
    form = {
        "type": "card",
        "card[number]": "4111111111111111",
        "card[cvc]": "123",
        "billing_details[email]": "jane@example.com",
        "metadata[note]": "backup card 5555 5555 5555 4444",
    }
    with client(guard, purpose=P.PAYMENT) as http:
        http.post(
            "https://api.stripe.com/v1/payment_methods", data=form, extensions=as_subject(BUYER)
        )
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["content-length"] == str(len(request.content))
    assert parse_qs(request.content.decode()) == {
        "type": ["card"],
        "card[number]": ["4111111111111111"],
        "card[cvc]": ["123"],
        "billing_details[email]": ["jane@example.com"],
        # An undeclared key in which the detectors find a card number: dropped (fail closed).
    }


def test_c10_card_data_to_a_recipient_that_may_not_have_it_is_never_sent(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C10: a mailer asked to carry card data gets the rest, never the card."""
    route = remote.post("https://eu.mailer.example/send").respond(202)
    with client(guard, purpose=P.SERVICE) as http:
        http.post("https://eu.mailer.example/send", json=PAYMENT, extensions=as_subject(BUYER))
    assert sent_json(route) == {"name": "Jane Doe", "email": "jane@example.com", "amount": 12900}


# -- unregistered hosts and what cannot be inspected ---------------------------------------


def test_personal_data_to_an_unknown_host_is_blocked_and_nothing_sent(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C13: "only registered recipients"."""
    route = remote.post("https://collector.evil.example/ingest").respond(200)
    with client(guard, purpose=P.SERVICE) as http, pytest.raises(DisclosureBlocked) as caught:
        http.post(
            "https://collector.evil.example/ingest",
            json={"note": "reach me at jane@example.com"},
            extensions=as_subject(BUYER),
        )
    assert route.called is False
    assert caught.value.reason == "unregistered_recipient"
    assert caught.value.host == "collector.evil.example"
    assert "jane@example.com" not in str(caught.value)
    assert guard.disclosures.for_subject(BUYER) == ()


def test_personal_data_in_the_query_string_is_guarded(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    route = remote.get(url__startswith="https://lookup.evil.example/").respond(200)
    with client(guard) as http, pytest.raises(DisclosureBlocked, match="unregistered"):
        http.get("https://lookup.evil.example/find", params={"email": "jane@example.com"})
    assert route.called is False

    mailer = remote.get(url__startswith="https://eu.mailer.example/").respond(200)
    with client(guard, purpose=P.SERVICE) as http:
        http.get(
            "https://eu.mailer.example/contacts",
            params={"email": "jane@example.com", "card": CARD, "page": "2"},
            extensions=as_subject(BUYER),
        )
    assert dict(mailer.calls.last.request.url.params) == {
        "email": "jane@example.com",
        "page": "2",
    }


def test_no_personal_data_to_an_unknown_host_passes_unless_strict(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    route = remote.post("https://status.example/ping").respond(204)
    body = {"service": "checkout", "ok": True, "latency_ms": 12}
    with client(guard) as http:
        assert http.post("https://status.example/ping", json=body).status_code == 204
    assert json.loads(route.calls.last.request.content) == body
    assert guard.disclosures.for_recipient("status.example") == ()

    with client(guard, strict=True) as http, pytest.raises(DisclosureBlocked) as caught:
        http.post("https://status.example/ping", json=body)
    assert caught.value.reason == "unregistered_recipient"
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"email": "jane@example.com"', {"content-type": "application/json"}),
        (b"{not json", {"content-type": "application/json"}),
        (b"name=Jane;mail=jane@example.com", {"content-type": "text/plain"}),
        (
            gzip.compress(b'{"email": "jane@example.com"}'),
            {"content-type": "application/json", "content-encoding": "gzip"},
        ),
    ],
    ids=["truncated-json", "broken-json", "unknown-type-with-email", "gzip"],
)
def test_a_body_that_cannot_be_inspected_is_blocked(
    guard: Privguard, remote: respx.MockRouter, content: bytes, headers: dict[str, str]
) -> None:
    """Fail closed: a body privguard must inspect but cannot is never sent, even to a
    registered recipient."""
    route = remote.post("https://eu.mailer.example/send").respond(202)
    with client(guard, purpose=P.SERVICE) as http, pytest.raises(DisclosureBlocked) as caught:
        http.post(
            "https://eu.mailer.example/send",
            content=content,
            headers=headers,
            extensions=as_subject(BUYER),
        )
    assert caught.value.reason == "unparseable_body"
    assert route.called is False
    assert guard.disclosures.for_subject(BUYER) == ()


def test_an_unknown_media_type_without_personal_data_passes(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    route = remote.put("https://files.example/report.csv").respond(200)
    with client(guard) as http:
        http.put(
            "https://files.example/report.csv",
            content=b"day,visits\nmon,12\n",
            headers={"content-type": "text/csv"},
        )
    assert route.calls.last.request.content == b"day,visits\nmon,12\n"


def test_a_streamed_body_is_read_and_guarded(guard: Privguard, remote: respx.MockRouter) -> None:
    route = remote.post("https://eu.mailer.example/send").respond(202)

    def chunks() -> Iterator[bytes]:
        yield b'{"email": "jane@example.com", '
        yield b'"card_number": "4111 1111 1111 1111"}'

    with client(guard, purpose=P.SERVICE) as http:
        http.post(
            "https://eu.mailer.example/send",
            content=chunks(),
            headers={"content-type": "application/json"},
            extensions=as_subject(BUYER),
        )
    request = route.calls.last.request
    assert json.loads(request.content) == {"email": "jane@example.com"}
    assert "transfer-encoding" not in request.headers
    assert request.headers["content-length"] == str(len(request.content))


# -- purpose, subject, consent -------------------------------------------------------------


def test_a_purpose_the_recipient_is_not_registered_for_is_blocked(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C13: "with a declared purpose"."""
    route = remote.post("https://eu.mailer.example/send").respond(202)
    with (
        client(guard, purpose=P.MARKETING_EMAIL) as http,
        pytest.raises(DisclosureBlocked) as caught,
    ):
        http.post("https://eu.mailer.example/send", json=PAYMENT, extensions=as_subject(BUYER))
    assert caught.value.reason == "purpose_not_registered"
    assert caught.value.recipient == "mailer" and caught.value.recipient_kind == "processor"
    assert route.called is False


def test_without_purpose_or_subject_personal_data_is_blocked(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    route = remote.post("https://eu.mailer.example/send").respond(202)
    with client(guard) as http, pytest.raises(DisclosureBlocked, match="purpose_required"):
        http.post("https://eu.mailer.example/send", json=PAYMENT, extensions=as_subject(BUYER))
    with (
        client(guard, purpose=P.SERVICE) as http,
        pytest.raises(DisclosureBlocked, match="subject_required"),
    ):
        http.post("https://eu.mailer.example/send", json=PAYMENT)
    assert route.called is False


def test_the_purpose_may_come_from_a_resolver_or_the_request(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    route = remote.post(url__startswith="https://eu.mailer.example/").respond(202)

    def by_path(request: httpx.Request) -> str | None:
        return P.SERVICE if request.url.path.startswith("/send") else None

    with client(guard, purpose=by_path) as http:
        http.post("https://eu.mailer.example/send", json=PAYMENT, extensions=as_subject(BUYER))
        with pytest.raises(DisclosureBlocked, match="purpose_required"):
            http.post("https://eu.mailer.example/other", json=PAYMENT, extensions=as_subject(BUYER))
        http.post(
            "https://eu.mailer.example/other",
            json=PAYMENT,
            extensions=as_subject(BUYER, purpose=P.SERVICE),
        )
    assert route.call_count == 2


def test_unknown_request_options_are_a_programming_error(guard: Privguard) -> None:
    with client(guard) as http, pytest.raises(PolicyError, match="subjekt"):
        http.post(
            "https://eu.mailer.example/send",
            json=PAYMENT,
            extensions={"privguard": {"subjekt": BUYER}},
        )


class TestC12ExhibitorApi:
    """C12: "Disclosure to organizers, exhibitors or attendees only as directed by the
    Customer or consented to by the contact" - consent per exhibitor before any lead
    export; only the consented categories go; a disclosure record for every one."""

    def test_c12_a_lead_goes_to_the_exhibitors_api_only_with_consent(
        self, guard: Privguard, remote: respx.MockRouter
    ) -> None:
        """C12: the subject comes from the privacy context of the running request."""
        acme = guard.recipients.register_exhibitor(
            event="E1", name="acme", hosts="leads.acme.example"
        )
        route = remote.post("https://leads.acme.example/import").respond(201)
        jane = Subject.business_contact("contact-1", tenant=TENANT)
        lead = {"first_name": "Jane", "email": "jane@example.com", "card_number": CARD}

        with (
            bound_privacy_context(jane, scope=Scope(event="E1")),
            client(guard, purpose=P.EXHIBITOR_DISCLOSURE) as http,
        ):
            with pytest.raises(DisclosureBlocked) as caught:
                http.post("https://leads.acme.example/import", json=lead)
            assert caught.value.reason == "consent_missing" and caught.value.needs_consent
            assert route.called is False

            guard.ledger.grant(
                jane,
                P.EXHIBITOR_DISCLOSURE,
                scope=acme.scope,
                evidence=Evidence(ConsentMethod.FORM, actor=jane.id, notice_version="n1"),
            )
            http.post("https://leads.acme.example/import", json=lead)
        assert sent_json(route) == {"first_name": "Jane", "email": "jane@example.com"}
        (record,) = guard.disclosures.for_subject(jane)
        assert record.recipient == "acme" and record.scope == acme.scope
        assert record.basis == Basis.CONSENT and record.consent_id is not None

    def test_c12_the_event_tells_one_exhibitors_registrations_apart(
        self, guard: Privguard, remote: respx.MockRouter
    ) -> None:
        for event in ("E1", "E2"):
            guard.recipients.register_exhibitor(
                event=event, name="acme", hosts="leads.acme.example"
            )
        route = remote.post("https://leads.acme.example/import").respond(201)
        jane = Subject.business_contact("contact-1", tenant=TENANT)
        with client(guard, purpose=P.EXHIBITOR_DISCLOSURE) as http:
            with pytest.raises(DisclosureBlocked, match="ambiguous_recipient"):
                http.post(
                    "https://leads.acme.example/import",
                    json={"email": "jane@example.com"},
                    extensions=as_subject(jane),
                )
            with pytest.raises(DisclosureBlocked, match="consent_missing"):
                http.post(
                    "https://leads.acme.example/import",
                    json={"email": "jane@example.com"},
                    extensions=as_subject(jane, scope={"event": "E2"}),
                )
        assert route.called is False


def test_c11_social_sharing_over_http_is_recorded(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C11: "Social login or sharing passes information to the social provider" -
    disclosure record to a social_provider."""
    route = remote.post("https://api.linkedin.example/shares").respond(201)
    user = Subject.customer("u-42", tenant=TENANT)
    with client(guard, purpose=P.SOCIAL_SHARING) as http:
        http.post(
            "https://api.linkedin.example/shares",
            json={"email": "jane@example.com", "text": "See you at DevCon!"},
            extensions=as_subject(user),
        )
    assert sent_json(route) == {"email": "jane@example.com", "text": "See you at DevCon!"}
    (record,) = guard.disclosures.for_subject(user)
    assert record.recipient_kind == "social_provider" and record.categories == (C.EMAIL,)


def test_c15_a_request_from_an_authority_is_answered_with_its_reference(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C15: "Disclosure required by law or to authorities" - always recorded with its
    legal basis."""
    route = remote.post("https://requests.bka.example/answers").respond(200)
    jane = Subject.business_contact("contact-1", tenant=TENANT)
    with client(guard, purpose=P.LEGAL_DISCLOSURE) as http:
        with pytest.raises(DisclosureBlocked, match="reference_required"):
            http.post(
                "https://requests.bka.example/answers",
                json={"email": "jane@example.com"},
                extensions=as_subject(jane),
            )
        assert route.called is False
        http.post(
            "https://requests.bka.example/answers",
            json={"email": "jane@example.com"},
            extensions=as_subject(jane, reference="request 2024-0815"),
        )
    (record,) = guard.disclosures.for_subject(jane)
    assert record.basis == Basis.LEGAL_OBLIGATION and record.reference == "request 2024-0815"


def test_c19_a_visitor_goes_to_a_partner_only_with_consent_for_that_event(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C19: "Visitor data shared with third parties after a marketing event only with
    explicit consent" - consent check before that disclosure, recorded."""
    route = remote.post("https://api.eventpartner.example/leads").respond(201)
    visitor = Subject.visitor("v-1", jurisdiction="US")
    guard.ledger.grant(
        visitor,
        P.PARTNER_SHARING,
        scope=Scope(event="M1"),
        evidence=Evidence(ConsentMethod.FORM, actor=visitor.id, notice_version="n1"),
    )
    body = {"email": "v@example.com"}
    with client(guard, purpose=P.PARTNER_SHARING) as http:
        with pytest.raises(DisclosureBlocked, match="consent_missing"):
            http.post(
                "https://api.eventpartner.example/leads",
                json=body,
                extensions=as_subject(visitor, scope={"event": "M2"}),
            )
        assert route.called is False
        http.post(
            "https://api.eventpartner.example/leads",
            json=body,
            extensions=as_subject(visitor, scope={"event": "M1"}),
        )
    assert sent_json(route) == body
    (record,) = guard.disclosures.for_subject(visitor)
    assert record.basis == Basis.CONSENT and record.scope == Scope(event="M1")


# -- a bulk export made with disclose(), sent over HTTP ------------------------------------


def test_c14_a_disclosed_batch_is_sent_as_it_is_and_not_recorded_twice(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    """C14: "Transfer in a merger or sale of assets" - a bulk disclosure to an acquirer,
    recorded (once)."""
    route = remote.post("https://transfer.megacorp.example/contacts").respond(202)
    contacts = [Subject.business_contact(f"c-{i}", tenant=TENANT) for i in range(50)]
    result = guard.disclose(
        [(s, {"email": f"p{i}@example.com", "card": CARD}) for i, s in enumerate(contacts)],
        to=MEGACORP,
        purpose=P.CORPORATE_TRANSACTION,
    )
    with client(guard) as http:
        http.post(
            "https://transfer.megacorp.example/contacts",
            json={"contacts": list(result.records)},
            extensions={"privguard": {"disclosure": result}},
        )
        # Anything the result did not disclose is refused.
        tampered = [*result.records, {"email": "extra@example.com"}]
        with pytest.raises(DisclosureBlocked, match="undisclosed_data"):
            http.post(
                "https://transfer.megacorp.example/contacts",
                json={"contacts": tampered},
                extensions={"privguard": {"disclosure": result}},
            )
        # And a result for one recipient is no pass to another.
        with pytest.raises(DisclosureBlocked, match="undisclosed_data"):
            http.post(
                "https://eu.mailer.example/import",
                json={"contacts": list(result.records)},
                extensions={"privguard": {"disclosure": result}},
            )
    assert route.call_count == 1
    assert sent_json(route) == {"contacts": list(result.records)}
    assert len(guard.disclosures.for_recipient("megacorp")) == 50


# -- async ---------------------------------------------------------------------------------


async def test_the_async_transport_guards_the_same_way(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    stripe = remote.post("https://api.stripe.com/v1/charges").respond(200)
    evil = remote.post("https://evil.example/x").respond(200)
    transport = AsyncGuardedTransport(httpx.AsyncHTTPTransport(), guard=guard, purpose=P.PAYMENT)
    async with httpx.AsyncClient(transport=transport) as http:
        await http.post(
            "https://api.stripe.com/v1/charges", json=PAYMENT, extensions=as_subject(BUYER)
        )
        with pytest.raises(DisclosureBlocked, match="unregistered_recipient"):
            await http.post("https://evil.example/x", json=PAYMENT, extensions=as_subject(BUYER))
    assert sent_json(stripe) == PAYMENT
    assert evil.called is False
    (record,) = await guard.disclosures.afor_subject(BUYER)
    assert record.recipient == "stripe" and record.channel == "http"


async def test_the_async_transport_blocks_without_consent(
    guard: Privguard, remote: respx.MockRouter
) -> None:
    acme = guard.recipients.register_exhibitor(event="E1", name="acme", hosts="leads.acme.example")
    route = remote.post("https://leads.acme.example/import").respond(201)
    jane = Subject.business_contact("contact-1", tenant=TENANT)
    transport = AsyncGuardedTransport(guard=guard, purpose=P.EXHIBITOR_DISCLOSURE)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(DisclosureBlocked, match="consent_missing"):
            await http.post(
                "https://leads.acme.example/import",
                json={"email": "jane@example.com"},
                extensions=as_subject(jane),
            )
    assert route.called is False
    assert acme.scope == Scope(event="E1", exhibitor="acme")
