"""The foundation, proven clause by clause (``/work/shared/policy/CLAUSES.md``).

Each test is named after the clause it proves and quotes it. They use the default policy,
the public API and a real store: every store ``privguard._stores`` exposes (memory, and
SQLite when it is there), so a clause holds whichever store a deployment picks.
``docs/policy-map.md`` points at these tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import privguard._stores as _stores
from privguard import (
    PLATFORM,
    Basis,
    Categories,
    ConsentLedger,
    ConsentMethod,
    ConsentRequired,
    Decider,
    Evidence,
    MemoryStore,
    Policy,
    PolicyError,
    Provenance,
    PurposeDenied,
    Purposes,
    Reason,
    RecipientKind,
    Rule,
    Scope,
    Source,
    Store,
    Subject,
    SubjectKind,
    UnknownCategory,
    UnknownPurpose,
)

POLICY = Policy.default()
VIS = (SubjectKind.VISITOR,)


def _store_factories() -> dict[str, Callable[[Path], Store]]:
    factories: dict[str, Callable[[Path], Store]] = {"memory": lambda tmp: MemoryStore()}
    sqlite = getattr(_stores, "SQLiteStore", None)
    if sqlite is not None:
        factories["sqlite"] = lambda tmp: sqlite(tmp / "clauses.db")
    return factories


STORES = _store_factories()


@pytest.fixture(params=sorted(STORES))
def clause_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = STORES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ledger(clause_store: Store) -> ConsentLedger:
    return ConsentLedger(clause_store, POLICY)


@pytest.fixture
def decider(ledger: ConsentLedger) -> Decider:
    return Decider(POLICY, ledger)


def evidence(subject: Subject, notice: str = POLICY.version) -> Evidence:
    return Evidence(
        method=ConsentMethod.FORM,
        actor=subject.id,
        notice_version=notice,
        jurisdiction=subject.jurisdiction,
        request_trace="trace-1f2e",
    )


def contact(id: str = "bc-1", tenant: str = "acme") -> Subject:
    return Subject.business_contact(id, tenant=tenant, jurisdiction="DE")


# -- data and subjects ---------------------------------------------------------------------


class TestC01SubjectKinds:
    """C01: "Three classes: Customers, Customer Business Contacts, Visitors": every subject
    has a kind; rules are per kind; visitor data is kept apart from customer data."""

    def test_c01_every_subject_has_one_of_three_kinds(self) -> None:
        subjects = [
            Subject.customer("u-1", tenant="acme"),
            Subject.business_contact("u-1", tenant="acme"),
            Subject.visitor("u-1"),
        ]
        assert [s.kind for s in subjects] == [
            SubjectKind.CUSTOMER,
            SubjectKind.BUSINESS_CONTACT,
            SubjectKind.VISITOR,
        ]
        with pytest.raises(PolicyError, match="subject kind"):
            Subject("u-1", "lead", "acme")  # type: ignore[arg-type]

    def test_c01_visitor_data_is_controlled_by_the_platform(self) -> None:
        assert Subject.visitor("v-1").controller == PLATFORM
        with pytest.raises(PolicyError, match="C01"):
            Subject("v-1", SubjectKind.VISITOR, "acme")
        with pytest.raises(PolicyError):
            Subject("c-1", SubjectKind.CUSTOMER, PLATFORM)
        with pytest.raises(PolicyError):
            Subject("bc-1", SubjectKind.BUSINESS_CONTACT, PLATFORM)

    def test_c01_rules_are_per_kind(self, decider: Decider) -> None:
        customer = Subject.customer("u-1", tenant="acme", jurisdiction="US")
        bc = Subject.business_contact("u-1", tenant="acme", jurisdiction="US")
        visitor = Subject.visitor("u-1", jurisdiction="US")
        email = [Categories.EMAIL]
        # Marketing e-mail: an opt-out for customers and visitors in the US, consent for
        # business contacts (whose data is the customer's, C06/C07).
        assert decider.check(customer, Purposes.MARKETING_EMAIL, email).allowed
        assert decider.check(visitor, Purposes.MARKETING_EMAIL, email).allowed
        assert decider.check(bc, Purposes.MARKETING_EMAIL, email).reason is Reason.CONSENT_MISSING
        # Providing the service: contract for customers and contacts, legitimate interest
        # for visitors (who have no contract).
        bases = {s.kind: decider.check(s, Purposes.SERVICE).basis for s in (customer, bc, visitor)}
        assert bases == {
            SubjectKind.CUSTOMER: Basis.CONTRACT,
            SubjectKind.BUSINESS_CONTACT: Basis.CONTRACT,
            SubjectKind.VISITOR: Basis.LEGITIMATE_INTEREST,
        }

    def test_c01_visitor_data_is_kept_apart(self, ledger: ConsentLedger, decider: Decider) -> None:
        customer = Subject.customer("u-1", tenant="acme", jurisdiction="DE")
        visitor = Subject.visitor("u-1", jurisdiction="DE")
        assert customer.key != visitor.key
        ledger.grant(visitor, Purposes.MARKETING_EMAIL, evidence=evidence(visitor))
        assert decider.check(visitor, Purposes.MARKETING_EMAIL, [Categories.EMAIL]).allowed
        denied = decider.check(customer, Purposes.MARKETING_EMAIL, [Categories.EMAIL])
        assert denied.reason is Reason.CONSENT_MISSING
        assert ledger.history(customer) == ()
        assert [e.controller for e in ledger.history(visitor)] == [PLATFORM]


class TestC05Controller:
    """C05: "Data about a business contact is under the control of the Customer (tenant)":
    every record carries its controller; one tenant can never read, export or disclose
    another tenant's contacts through the SDK."""

    def test_c05_another_tenant_is_refused(self, decider: Decider) -> None:
        subject = contact(tenant="acme")
        own = decider.check(subject, Purposes.SERVICE, [Categories.EMAIL], controller="acme")
        assert own.allowed
        for purpose in (Purposes.SERVICE, Purposes.LEGAL_DISCLOSURE, Purposes.EXHIBITOR_DISCLOSURE):
            other = decider.check(subject, purpose, [Categories.EMAIL], controller="globex")
            assert not other.allowed
            assert other.reason is Reason.CROSS_TENANT
        with pytest.raises(PurposeDenied) as info:
            decider.check(subject, Purposes.SERVICE, controller="globex").raise_for_denial()
        assert info.value.reason == "cross_tenant"
        assert not isinstance(info.value, ConsentRequired)

    def test_c05_the_same_id_under_two_tenants_has_separate_consents(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        at_acme = contact("bc-1", tenant="acme")
        at_globex = contact("bc-1", tenant="globex")
        ledger.grant(at_acme, Purposes.MARKETING_EMAIL, evidence=evidence(at_acme))
        assert decider.check(at_acme, Purposes.MARKETING_EMAIL).allowed
        assert decider.check(at_globex, Purposes.MARKETING_EMAIL).reason is Reason.CONSENT_MISSING
        assert ledger.history(at_globex) == ()
        assert {e.controller for e in ledger.history(at_acme)} == {"acme"}
        # A withdrawal at one tenant leaves the other alone.
        ledger.grant(at_globex, Purposes.MARKETING_EMAIL, evidence=evidence(at_globex))
        ledger.withdraw(at_acme, Purposes.MARKETING_EMAIL, evidence=evidence(at_acme))
        assert decider.check(at_globex, Purposes.MARKETING_EMAIL).allowed
        assert not decider.check(at_acme, Purposes.MARKETING_EMAIL).allowed

    def test_c05_provenance_is_kept_per_tenant(self, ledger: ConsentLedger) -> None:
        at_acme = contact("bc-1", tenant="acme")
        at_globex = contact("bc-1", tenant="globex")
        record = ledger.record_collection(
            at_acme, [Categories.EMAIL], Provenance(Purposes.SERVICE, Source.FORM)
        )
        assert record.controller == "acme"
        assert ledger.collections(at_acme) == (record,)
        assert ledger.collections(at_globex) == ()


# -- purposes and consent ------------------------------------------------------------------


def test_c06_business_contact_data_only_for_service_improvement_or_law(decider: Decider) -> None:
    """C06: "Business-contact data is used only to provide the contracted service, to improve
    the services, or as required or permitted by law": any other purpose is denied unless
    C07 (explicit consent)."""
    subject = contact()
    service = decider.check(
        subject, Purposes.SERVICE, [Categories.EMAIL, Categories.NAME], recipient="processor"
    )
    assert service.allowed
    assert service.basis is Basis.CONTRACT
    assert service.consent_id is None
    assert decider.check(subject, Purposes.OPERATIONS).allowed  # a sub-purpose of the service
    improve = decider.check(subject, Purposes.IMPROVE, [Categories.CLICKS])
    assert (improve.allowed, improve.basis) == (True, Basis.LEGITIMATE_INTEREST)
    assert decider.check(subject, Purposes.LEGAL, recipient="authority").allowed
    assert decider.check(subject, Purposes.FRAUD).allowed
    for other in (
        Purposes.MARKETING_EMAIL,
        Purposes.ADVERTISING,
        Purposes.PERSONALIZE,
        Purposes.PARTNER_SHARING,
        "sales",
        "train_ai_system",
    ):
        decision = decider.check(subject, other)
        assert not decision.allowed, other
        assert decision.reason is Reason.CONSENT_MISSING, other
    # Improvement may not pull contact details, and the service goes to service recipients only.
    assert (
        decider.check(subject, Purposes.IMPROVE, [Categories.EMAIL]).reason
        is Reason.CATEGORY_NOT_PERMITTED
    )
    assert (
        decider.check(subject, Purposes.SERVICE, recipient="partner").reason
        is Reason.RECIPIENT_NOT_PERMITTED
    )


def test_c07_other_purposes_only_with_explicit_consent_and_withdrawal_stops_the_next_check(
    ledger: ConsentLedger, decider: Decider
) -> None:
    """C07: "Other purposes only with explicit consent": explicit, recorded (who, what
    purpose, when, policy version, evidence), withdrawable; a withdrawn consent stops the
    next request."""
    subject = contact()
    purpose = Purposes.MARKETING_EMAIL
    before = decider.check(subject, purpose, [Categories.EMAIL])
    assert (before.allowed, before.reason, before.basis) == (
        False,
        Reason.CONSENT_MISSING,
        Basis.CONSENT,
    )
    assert before.needs_consent
    with pytest.raises(ConsentRequired) as info:
        before.raise_for_denial()
    assert (info.value.purpose, info.value.reason) == (purpose, "consent_missing")

    granted = ledger.grant(subject, purpose, evidence=evidence(subject))
    after = decider.check(subject, purpose, [Categories.EMAIL])
    assert after.allowed
    assert after.consent_id == granted.consent_id
    after.raise_for_denial()  # no error

    ledger.withdraw(subject, purpose, evidence=evidence(subject))
    withdrawn = decider.check(subject, purpose, [Categories.EMAIL])
    assert (withdrawn.allowed, withdrawn.reason) == (False, Reason.CONSENT_WITHDRAWN)
    with pytest.raises(ConsentRequired) as info:
        withdrawn.raise_for_denial()
    assert info.value.reason == "consent_withdrawn"

    # Recorded: who, what, when, under which policy version, with evidence.
    grant, withdrawal = ledger.history(subject)
    assert (grant.action, withdrawal.action) == ("grant", "withdraw")
    assert grant.purpose == purpose
    assert grant.policy_version == POLICY.version
    assert grant.evidence.actor == subject.id
    assert grant.evidence.method is ConsentMethod.FORM
    assert grant.at <= withdrawal.at


@pytest.mark.parametrize(
    "subject",
    [
        contact(),
        Subject.customer("c-1", tenant="acme", jurisdiction="US"),
        Subject.visitor("v-1", jurisdiction="US"),
    ],
    ids=lambda s: s.kind.value,
)
def test_c08_no_sale_and_no_promotional_sharing_even_with_consent(
    subject: Subject, ledger: ConsentLedger, decider: Decider
) -> None:
    """C08: "SalesExpert does not sell personal data of business contacts; shares nothing with
    third parties for promotional purposes": purpose `sale` and promotional sharing with
    third parties are denied always, consent or not."""
    never = (Purposes.SALE, Purposes.PROMOTIONAL_SHARING, "marketing.advertising.third_party")
    for purpose in never:
        ledger.grant(subject, purpose, evidence=evidence(subject))
    ledger.grant(subject, Purposes.SHARING, evidence=evidence(subject))  # a parent, too
    for purpose in never:
        for recipient in (None, "partner", "reseller", "acquirer"):
            decision = decider.check(subject, purpose, [Categories.EMAIL], recipient=recipient)
            assert not decision.allowed
            assert decision.reason is Reason.FORBIDDEN
            assert decision.basis is Basis.FORBIDDEN
            assert "C08" in decision.clauses
        with pytest.raises(PurposeDenied) as info:
            decider.check(subject, purpose).raise_for_denial()
        assert not isinstance(info.value, ConsentRequired)  # consent cannot help


class TestC09EventCommunications:
    """C09: "Registration e-mail is used to send information and announcements relating to
    *that* event": purpose scoped to the event; mailing about another event is denied."""

    REGISTERED = Provenance(
        Purposes.EVENT_COMMUNICATIONS, Source.FORM, scope=Scope(event="E1"), bound=False
    )

    def test_c09_mail_about_the_event_of_registration_is_allowed(self, decider: Decider) -> None:
        decision = decider.check(
            contact(),
            Purposes.EVENT_COMMUNICATIONS,
            [Categories.EMAIL, Categories.NAME],
            recipient="processor",
            scope=Scope(event="E1"),
            provenance=self.REGISTERED,
        )
        assert decision.allowed
        assert decision.basis is Basis.CONTRACT
        assert "C09" in decision.clauses

    def test_c09_mail_about_another_event_is_denied(self, decider: Decider) -> None:
        for scope in (Scope(event="E2"), Scope(), Scope(session="E1")):
            decision = decider.check(
                contact(),
                Purposes.EVENT_COMMUNICATIONS,
                [Categories.EMAIL],
                scope=scope,
                provenance=self.REGISTERED,
            )
            assert (decision.allowed, decision.reason) == (False, Reason.OUT_OF_SCOPE), scope

    def test_c09_consent_does_not_widen_the_event(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        ledger.grant(subject, Purposes.EVENT_COMMUNICATIONS, evidence=evidence(subject))
        decision = decider.check(
            subject,
            Purposes.EVENT_COMMUNICATIONS,
            [Categories.EMAIL],
            scope=Scope(event="E2"),
            provenance=self.REGISTERED,
        )
        assert decision.reason is Reason.OUT_OF_SCOPE

    def test_c09_without_provenance_the_event_is_unknown(self, decider: Decider) -> None:
        decision = decider.check(
            contact(), Purposes.EVENT_COMMUNICATIONS, [Categories.EMAIL], scope=Scope(event="E1")
        )
        assert (decision.allowed, decision.reason) == (False, Reason.PROVENANCE_REQUIRED)

    def test_c09_only_the_registration_contact_data(self, decider: Decider) -> None:
        decision = decider.check(
            contact(),
            Purposes.EVENT_COMMUNICATIONS,
            [Categories.EMAIL, Categories.INTERESTS],
            scope=Scope(event="E1"),
            provenance=self.REGISTERED,
        )
        assert decision.reason is Reason.CATEGORY_NOT_PERMITTED
        assert decision.denied_categories == (Categories.INTERESTS,)


class TestC12ExhibitorDisclosure:
    """C12: "Disclosure to organizers, exhibitors or attendees only as directed by the
    Customer or consented to by the contact": consent per exhibitor before any lead export;
    only the consented categories go. (The decision; the export and its disclosure record
    come with the disclosures issue.)"""

    LEAD = (Categories.NAME, Categories.EMAIL, Categories.JOB_TITLE, Categories.SURVEY)
    AT_X = Scope(event="E1", exhibitor="X")
    AT_Y = Scope(event="E1", exhibitor="Y")

    def check(self, decider: Decider, scope: Scope, **kwargs: object) -> Reason:
        kwargs.setdefault("recipient", RecipientKind.EXHIBITOR)
        kwargs.setdefault("categories", self.LEAD)
        decision = decider.check(contact(), Purposes.EXHIBITOR_DISCLOSURE, scope=scope, **kwargs)  # type: ignore[arg-type]
        return decision.reason

    def test_c12_needs_consent_for_that_exhibitor_at_that_event(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        assert self.check(decider, self.AT_X) is Reason.CONSENT_MISSING
        ledger.grant(
            subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=self.AT_X
        )
        assert self.check(decider, self.AT_X) is Reason.ALLOWED
        # Consent for X covers neither Y, nor X at another event.
        assert self.check(decider, self.AT_Y) is Reason.CONSENT_MISSING
        assert self.check(decider, Scope(event="E2", exhibitor="X")) is Reason.CONSENT_MISSING

    def test_c12_the_check_must_name_event_and_exhibitor(self, decider: Decider) -> None:
        assert self.check(decider, Scope(event="E1")) is Reason.SCOPE_REQUIRED
        assert self.check(decider, Scope(exhibitor="X")) is Reason.SCOPE_REQUIRED
        assert self.check(decider, Scope()) is Reason.SCOPE_REQUIRED

    def test_c12_a_consent_that_names_no_exhibitor_is_not_enough(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        for scope in (Scope(event="E1"), Scope()):
            ledger.grant(
                subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=scope
            )
        ledger.grant(subject, Purposes.SHARING, evidence=evidence(subject))
        assert self.check(decider, self.AT_X) is Reason.CONSENT_MISSING

    def test_c12_withdrawal_at_event_level_ends_each_exhibitors_consent(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        for scope in (self.AT_X, self.AT_Y, Scope(event="E2", exhibitor="X")):
            ledger.grant(
                subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=scope
            )
        assert self.check(decider, self.AT_X) is Reason.ALLOWED
        assert self.check(decider, self.AT_Y) is Reason.ALLOWED
        ledger.withdraw(
            subject,
            Purposes.EXHIBITOR_DISCLOSURE,
            evidence=evidence(subject),
            scope=Scope(event="E1"),
        )
        assert self.check(decider, self.AT_X) is Reason.CONSENT_WITHDRAWN
        assert self.check(decider, self.AT_Y) is Reason.CONSENT_WITHDRAWN
        assert self.check(decider, Scope(event="E2", exhibitor="X")) is Reason.ALLOWED
        # The state says plainly what holds: each exhibitor's grant got its own withdrawal.
        withdrawn = {e.scope for e in ledger.history(subject) if e.action == "withdraw"}
        assert withdrawn == {Scope(event="E1"), self.AT_X, self.AT_Y}

    def test_c12_card_data_never_goes_to_exhibitors(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        ledger.grant(
            subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=self.AT_X
        )
        for card in (Categories.CARD, Categories.CARD_EXPIRY, Categories.FINANCIAL):
            decision = decider.check(
                subject,
                Purposes.EXHIBITOR_DISCLOSURE,
                [Categories.NAME, card],
                recipient="exhibitor",
                scope=self.AT_X,
            )
            assert decision.reason is Reason.CATEGORY_NOT_PERMITTED
            assert decision.denied_categories == (card,)

    def test_c12_only_to_exhibitors_organizers_or_attendees(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        ledger.grant(
            subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=self.AT_X
        )
        for kind in ("exhibitor", "organizer", "attendee"):
            assert self.check(decider, self.AT_X, recipient=kind) is Reason.ALLOWED
        for kind in ("partner", "reseller", "analytics_provider", "acquirer"):
            assert self.check(decider, self.AT_X, recipient=kind) is (
                Reason.RECIPIENT_NOT_PERMITTED
            )

    def test_c12_allowed_decisions_carry_the_card_protections(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        granted = ledger.grant(
            subject, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(subject), scope=self.AT_X
        )
        decision = decider.check(
            subject,
            Purposes.EXHIBITOR_DISCLOSURE,
            self.LEAD,
            recipient="exhibitor",
            scope=self.AT_X,
        )
        assert decision.consent_id == granted.consent_id
        assert Categories.CARD in {p.category for p in decision.obligations}


class TestC15LegalAndFraud:
    """C15: "Disclosure required by law or to authorities, also abroad; fraud prevention":
    purpose `legal` / `fraud` allowed without consent (the decision names its legal basis;
    the disclosure record comes with the disclosures issue)."""

    @pytest.mark.parametrize("jurisdiction", ["DE", "US", "BR", ""])
    def test_c15_disclosure_to_an_authority_needs_no_consent(
        self, jurisdiction: str, decider: Decider
    ) -> None:
        for subject in (
            Subject.business_contact("bc-1", tenant="acme", jurisdiction=jurisdiction),
            Subject.customer("c-1", tenant="acme", jurisdiction=jurisdiction),
            Subject.visitor("v-1", jurisdiction=jurisdiction),
        ):
            for purpose in (Purposes.LEGAL_DISCLOSURE, Purposes.LEGAL):
                decision = decider.check(
                    subject,
                    purpose,
                    [Categories.NAME, Categories.EMAIL, Categories.CARD, Categories.IP_ADDRESS],
                    recipient="authority",
                )
                assert decision.allowed, (subject.kind, purpose)
                assert decision.basis is Basis.LEGAL_OBLIGATION
                assert decision.consent_id is None
                assert "C15" in decision.clauses

    def test_c15_a_withdrawal_cannot_stop_a_legal_disclosure(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        subject = contact()
        ledger.withdraw(subject, Purposes.SHARING, evidence=evidence(subject))
        ledger.withdraw(subject, Purposes.ESSENTIAL, evidence=evidence(subject))
        assert decider.check(subject, Purposes.LEGAL_DISCLOSURE, recipient="authority").allowed
        assert decider.check(subject, Purposes.FRAUD).allowed

    def test_c15_fraud_prevention_needs_no_consent(self, decider: Decider) -> None:
        for recipient in (None, "processor", "payment_processor", "authority"):
            decision = decider.check(
                contact(),
                Purposes.FRAUD,
                [Categories.CARD, Categories.IP_ADDRESS],
                recipient=recipient,
            )
            assert decision.allowed, recipient
            assert decision.basis is Basis.LEGITIMATE_INTEREST

    def test_c15_legal_disclosure_goes_to_authorities_only(self, decider: Decider) -> None:
        for recipient in ("partner", "exhibitor", "acquirer"):
            decision = decider.check(contact(), Purposes.LEGAL_DISCLOSURE, recipient=recipient)
            assert decision.reason is Reason.RECIPIENT_NOT_PERMITTED


class TestC16ReferralContacts:
    """C16: "Referral contacts (name, work email, organization, phone, city, ZIP) are used
    only for the specific reason they were provided": purpose bound at collection, other
    purposes denied."""

    REFERRAL = (
        Categories.NAME,
        Categories.EMAIL,
        Categories.ORGANIZATION,
        Categories.PHONE,
        Categories.CITY,
        Categories.POSTAL_CODE,
    )
    BOUND = Provenance(Purposes.MARKETING_EMAIL, Source.REFERRAL, bound=True)

    def test_c16_referral_data_serves_its_own_purpose(self, decider: Decider) -> None:
        referred = Subject.visitor("ref-1", jurisdiction="US")
        decision = decider.check(
            referred,
            Purposes.MARKETING_EMAIL,
            self.REFERRAL,
            recipient="processor",
            provenance=self.BOUND,
        )
        assert decision.allowed

    def test_c16_referral_data_is_denied_for_other_purposes(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        referred = Subject.visitor("ref-1", jurisdiction="US")
        ledger.grant(referred, Purposes.PARTNER_SHARING, evidence=evidence(referred))
        for purpose in (
            Purposes.ANALYTICS,
            Purposes.SERVICE,
            Purposes.ADVERTISING,
            Purposes.MARKETING,  # the parent is wider than the reason given
            Purposes.PARTNER_SHARING,
        ):
            decision = decider.check(referred, purpose, provenance=self.BOUND)
            assert (decision.allowed, decision.reason) == (False, Reason.PURPOSE_BOUND), purpose

    def test_c16_a_bound_purpose_covers_its_sub_purposes(self, decider: Decider) -> None:
        referred = Subject.visitor("ref-1", jurisdiction="US")
        bound = Provenance(Purposes.MARKETING, Source.REFERRAL, bound=True)
        assert decider.check(referred, Purposes.MARKETING_EMAIL, provenance=bound).allowed

    def test_c16_unbound_data_is_not_restricted(self, decider: Decider) -> None:
        visitor = Subject.visitor("v-1", jurisdiction="US")
        unbound = Provenance(Purposes.MARKETING_EMAIL, Source.FORM)
        assert decider.check(visitor, Purposes.ANALYTICS, provenance=unbound).allowed


def test_c17_records_carry_their_source(ledger: ConsentLedger) -> None:
    """C17: "Data from third-party sources (public databases, partners, social platforms)":
    records carry their source (provenance), and it stays queryable."""
    visitor = Subject.visitor("v-1", jurisdiction="US")
    made = [
        ledger.record_collection(
            visitor,
            [Categories.NAME, Categories.WORKPLACE],
            Provenance(Purposes.MARKETING, Source.PUBLIC_DATABASE),
        ),
        ledger.record_collection(
            visitor,
            [Categories.EMAIL],
            Provenance(
                Purposes.MARKETING_EMAIL,
                Source.PARTNER,
                scope=Scope(event="webinar-7"),
                bound=True,
                policy_version="2019-12-17",
            ),
        ),
        ledger.record_collection(
            visitor,
            [Categories.SOCIAL_ACCOUNT_ID, Categories.SELF_IMAGE],
            Provenance(Purposes.SERVICE, Source.SOCIAL_PLATFORM),
        ),
    ]
    got = ledger.collections(visitor)
    assert got == tuple(made)
    assert [r.source for r in got] == [
        Source.PUBLIC_DATABASE,
        Source.PARTNER,
        Source.SOCIAL_PLATFORM,
    ]
    partner = got[1]
    assert partner.categories == (Categories.EMAIL,)
    assert partner.purpose == Purposes.MARKETING_EMAIL
    assert partner.scope == Scope(event="webinar-7")
    assert partner.bound
    assert all(r.policy_version == POLICY.version for r in got)  # the default when unnamed
    assert all(r.controller == PLATFORM and r.subject_id == "v-1" for r in got)
    assert ledger.collections(Subject.visitor("v-2")) == ()
    with pytest.raises(UnknownCategory):
        ledger.record_collection(visitor, ["user.shoe_size"], Provenance("marketing", Source.FORM))
    with pytest.raises(UnknownPurpose):
        ledger.record_collection(visitor, [Categories.EMAIL], Provenance("gossip", Source.FORM))
    with pytest.raises(PolicyError, match="source"):
        Provenance(Purposes.MARKETING, "rumour")  # type: ignore[arg-type]


class TestC18VisitorMarketingEmail:
    """C18: "Visitor marketing e-mail: explicit consent first where the jurisdiction requires
    it": opt-in (e.g. EEA) versus opt-out elsewhere."""

    EMAIL = (Categories.EMAIL, Categories.NAME)

    def check(self, decider: Decider, visitor: Subject) -> Reason:
        decision = decider.check(
            visitor, Purposes.MARKETING_EMAIL, self.EMAIL, recipient="processor"
        )
        return decision.reason

    @pytest.mark.parametrize("jurisdiction", ["US", "US-CA", "BR"])
    def test_c18_opt_out_until_the_visitor_objects(
        self, jurisdiction: str, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1", jurisdiction=jurisdiction)
        decision = decider.check(visitor, Purposes.MARKETING_EMAIL, self.EMAIL)
        assert decision.allowed
        assert decision.basis is Basis.LEGITIMATE_INTEREST
        ledger.withdraw(visitor, Purposes.MARKETING_EMAIL, evidence=evidence(visitor))
        objected = decider.check(visitor, Purposes.MARKETING_EMAIL, self.EMAIL)
        assert (objected.allowed, objected.reason) == (False, Reason.OBJECTED)
        with pytest.raises(PurposeDenied) as info:
            objected.raise_for_denial()
        assert info.value.reason == "objected"

    @pytest.mark.parametrize("jurisdiction", ["DE", "FR", "NO", "DE-BY", "GB"])
    def test_c18_consent_first_in_the_eea_and_the_uk(
        self, jurisdiction: str, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1", jurisdiction=jurisdiction)
        denied = decider.check(visitor, Purposes.MARKETING_EMAIL, self.EMAIL)
        assert (denied.reason, denied.basis) == (Reason.CONSENT_MISSING, Basis.CONSENT)
        ledger.grant(visitor, Purposes.MARKETING_EMAIL, evidence=evidence(visitor))
        assert self.check(decider, visitor) is Reason.ALLOWED
        ledger.withdraw(visitor, Purposes.MARKETING_EMAIL, evidence=evidence(visitor))
        assert self.check(decider, visitor) is Reason.CONSENT_WITHDRAWN

    def test_c18_an_unknown_jurisdiction_gets_the_strictest_rule(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1")
        assert visitor.jurisdiction == ""
        decision = decider.check(visitor, Purposes.MARKETING_EMAIL, self.EMAIL)
        assert (decision.reason, decision.basis) == (Reason.CONSENT_MISSING, Basis.CONSENT)
        ledger.grant(visitor, Purposes.MARKETING_EMAIL, evidence=evidence(visitor))
        assert self.check(decider, visitor) is Reason.ALLOWED

    @pytest.mark.parametrize("jurisdiction", ["Germany", "de_DE", " DE", "DE ", "D", "DE-"])
    def test_c18_a_malformed_jurisdiction_is_refused_not_taken_as_opt_out(
        self, jurisdiction: str
    ) -> None:
        # Were it accepted, "Germany" would match no group and get the US opt-out.
        with pytest.raises(PolicyError, match="ISO 3166"):
            Subject.visitor("v-1", jurisdiction=jurisdiction)

    def test_c18_jurisdiction_codes_are_case_insensitive(self, decider: Decider) -> None:
        for code in ("de", "De", "de-by"):
            visitor = Subject.visitor("v-1", jurisdiction=code)
            assert visitor.jurisdiction == code.upper()
            assert self.check(decider, visitor) is Reason.CONSENT_MISSING

    def test_c18_unsubscribing_from_marketing_stops_marketing_email(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1", jurisdiction="US")
        ledger.withdraw(visitor, Purposes.MARKETING, evidence=evidence(visitor))
        assert self.check(decider, visitor) is Reason.OBJECTED


class TestC19PartnerSharingAfterMarketingEvent:
    """C19: "Visitor data shared with third parties after a marketing event only with
    explicit consent or where the law permits": consent check before that disclosure (the
    decision; the disclosure record comes with the disclosures issue)."""

    def check(self, decider: Decider, visitor: Subject, scope: Scope, **kw: object) -> Reason:
        kw.setdefault("recipient", "partner")
        decision = decider.check(
            visitor,
            Purposes.PARTNER_SHARING,
            [Categories.NAME, Categories.EMAIL, Categories.WORKPLACE],
            scope=scope,
            **kw,  # type: ignore[arg-type]
        )
        return decision.reason

    @pytest.mark.parametrize("jurisdiction", ["US", "DE", ""])
    def test_c19_needs_consent_scoped_to_the_event(
        self, jurisdiction: str, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1", jurisdiction=jurisdiction)
        webinar = Scope(event="webinar-7")
        assert self.check(decider, visitor, webinar) is Reason.CONSENT_MISSING
        ledger.grant(visitor, Purposes.PARTNER_SHARING, evidence=evidence(visitor), scope=webinar)
        assert self.check(decider, visitor, webinar) is Reason.ALLOWED
        assert self.check(decider, visitor, webinar, recipient="reseller") is Reason.ALLOWED
        assert self.check(decider, visitor, Scope(event="webinar-8")) is Reason.CONSENT_MISSING
        ledger.withdraw(
            visitor, Purposes.PARTNER_SHARING, evidence=evidence(visitor), scope=webinar
        )
        assert self.check(decider, visitor, webinar) is Reason.CONSENT_WITHDRAWN

    def test_c19_the_check_must_name_the_event(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        visitor = Subject.visitor("v-1", jurisdiction="US")
        ledger.grant(visitor, Purposes.PARTNER_SHARING, evidence=evidence(visitor))
        assert self.check(decider, visitor, Scope()) is Reason.SCOPE_REQUIRED
        # An unscoped consent does not stand in for consent at the event.
        assert self.check(decider, visitor, Scope(event="webinar-7")) is Reason.CONSENT_MISSING

    def test_c19_only_partners_and_resellers(self, ledger: ConsentLedger, decider: Decider) -> None:
        visitor = Subject.visitor("v-1", jurisdiction="US")
        webinar = Scope(event="webinar-7")
        ledger.grant(visitor, Purposes.PARTNER_SHARING, evidence=evidence(visitor), scope=webinar)
        for kind in ("exhibitor", "analytics_provider", "acquirer"):
            assert self.check(decider, visitor, webinar, recipient=kind) is (
                Reason.RECIPIENT_NOT_PERMITTED
            )


# -- decisions that exist ahead of their edges (C10, C11, C13, C14, C20, C21) -------------
# These clauses are not enforced end to end yet (redaction, outbound guard, disclosure
# records, preferences come later); the tests below prove only the decision part.


def test_c10_decision_card_data_goes_to_payment_processors(decider: Decider) -> None:
    """C10: "Card data is passed to payment card processors to validate and complete
    payment" (decision part: recipients and obligations; masking is the redaction issue)."""
    subject = contact()
    card = [Categories.CARD, Categories.CARD_EXPIRY, Categories.NAME]
    to_psp = decider.check(subject, Purposes.PAYMENT, card, recipient="payment_processor")
    assert to_psp.allowed
    assert to_psp.obligations == ()  # readable: nothing to mask for the processor
    assert (
        decider.check(subject, Purposes.PAYMENT, card, recipient="processor").reason
        is Reason.RECIPIENT_NOT_PERMITTED
    )
    billing = decider.check(subject, Purposes.BILLING, card, recipient="processor")
    assert billing.allowed
    masked = {p.category: p.readable_by for p in billing.obligations}
    assert masked[Categories.CARD] == (RecipientKind.PAYMENT_PROCESSOR,)


def test_c11_decision_social_provider(decider: Decider) -> None:
    """C11: "Social login or sharing passes information to the social provider" (decision
    part; the disclosure record comes with the disclosures issue)."""
    subject = contact()
    shared = [Categories.NAME, Categories.EMAIL, Categories.SOCIAL_ACCOUNT_ID]
    assert decider.check(
        subject, Purposes.SOCIAL_SHARING, shared, recipient="social_provider"
    ).allowed
    assert (
        decider.check(subject, Purposes.SOCIAL_SHARING, shared, recipient="partner").reason
        is Reason.RECIPIENT_NOT_PERMITTED
    )
    assert (
        decider.check(
            subject, Purposes.SOCIAL_SHARING, [Categories.CARD], recipient="social_provider"
        ).reason
        is Reason.CATEGORY_NOT_PERMITTED
    )


def test_c13_decision_affiliates_and_processors(decider: Decider) -> None:
    """C13: "Disclosure to subsidiaries/affiliates, contractors and processors as reasonably
    necessary" (decision part: only declared recipient kinds for the service)."""
    subject = contact()
    for kind in ("processor", "affiliate", "organizer"):
        assert decider.check(subject, Purposes.SERVICE, recipient=kind).allowed, kind
    for kind in ("partner", "acquirer", "analytics_provider"):
        assert not decider.check(subject, Purposes.SERVICE, recipient=kind).allowed, kind
    visitor = Subject.visitor("v-1", jurisdiction="US")
    assert decider.check(visitor, Purposes.SERVICE, recipient="reseller").allowed


def test_c14_decision_transfer_to_an_acquirer(decider: Decider) -> None:
    """C14: "Transfer in a merger or sale of assets" (decision part; the recorded bulk
    disclosure comes with the disclosures issue)."""
    for subject in (contact(), Subject.visitor("v-1", jurisdiction="DE")):
        ok = decider.check(subject, Purposes.CORPORATE_TRANSACTION, recipient="acquirer")
        assert ok.allowed
        denied = decider.check(subject, Purposes.CORPORATE_TRANSACTION, recipient="partner")
        assert denied.reason is Reason.RECIPIENT_NOT_PERMITTED


def test_c20_decision_unsubscribe_is_an_objection(ledger: ConsentLedger, decider: Decider) -> None:
    """C20: "Customers and visitors can choose e-mail topics or unsubscribe" (the objection
    path only; per-topic preferences come with the analytics/opt-out issue)."""
    customer = Subject.customer("c-1", tenant="acme", jurisdiction="US")
    assert decider.check(customer, Purposes.MARKETING_EMAIL, [Categories.EMAIL]).allowed
    ledger.withdraw(customer, Purposes.MARKETING_EMAIL, evidence=evidence(customer))
    denied = decider.check(customer, Purposes.MARKETING_EMAIL, [Categories.EMAIL])
    assert denied.reason is Reason.OBJECTED


def test_c21_decision_analytics_gets_no_direct_identifiers(decider: Decider) -> None:
    """C21: "Third-party analytics are used without storing personal data on those
    platforms" (decision part: direct identifiers are not permitted categories)."""
    visitor = Subject.visitor("v-1", jurisdiction="US")
    usage = [Categories.BROWSING_HISTORY, Categories.PSEUDONYMOUS_ID, Categories.BROWSER]
    assert decider.check(visitor, Purposes.ANALYTICS, usage, recipient="analytics_provider").allowed
    for identifier in (
        Categories.EMAIL,
        Categories.NAME,
        Categories.PHONE,
        Categories.CARD,
        Categories.IP_ADDRESS,
    ):
        decision = decider.check(
            visitor, Purposes.ANALYTICS, [identifier], recipient="analytics_provider"
        )
        assert decision.reason is Reason.CATEGORY_NOT_PERMITTED, identifier


def test_c22_decision_an_objection_stops_analytics(ledger: ConsentLedger, decider: Decider) -> None:
    """C22: "You may opt out of Google Analytics" (decision part: the analytics purpose is
    an opt-out; suppressing tags and hits, and GPC, come with the analytics issue)."""
    for subject in (
        Subject.visitor("v-1", jurisdiction="US"),
        Subject.customer("c-1", tenant="acme", jurisdiction="DE"),
        contact(),
    ):
        usage = [Categories.BROWSING_HISTORY]
        assert decider.check(subject, Purposes.ANALYTICS, usage).allowed
        ledger.withdraw(subject, Purposes.ANALYTICS, evidence=evidence(subject))
        denied = decider.check(subject, Purposes.ANALYTICS_REPORTING, usage)
        assert denied.reason is Reason.OBJECTED


# -- C34: the notice in effect at collection ------------------------------------------------


class TestC34PolicyVersions:
    """C34: "Data is used under the notice in effect when it was collected; materially less
    restrictive revisions need consent first": every record and consent carries the policy
    version; a less restrictive new version does not apply to old data without fresh
    consent."""

    PURPOSE = Purposes.PERSONALIZE
    CATS = (Categories.BROWSING_HISTORY, Categories.INTERESTS)
    V1 = POLICY.revise(version="v1", replace=[Rule(Purposes.PERSONALIZE, Basis.CONSENT, VIS)])
    V2 = V1.revise(
        version="v2", replace=[Rule(Purposes.PERSONALIZE, Basis.LEGITIMATE_INTEREST, VIS)]
    )

    @staticmethod
    def collected(version: str | None) -> Provenance:
        return Provenance(Purposes.SERVICE, Source.FORM, policy_version=version)

    def test_c34_a_less_restrictive_version_needs_fresh_consent_for_old_data(
        self, clause_store: Store
    ) -> None:
        ledger_v1 = ConsentLedger(clause_store, self.V1)
        ledger_v2 = ConsentLedger(clause_store, self.V2)
        decider = Decider(self.V2, ledger_v2)
        visitor = Subject.visitor("v-1", jurisdiction="US")

        def check(version: str | None) -> Reason:
            return decider.check(
                visitor, self.PURPOSE, self.CATS, provenance=self.collected(version)
            ).reason

        # Under v2 the purpose is legitimate interest: data collected under v2 may be used.
        assert check("v2") is Reason.ALLOWED
        # Data collected under v1 (consent only) or earlier may not, without fresh consent.
        for old in ("v1", POLICY.version, "v0-never-existed"):
            assert check(old) is Reason.FRESH_CONSENT_REQUIRED, old
        old_data = decider.check(visitor, self.PURPOSE, self.CATS, provenance=self.collected("v1"))
        assert old_data.basis is Basis.CONSENT
        with pytest.raises(ConsentRequired) as info:
            old_data.raise_for_denial()
        assert info.value.reason == "fresh_consent_required"

        # A consent given under v1 is not fresh.
        ledger_v1.grant(visitor, self.PURPOSE, evidence=evidence(visitor, notice="v1"))
        assert check("v1") is Reason.FRESH_CONSENT_REQUIRED
        # A consent recorded under v2 is.
        fresh = ledger_v2.grant(visitor, self.PURPOSE, evidence=evidence(visitor, notice="v2"))
        allowed = decider.check(visitor, self.PURPOSE, self.CATS, provenance=self.collected("v1"))
        assert allowed.allowed
        assert allowed.consent_id == fresh.consent_id
        assert [e.policy_version for e in ledger_v2.history(visitor)] == ["v1", "v2"]
        # ... and withdrawing it ends it.
        ledger_v2.withdraw(visitor, self.PURPOSE, evidence=evidence(visitor, notice="v2"))
        assert check("v1") is Reason.CONSENT_WITHDRAWN

    def test_c34_from_forbidden_to_allowed_needs_fresh_consent(self, clause_store: Store) -> None:
        v1 = POLICY.revise(version="v1", replace=[Rule(self.PURPOSE, Basis.FORBIDDEN, VIS)])
        v2 = v1.revise(version="v2", replace=[Rule(self.PURPOSE, Basis.LEGITIMATE_INTEREST, VIS)])
        ledger = ConsentLedger(clause_store, v2)
        decider = Decider(v2, ledger)
        visitor = Subject.visitor("v-1", jurisdiction="US")
        old = self.collected("v1")
        assert decider.check(visitor, self.PURPOSE, provenance=old).reason is (
            Reason.FRESH_CONSENT_REQUIRED
        )
        ledger.grant(visitor, self.PURPOSE, evidence=evidence(visitor, notice="v2"))
        assert decider.check(visitor, self.PURPOSE, provenance=old).allowed

    @pytest.mark.parametrize(
        ("stricter", "reason"),
        [(Basis.CONSENT, Reason.CONSENT_MISSING), (Basis.FORBIDDEN, Reason.FORBIDDEN)],
    )
    def test_c34_a_more_restrictive_version_applies_to_old_data_at_once(
        self, stricter: Basis, reason: Reason, clause_store: Store
    ) -> None:
        v1 = POLICY.revise(
            version="v1", replace=[Rule(self.PURPOSE, Basis.LEGITIMATE_INTEREST, VIS)]
        )
        v2 = v1.revise(version="v2", replace=[Rule(self.PURPOSE, stricter, VIS)])
        visitor = Subject.visitor("v-1", jurisdiction="US")
        old = self.collected("v1")
        assert (
            Decider(v1, ConsentLedger(clause_store, v1))
            .check(visitor, self.PURPOSE, provenance=old)
            .allowed
        )
        decider = Decider(v2, ConsentLedger(clause_store, v2))
        decision = decider.check(visitor, self.PURPOSE, provenance=old)
        assert (decision.allowed, decision.reason) == (False, reason)

    def test_c34_records_carry_the_policy_version(self, clause_store: Store) -> None:
        ledger = ConsentLedger(clause_store, self.V2)
        visitor = Subject.visitor("v-1", jurisdiction="US")
        record = ledger.grant(visitor, self.PURPOSE, evidence=evidence(visitor, notice="v2"))
        assert record.policy_version == "v2"
        (event,) = ledger.history(visitor)
        assert event.policy_version == "v2"
        assert event.evidence.notice_version == "v2"
        old = ledger.record_collection(visitor, [Categories.EMAIL], self.collected("v1"))
        new = ledger.record_collection(visitor, [Categories.EMAIL], self.collected(None))
        assert (old.policy_version, new.policy_version) == ("v1", "v2")
        decision = Decider(self.V2, ledger).check(visitor, Purposes.SERVICE)
        assert decision.policy_version == "v2"
