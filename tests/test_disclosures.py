"""Disclosures: checked, reduced, protected and recorded, clause by clause (C10-C15, C19).

Each ``test_cNN_...`` quotes its clause (``/work/shared/policy/CLAUSES.md``). They run
against every store of the contract suite (the ``store`` fixture: memory and SQLite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest

import privguard._stores._sqlite as _sqlite
from privguard import (
    Basis,
    BlockReason,
    Categories,
    ConsentMethod,
    DisclosureBlocked,
    DisclosureRecord,
    Evidence,
    MemoryStore,
    Personal,
    PolicyError,
    Privguard,
    Provenance,
    Purposes,
    Recipient,
    RecipientKind,
    Scope,
    Source,
    SQLiteStore,
    Store,
    StoreUnavailable,
    Subject,
    Telemetry,
)
from privguard.testing import find_personal_data

C = Categories
P = Purposes
R = RecipientKind
TENANT = "acme-events"
EVENT = "E1"
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)

STRIPE = Recipient(
    "stripe",
    R.PAYMENT_PROCESSOR,
    hosts=["api.stripe.com"],
    purposes=[P.PAYMENT, P.BILLING, P.FRAUD],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL, C.ADDRESS],
    agreement="DPA-stripe-2023",
)
LEDGERLY = Recipient(
    "ledgerly",
    R.PROCESSOR,
    hosts=["api.ledgerly.example"],
    purposes=[P.BILLING],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL, C.ORGANIZATION],
    agreement="DPA-ledgerly-7",
)
MAILER = Recipient(
    "mailer",
    R.PROCESSOR,
    hosts=["api.mailer.example"],
    purposes=[P.SERVICE],
    categories=[C.NAME, C.EMAIL],
    agreement="DPA-mailer-2",
)
LINKEDIN = Recipient(
    "linkedin",
    R.SOCIAL_PROVIDER,
    hosts=["api.linkedin.example"],
    purposes=[P.SOCIAL_SHARING],
    categories=[C.NAME, C.EMAIL, C.SOCIAL_ACCOUNT_ID, C.SELF_IMAGE],
)
MEGACORP = Recipient(
    "megacorp",
    R.ACQUIRER,
    hosts=["transfer.megacorp.example"],
    purposes=[P.CORPORATE_TRANSACTION],
    categories=[C.USER],
    agreement="SPA-2025-001",
)
POLICE = Recipient(
    "bka",
    R.AUTHORITY,
    hosts=["requests.bka.example"],
    purposes=[P.LEGAL_DISCLOSURE, P.FRAUD],
    categories=[C.USER],
)
PARTNER = Recipient(
    "eventpartner",
    R.PARTNER,
    hosts=["api.eventpartner.example"],
    purposes=[P.PARTNER_SHARING],
    categories=[C.NAME, C.CONTACT, C.JOB_TITLE, C.WORKPLACE],
)
RECIPIENTS = [STRIPE, LEDGERLY, MAILER, LINKEDIN, MEGACORP, POLICE, PARTNER]


def contact(i: int, tenant: str = TENANT) -> Subject:
    return Subject.business_contact(f"contact-{i}", tenant=tenant, jurisdiction="DE")


def proof(subject: Subject) -> Evidence:
    return Evidence(ConsentMethod.FORM, actor=subject.id, notice_version="2019-12-17")


#: The host declares the categories of keys the redactor's key names do not know.
FIELDS = {"dietary": C.DIETARY, "job_title": C.JOB_TITLE}


def lead(i: int) -> dict[str, Any]:
    """A full attendee record, as the host keeps it."""
    return {
        "id": i,
        "first_name": f"Name{i}",
        "email": f"person{i}@example.com",
        "job_title": "Buyer",
        "phone": "+49 30 1234567",
        "card_number": "4111 1111 1111 1111",
        "dietary": "vegan",
        "notes": f"met at booth, private mail person{i}@gmail.com",
        "ticket": "VIP",
    }


@pytest.fixture
def guard(store: Store) -> Iterator[Privguard]:
    g = Privguard(store=store, recipients=RECIPIENTS, telemetry=Telemetry.disabled())
    yield g


def _grant_exhibitor(guard: Privguard, subject: Subject, exhibitor: str, event: str = EVENT) -> str:
    return guard.ledger.grant(
        subject,
        P.EXHIBITOR_DISCLOSURE,
        scope=Scope(event=event, exhibitor=exhibitor),
        evidence=proof(subject),
    ).consent_id


# -- C12: exhibitors -----------------------------------------------------------------------


class TestC12ExhibitorExport:
    """C12: "Disclosure to organizers, exhibitors or attendees only as directed by the
    Customer or consented to by the contact" - consent per exhibitor before any lead
    export; only the consented categories go; a disclosure record for every one."""

    def test_c12_exhibitor_export_with_and_without_consent(self, guard: Privguard) -> None:
        """C12: "consent per exhibitor (or per event) before any lead export; only the
        consented categories go; a disclosure record for every one"."""
        acme = guard.recipients.register_exhibitor(event=EVENT, name="acme")
        guard.recipients.register_exhibitor(event=EVENT, name="globex")
        consented, other_exhibitor, nobody = contact(1), contact(2), contact(3)
        consent_id = _grant_exhibitor(guard, consented, "acme")
        _grant_exhibitor(guard, other_exhibitor, "globex")

        result = guard.disclose(
            [(s, lead(i)) for i, s in enumerate((consented, other_exhibitor, nobody), 1)],
            to=acme,
            purpose=P.EXHIBITOR_DISCLOSURE,
            controller=TENANT,
            fields=FIELDS,
        )

        assert result.disclosed == 1 and result.subjects == (consented,)
        assert result.dropped == {"consent_missing": 2}
        # Only the consented categories: name, contact data, title. No card, no diet, and
        # the free-text note with a private e-mail under a key that names nothing is gone.
        assert result.records == (
            {
                "id": 1,
                "first_name": "Name1",
                "email": "person1@example.com",
                "job_title": "Buyer",
                "phone": "+49 30 1234567",
                "ticket": "VIP",
            },
        )
        assert result.withheld == {C.CARD: 1, C.DIETARY: 1}
        assert result.undeclared == 1
        (record,) = guard.disclosures.for_subject(consented)
        assert record.recipient == "acme" and record.recipient_kind == "exhibitor"
        assert record.purpose == P.EXHIBITOR_DISCLOSURE
        assert record.categories == (C.EMAIL, C.PHONE, C.JOB_TITLE, C.NAME)  # sorted
        assert record.basis == Basis.CONSENT and record.consent_id == consent_id
        assert record.scope == Scope(event=EVENT, exhibitor="acme")
        assert record.controller == TENANT and record.subject_id == consented.id
        assert record.policy_version == guard.policy.version
        assert record.channel == "export" and record.disclosure_id == result.disclosure_ids[0]
        assert guard.disclosures.for_subject(other_exhibitor) == ()
        assert guard.disclosures.for_subject(nobody) == ()

    def test_c12_consent_withdrawn_before_the_second_export(self, guard: Privguard) -> None:
        """C12: "consented to by the contact": a withdrawal stops the next export."""
        acme = guard.recipients.register_exhibitor(event=EVENT, name="acme")
        jane = contact(1)
        _grant_exhibitor(guard, jane, "acme")
        first = guard.disclose([(jane, lead(1))], to=acme, purpose=P.EXHIBITOR_DISCLOSURE)
        assert first.disclosed == 1

        guard.ledger.withdraw(
            jane, P.EXHIBITOR_DISCLOSURE, scope=Scope(event=EVENT), evidence=proof(jane)
        )
        second = guard.disclose([(jane, lead(1))], to=acme, purpose=P.EXHIBITOR_DISCLOSURE)
        assert second.disclosed == 0 and second.records == ()
        assert second.dropped == {"consent_withdrawn": 1}
        assert [r.batch_id for r in guard.disclosures.for_subject(jane)] == [first.batch_id]

    def test_c12_consent_for_one_event_does_not_cover_the_next(self, guard: Privguard) -> None:
        """C12: consent per exhibitor *at an event*: the same exhibitor at another event
        needs its own."""
        acme_e2 = guard.recipients.register_exhibitor(event="E2", name="acme")
        jane = contact(1)
        _grant_exhibitor(guard, jane, "acme", event=EVENT)
        result = guard.disclose([(jane, lead(1))], to=acme_e2, purpose=P.EXHIBITOR_DISCLOSURE)
        assert result.dropped == {"consent_missing": 1}

    def test_c12_card_data_in_a_permitted_free_text_field_is_masked(self, guard: Privguard) -> None:
        """C12 with C10: exhibitors may get comments, never a card number written in one."""
        acme = guard.recipients.register_exhibitor(event=EVENT, name="acme")
        jane = contact(1)
        _grant_exhibitor(guard, jane, "acme")
        record = {"email": "jane@example.com", "comment": "card 4111 1111 1111 1111 pls call"}
        result = guard.disclose(
            [(jane, record)],
            to=acme,
            purpose=P.EXHIBITOR_DISCLOSURE,
            fields={"comment": C.COMMENTS},
        )
        (sent,) = result.records
        assert "4111 1111 1111 1111" not in sent["comment"]
        assert sent["comment"].endswith("1111 pls call")
        assert sent["email"] == "jane@example.com"  # consented contact data goes unmasked

    def test_c12_an_unregistered_exhibitor_gets_nothing(self, guard: Privguard) -> None:
        """C12/C13: a lookalike of a registered exhibitor is refused; nothing is written."""
        jane = contact(1)
        _grant_exhibitor(guard, jane, "acme")
        lookalike = Recipient(
            "acme",
            R.EXHIBITOR,
            purposes=[P.EXHIBITOR_DISCLOSURE],
            categories=[C.USER],
            scope=Scope(event=EVENT, exhibitor="acme"),
        )
        with pytest.raises(DisclosureBlocked) as caught:
            guard.disclose([(jane, lead(1))], to=lookalike, purpose=P.EXHIBITOR_DISCLOSURE)
        assert caught.value.reason == BlockReason.UNREGISTERED_RECIPIENT
        assert guard.disclosures.for_subject(jane) == ()


# -- C10: card data ------------------------------------------------------------------------


def test_c10_card_data_goes_only_to_the_payment_processor(guard: Privguard) -> None:
    """C10: "Card data is passed to payment card processors to validate and complete
    payment" - card fields reach only payment_processor recipients; everywhere else masked
    or encrypted."""
    buyer = Subject.customer("buyer-1", tenant=TENANT, jurisdiction="US")
    payment = {
        "name": "Jane Doe",
        "email": "jane@example.com",
        "card_number": "4111 1111 1111 1111",
        "cvv": "123",
        "expiry": "12/29",
        "amount": 12900,
    }
    to_processor = guard.disclose([(buyer, payment)], to=STRIPE, purpose=P.PAYMENT)
    assert to_processor.records == (payment,)  # unmasked, the security code included
    (record,) = guard.disclosures.for_recipient("stripe")
    assert C.CARD in record.categories and record.basis == Basis.CONTRACT
    assert record.agreement == "DPA-stripe-2023"

    # A processor (bookkeeping, purpose billing) may get financial data, but masked.
    to_bookkeeping = guard.disclose([(buyer, payment)], to=LEDGERLY, purpose=P.BILLING)
    (sent,) = to_bookkeeping.records
    assert sent["card_number"] == "**** **** **** 1111"
    assert sent["cvv"] is None  # removed for everyone but the payment processor
    assert sent["email"] == "jane@example.com" and sent["amount"] == 12900
    assert find_personal_data(sent, [C.CARD]) == []

    # And a recipient the payment purpose is not for gets no card at all.
    guard.recipients.register_exhibitor(event=EVENT, name="acme")
    with pytest.raises(DisclosureBlocked, match="purpose_not_registered"):
        guard.disclose(
            [(buyer, payment)], to=guard.recipients.exhibitor(EVENT, "acme"), purpose=P.PAYMENT
        )


# -- C13: processors -----------------------------------------------------------------------


class TestC13Processors:
    """C13: "Disclosure to subsidiaries/affiliates, contractors and processors as
    reasonably necessary" - only registered recipients with a declared purpose; a
    disclosure record each time."""

    def test_c13_a_processor_gets_only_its_declared_categories(self, guard: Privguard) -> None:
        """C13: "only registered recipients with a declared purpose; a disclosure record
        each time"."""
        subjects = [contact(i) for i in range(3)]
        result = guard.disclose(
            [(s, lead(i)) for i, s in enumerate(subjects)],
            to=MAILER,
            purpose=P.SERVICE,
            fields=FIELDS,
        )
        assert result.disclosed == 3 and result.dropped == {}
        assert result.records[0] == {
            "id": 0,
            "first_name": "Name0",
            "email": "person0@example.com",
            "ticket": "VIP",
        }
        assert result.withheld == {C.JOB_TITLE: 3, C.PHONE: 3, C.CARD: 3, C.DIETARY: 3}
        log = guard.disclosures.for_recipient(MAILER)
        assert [r.subject_id for r in log] == [s.id for s in subjects]
        assert {r.basis for r in log} == {Basis.CONTRACT}
        assert {r.batch_id for r in log} == {result.batch_id}

    def test_c13_an_undeclared_purpose_is_refused_whole(self, guard: Privguard) -> None:
        """C13: "with a declared purpose": the mailer is not declared for marketing."""
        with pytest.raises(DisclosureBlocked) as caught:
            guard.disclose([(contact(1), lead(1))], to=MAILER, purpose=P.MARKETING_EMAIL)
        assert caught.value.reason == "purpose_not_registered"
        assert caught.value.recipient == "mailer" and caught.value.recipient_kind == "processor"
        assert "person1" not in str(caught.value)
        assert guard.disclosures.for_recipient("mailer") == ()

    def test_c13_an_unregistered_recipient_is_refused(self, guard: Privguard) -> None:
        """C13: "only registered recipients"."""
        rogue = Recipient("rogue", R.PROCESSOR, purposes=[P.SERVICE], categories=[C.USER])
        with pytest.raises(DisclosureBlocked, match="unregistered_recipient"):
            guard.disclose([(contact(1), lead(1))], to=rogue, purpose=P.SERVICE)
        with pytest.raises(PolicyError):
            guard.disclose([(contact(1), lead(1))], to="rogue", purpose=P.SERVICE)


# -- C11: social providers -----------------------------------------------------------------


def test_c11_social_login_share_is_recorded(guard: Privguard) -> None:
    """C11: "Social login or sharing passes information to the social provider" -
    disclosure record to a social_provider."""
    user = Subject.customer("u-42", tenant=TENANT)
    profile = {
        "name": "Jane Doe",
        "email": "jane@example.com",
        "social_id": "li-99812",
        "card_number": "4111 1111 1111 1111",
    }
    result = guard.disclose(
        [(user, profile)],
        to=LINKEDIN,
        purpose=P.SOCIAL_SHARING,
        fields={"name": C.NAME, "social_id": C.SOCIAL_ACCOUNT_ID},
    )
    assert result.records == (
        {"name": "Jane Doe", "email": "jane@example.com", "social_id": "li-99812"},
    )
    (record,) = guard.disclosures.for_subject(user)
    assert record.recipient_kind == "social_provider" and record.basis == Basis.CONTRACT
    assert record.categories == (C.EMAIL, C.NAME, C.SOCIAL_ACCOUNT_ID)


# -- C14: acquirers ------------------------------------------------------------------------


def test_c14_acquirer_bulk_transfer_is_recorded(guard: Privguard) -> None:
    """C14: "Transfer in a merger or sale of assets" - a bulk disclosure to an acquirer,
    recorded."""
    subjects = [contact(i) for i in range(2000)]
    result = guard.disclose(
        [(s, lead(i)) for i, s in enumerate(subjects)],
        to=MEGACORP,
        purpose=P.CORPORATE_TRANSACTION,
        controller=TENANT,
    )
    assert result.disclosed == 2000 and result.dropped == {}
    assert result.records[5]["card_number"] == "**** **** **** 1111"  # C10 still holds
    log = guard.disclosures.for_recipient("megacorp")
    assert len(log) == 2000 and {r.batch_id for r in log} == {result.batch_id}
    assert {r.basis for r in log} == {Basis.LEGITIMATE_INTEREST}
    assert {r.agreement for r in log} == {"SPA-2025-001"}
    assert len(set(result.disclosure_ids)) == 2000


# -- C15: authorities ----------------------------------------------------------------------


class TestC15Authorities:
    """C15: "Disclosure required by law or to authorities, also abroad; fraud prevention"
    - purpose legal / fraud allowed without consent, always recorded with its legal
    basis."""

    def test_c15_authority_request_is_recorded_with_its_legal_basis(self, guard: Privguard) -> None:
        """C15: "always recorded with its legal basis"."""
        jane = contact(1)
        # Even a withdrawal of everything does not stop a disclosure the law requires.
        guard.ledger.withdraw(jane, P.SHARING, evidence=proof(jane))
        result = guard.disclose(
            [(jane, lead(1))],
            to=POLICE,
            purpose=P.LEGAL_DISCLOSURE,
            reference="court order AG Berlin 2024/117",
        )
        assert result.disclosed == 1
        (record,) = guard.disclosures.for_subject(jane)
        assert record.basis == Basis.LEGAL_OBLIGATION and record.consent_id is None
        assert record.reference == "court order AG Berlin 2024/117"
        assert record.recipient_kind == "authority"

    def test_c15_an_authority_disclosure_names_its_legal_request(self, guard: Privguard) -> None:
        """C15: "with its legal basis": no reference to the request, no disclosure."""
        with pytest.raises(DisclosureBlocked, match="reference_required"):
            guard.disclose([(contact(1), lead(1))], to=POLICE, purpose=P.LEGAL_DISCLOSURE)
        assert guard.disclosures.for_recipient("bka") == ()

    def test_c15_fraud_prevention_is_recorded_without_consent(self, guard: Privguard) -> None:
        """C15: "fraud prevention"."""
        buyer = Subject.customer("buyer-1", tenant=TENANT)
        result = guard.disclose(
            [(buyer, {"email": "jane@example.com", "card_number": "4111111111111111"})],
            to=STRIPE,
            purpose=P.FRAUD,
        )
        (record,) = guard.disclosures.for_subject(buyer)
        assert record.basis == Basis.LEGITIMATE_INTEREST
        assert result.records[0]["card_number"] == "4111111111111111"


# -- C19: partners after a marketing event -------------------------------------------------


class TestC19PartnerSharing:
    """C19: "Visitor data shared with third parties after a marketing event only with
    explicit consent or where the law permits" - consent check before that disclosure,
    recorded."""

    def test_c19_partner_gets_visitor_data_only_with_consent(self, guard: Privguard) -> None:
        """C19: "consent check before that disclosure, recorded"."""
        yes, other_event, no = (Subject.visitor(f"v-{i}", jurisdiction="US") for i in range(3))
        granted = guard.ledger.grant(
            yes, P.PARTNER_SHARING, scope=Scope(event="M1"), evidence=proof(yes)
        )
        guard.ledger.grant(
            other_event, P.PARTNER_SHARING, scope=Scope(event="M2"), evidence=proof(other_event)
        )
        visitors = [
            (v, {"name": f"V{i}", "email": f"v{i}@example.com"})
            for i, v in enumerate((yes, other_event, no))
        ]
        result = guard.disclose(
            visitors, to=PARTNER, purpose=P.PARTNER_SHARING, scope={"event": "M1"}
        )
        assert result.subjects == (yes,)
        assert result.dropped == {"consent_missing": 2}
        (record,) = guard.disclosures.for_subject(yes)
        assert record.basis == Basis.CONSENT and record.consent_id == granted.consent_id
        assert record.scope == Scope(event="M1") and record.recipient_kind == "partner"

    def test_c19_the_marketing_event_must_be_named(self, guard: Privguard) -> None:
        """C19: "after a marketing event": a disclosure that names no event is refused."""
        v = Subject.visitor("v-1", jurisdiction="US")
        guard.ledger.grant(v, P.PARTNER_SHARING, scope=Scope(event="M1"), evidence=proof(v))
        result = guard.disclose(
            [(v, {"email": "v@example.com"})], to=PARTNER, purpose=P.PARTNER_SHARING
        )
        assert result.dropped == {"scope_required": 1}
        assert guard.disclosures.for_subject(v) == ()


# -- C05: tenants --------------------------------------------------------------------------


class TestC05Tenancy:
    """C05: "Data about a business contact is under the control of the Customer" - one
    tenant can never read, export or disclose another tenant's contacts."""

    def test_c05_another_tenants_subjects_are_dropped(self, guard: Privguard) -> None:
        """C05: with ``controller=``, another tenant's subjects are dropped."""
        mine, theirs = contact(1), contact(2, tenant="other-tenant")
        result = guard.disclose(
            [(mine, lead(1)), (theirs, lead(2))],
            to=MAILER,
            purpose=P.SERVICE,
            controller=TENANT,
        )
        assert result.subjects == (mine,)
        assert result.dropped == {"cross_tenant": 1}
        assert guard.disclosures.for_subject(theirs) == ()

    def test_c05_mixed_tenants_without_a_controller_are_refused(self, guard: Privguard) -> None:
        """C05: without ``controller=``, a mix of tenants refuses the whole call."""
        with pytest.raises(DisclosureBlocked, match="cross_tenant"):
            guard.disclose(
                [(contact(1), lead(1)), (contact(2, tenant="other-tenant"), lead(2))],
                to=MAILER,
                purpose=P.SERVICE,
            )
        assert guard.disclosures.for_recipient("mailer") == ()


# -- the forms of a call -------------------------------------------------------------------


@dataclass
class Attendee:
    id: str
    tenant: str
    email: Annotated[str, Personal(C.EMAIL)]
    badge_name: str = field(metadata={"privguard": C.NAME})
    card: Annotated[str, Personal(C.CARD)] = ""
    remark: str = ""


def test_records_with_subject_of_and_annotated_dataclasses(guard: Privguard) -> None:
    people = [
        Attendee("a-1", TENANT, "a1@example.com", "Ann", "4111111111111111", "ok"),
        Attendee("a-2", TENANT, "a2@example.com", "Bo", "", "call +49 30 1234567"),
    ]
    result = guard.disclose(
        people,
        subject_of=lambda a: Subject.business_contact(a.id, tenant=a.tenant),
        to=MAILER,
        purpose=P.SERVICE,
    )
    assert result.records == (
        {
            "id": "a-1",
            "tenant": TENANT,
            "email": "a1@example.com",
            "badge_name": "Ann",
            "remark": "ok",
        },
        {"id": "a-2", "tenant": TENANT, "email": "a2@example.com", "badge_name": "Bo"},
    )
    assert result.withheld == {C.CARD: 1}
    assert result.undeclared == 1


def test_pairs_are_checked(guard: Privguard) -> None:
    with pytest.raises(PolicyError, match="pairs"):
        guard.disclose([lead(1)], to=MAILER, purpose=P.SERVICE)


def test_a_batch_commits_on_exit(guard: Privguard) -> None:
    with guard.disclosing(to=MAILER, purpose=P.SERVICE, controller=TENANT) as batch:
        for i in range(3):
            batch.add(contact(i), lead(i))
        assert guard.disclosures.for_recipient("mailer") == ()  # nothing before the exit
    assert batch.result.disclosed == 3
    assert len(guard.disclosures.for_recipient("mailer")) == 3


def test_a_batch_writes_nothing_when_its_block_raises(guard: Privguard) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), guard.disclosing(to=MAILER, purpose=P.SERVICE) as batch:
        batch.add(contact(1), lead(1))
        raise Boom
    assert guard.disclosures.for_recipient("mailer") == ()
    with pytest.raises(PolicyError, match="not been committed"):
        _ = batch.result


async def test_async_disclose_and_batch(guard: Privguard) -> None:
    acme = guard.recipients.register_exhibitor(event=EVENT, name="acme")
    jane, bob = contact(1), contact(2)
    _grant_exhibitor(guard, jane, "acme")
    result = await guard.adisclose(
        [(jane, lead(1)), (bob, lead(2))], to=acme, purpose=P.EXHIBITOR_DISCLOSURE
    )
    assert result.subjects == (jane,)
    async with guard.disclosing(to=acme, purpose=P.EXHIBITOR_DISCLOSURE) as batch:
        batch.add(jane, lead(1))
    assert batch.result.disclosed == 1
    assert len(await guard.disclosures.afor_subject(jane)) == 2
    assert len(await guard.disclosures.afor_recipient(acme)) == 2


def test_the_result_repr_names_no_person(guard: Privguard) -> None:
    jane = contact(1)
    result = guard.disclose([(jane, lead(1))], to=MAILER, purpose=P.SERVICE)
    text = repr(result)
    assert "person1" not in text and jane.id not in text and "Name1" not in text
    assert find_personal_data(text) == []


def test_the_log_per_subject_and_per_recipient_and_time_range(guard: Privguard) -> None:
    """The disclosure log answers "who got my data" and "what did they get, when"."""
    now = [T0]
    guard.disclosures.clock = lambda: now[0]
    jane, bob = contact(1), contact(2)
    guard.disclose([(jane, lead(1))], to=MAILER, purpose=P.SERVICE)
    now[0] = T0 + timedelta(days=1)
    guard.disclose([(jane, lead(1)), (bob, lead(2))], to=MEGACORP, purpose=P.CORPORATE_TRANSACTION)
    now[0] = T0 + timedelta(days=2)
    guard.disclose([(bob, lead(2))], to=MAILER, purpose=P.SERVICE)

    assert [(r.recipient, r.at) for r in guard.disclosures.for_subject(jane)] == [
        ("mailer", T0),
        ("megacorp", T0 + timedelta(days=1)),
    ]
    mailer = guard.disclosures.for_recipient("mailer")
    assert [(r.subject_id, r.at) for r in mailer] == [
        (jane.id, T0),
        (bob.id, T0 + timedelta(days=2)),
    ]
    window = guard.disclosures.for_recipient(
        "mailer", since=T0 + timedelta(hours=1), until=T0 + timedelta(days=3)
    )
    assert [r.subject_id for r in window] == [bob.id]


def test_a_store_failure_writes_nothing_and_returns_nothing() -> None:
    store = MemoryStore()
    guard = Privguard(store=store, recipients=RECIPIENTS, telemetry=Telemetry.disabled())
    store.unavailable = True
    with pytest.raises(StoreUnavailable):
        guard.disclose([(contact(1), lead(1))], to=MEGACORP, purpose=P.CORPORATE_TRANSACTION)
    store.unavailable = False
    assert guard.disclosures.for_recipient("megacorp") == ()


# -- bulk: 100 000 subjects, atomic, on SQLite ---------------------------------------------


def test_bulk_100000_subjects_is_atomic_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure midway through the one executemany leaves nothing written."""
    store = SQLiteStore(tmp_path / "bulk.db")
    guard = Privguard(store=store, recipients=RECIPIENTS, telemetry=Telemetry.disabled())
    subjects = [contact(i) for i in range(100_000)]
    rows = [(s, {"email": f"p{i}@example.com", "first_name": "N"}) for i, s in enumerate(subjects)]
    real_rows = _sqlite._disclosure_rows

    def failing_midway(records: Any) -> Iterator[tuple[object, ...]]:
        for n, row in enumerate(real_rows(records)):
            if n == 60_000:
                raise sqlite3.OperationalError("disk I/O error")
            yield row

    monkeypatch.setattr(_sqlite, "_disclosure_rows", failing_midway)
    with pytest.raises(StoreUnavailable):
        guard.disclose(rows, to=MEGACORP, purpose=P.CORPORATE_TRANSACTION, controller=TENANT)
    assert guard.disclosures.for_recipient("megacorp") == ()
    assert guard.disclosures.for_subject(subjects[0]) == ()

    monkeypatch.setattr(_sqlite, "_disclosure_rows", real_rows)
    result = guard.disclose(rows, to=MEGACORP, purpose=P.CORPORATE_TRANSACTION, controller=TENANT)
    assert result.disclosed == 100_000
    assert len(guard.disclosures.for_recipient("megacorp")) == 100_000
    assert guard.disclosures.for_subject(subjects[-1])[0].batch_id == result.batch_id
    guard.close()


def test_the_sqlite_disclosure_log_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    guard = Privguard(
        store=SQLiteStore(path), recipients=RECIPIENTS, telemetry=Telemetry.disabled()
    )
    guard.disclose([(contact(1), lead(1))], to=MAILER, purpose=P.SERVICE)
    guard.close()
    db = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE disclosures SET recipient = 'someone else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM disclosures")
    finally:
        db.close()


def test_records_are_disclosure_records(guard: Privguard) -> None:
    guard.disclose([(contact(1), lead(1))], to=MAILER, purpose=P.SERVICE)
    (record,) = guard.disclosures.for_recipient("mailer")
    assert isinstance(record, DisclosureRecord)


def test_pydantic_models_with_personal_annotations(guard: Privguard) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Lead(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        badge: Annotated[str, Personal(C.NAME)]
        email: str
        allergy: Annotated[str, Personal(C.DIETARY)]

    result = guard.disclose(
        [(contact(1), Lead(badge="Ann", email="ann@example.com", allergy="nuts"))],
        to=MAILER,
        purpose=P.SERVICE,
    )
    assert result.records == ({"badge": "Ann", "email": "ann@example.com"},)
    assert result.withheld == {C.DIETARY: 1}


def test_c16_provenance_of_each_record_is_checked(guard: Privguard) -> None:
    """C16: referral contacts "used only for the specific reason they were provided": a
    record bound to another purpose is dropped, with its reason."""
    referral = Provenance(P.MARKETING_EMAIL, Source.REFERRAL, bound=True)
    rows = [(contact(1), {"email": "a@example.com", "referred": True}), (contact(2), lead(2))]
    result = guard.disclose(
        rows,
        to=MAILER,
        purpose=P.SERVICE,
        provenance_of=lambda record: referral if record.get("referred") else None,
    )
    assert result.subjects == (contact(2),)
    assert result.dropped == {"purpose_bound": 1}


def test_nested_records_are_reduced_at_every_depth(guard: Privguard) -> None:
    record = {
        "contact": {"email": "a@example.com", "phone": "+49 30 1234567"},
        "sessions": [{"title": "Keynote", "note": "ping a@example.org"}, {"title": "Lab"}],
        "billing": {"card_number": CARD_TEXT, "iban": "DE89 3704 0044 0532 0130 00"},
    }
    result = guard.disclose([(contact(1), record)], to=MAILER, purpose=P.SERVICE)
    assert result.records == (
        {
            "contact": {"email": "a@example.com"},
            "sessions": [{"title": "Keynote"}, {"title": "Lab"}],
            "billing": {},
        },
    )
    assert result.withheld == {C.PHONE: 1, C.CARD: 1, C.IBAN: 1}
    assert result.undeclared == 1


CARD_TEXT = "4111 1111 1111 1111"
