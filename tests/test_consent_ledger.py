"""The consent ledger (C07): evidence, append-only history, derived state, cache, fail closed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import privguard._stores as _stores
from privguard import (
    Basis,
    Categories,
    ConsentAction,
    ConsentEvent,
    ConsentLedger,
    ConsentMethod,
    ConsentRequired,
    Decider,
    Decision,
    Evidence,
    MemoryStore,
    Policy,
    PolicyError,
    PurposeDenied,
    Purposes,
    Reason,
    Scope,
    Store,
    StoreUnavailable,
    Subject,
    UnknownCategory,
    UnknownPurpose,
    UnknownRecipientKind,
)

POLICY = Policy.default()
EMAIL = Purposes.MARKETING_EMAIL  # consent-based for business contacts (C07)
CONTACT = Subject.business_contact("bc-1", tenant="acme", jurisdiction="DE")


def _store_factories() -> dict[str, Callable[[Path], Store]]:
    factories: dict[str, Callable[[Path], Store]] = {"memory": lambda tmp: MemoryStore()}
    sqlite = getattr(_stores, "SQLiteStore", None)
    if sqlite is not None:
        factories["sqlite"] = lambda tmp: sqlite(tmp / "ledger.db")
    return factories


STORES = _store_factories()


@pytest.fixture(params=sorted(STORES))
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = STORES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ledger(ledger_store: Store) -> ConsentLedger:
    return ConsentLedger(ledger_store, POLICY)


@pytest.fixture
def decider(ledger: ConsentLedger) -> Decider:
    return Decider(POLICY, ledger)


def evidence(subject: Subject = CONTACT, method: ConsentMethod = ConsentMethod.FORM) -> Evidence:
    return Evidence(
        method=method,
        actor=subject.id,
        notice_version=POLICY.version,
        jurisdiction=subject.jurisdiction,
        request_trace="trace-9c41",
    )


def foreign_withdrawal(subject: Subject, purpose: str, scope: Scope | None = None) -> ConsentEvent:
    """A withdrawal written straight to the store, as another process would."""
    controller, kind, sid = subject.key
    return ConsentEvent(
        event_id=str(uuid.uuid4()),
        consent_id=str(uuid.uuid4()),
        controller=controller,
        subject_kind=kind,
        subject_id=sid,
        purpose=purpose,
        scope=scope if scope is not None else Scope(),
        action=ConsentAction.WITHDRAW,
        policy_version=POLICY.version,
        at=datetime.now(UTC),
        evidence=evidence(subject, ConsentMethod.EMAIL_LINK),
    )


class TestEvidence:
    def test_evidence_is_required(self, ledger: ConsentLedger) -> None:
        for bad in (None, {"method": "form", "actor": "bc-1"}, "clicked yes"):
            with pytest.raises(PolicyError, match="Evidence"):
                ledger.grant(CONTACT, EMAIL, evidence=bad)  # type: ignore[arg-type]
            with pytest.raises(PolicyError, match="Evidence"):
                ledger.withdraw(CONTACT, EMAIL, evidence=bad)  # type: ignore[arg-type]
        assert ledger.history(CONTACT) == ()

    def test_evidence_is_stored_and_visible_in_history(self, ledger: ConsentLedger) -> None:
        given = Evidence(
            method=ConsentMethod.FORM,
            actor="bc-1",
            notice_version="notice-2019-12-17",
            jurisdiction="DE",
            request_trace="trace-9c41",
        )
        record = ledger.grant(CONTACT, EMAIL, evidence=given, scope=Scope(event="E1"))
        (event,) = ledger.history(CONTACT)
        assert event.evidence == given
        assert event.evidence.method is ConsentMethod.FORM
        assert event.evidence.actor == "bc-1"
        assert event.evidence.notice_version == "notice-2019-12-17"
        assert event.evidence.jurisdiction == "DE"
        assert event.evidence.request_trace == "trace-9c41"
        # ... and what, when, under which policy, for whom.
        assert event.consent_id == record.consent_id
        assert event.purpose == EMAIL
        assert event.scope == Scope(event="E1")
        assert event.action is ConsentAction.GRANT
        assert event.policy_version == POLICY.version == record.policy_version
        assert event.at == record.at
        assert event.at.tzinfo is not None
        assert (event.controller, event.subject_kind, event.subject_id) == CONTACT.key

    def test_evidence_method_is_normalised(self) -> None:
        assert Evidence("gpc", actor="v-1", notice_version="n").method is ConsentMethod.GPC  # type: ignore[arg-type]

    def test_a_clock_can_be_injected(self, ledger_store: Store) -> None:
        at = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
        ledger = ConsentLedger(ledger_store, POLICY, clock=lambda: at)
        assert ledger.grant(CONTACT, EMAIL, evidence=evidence()).at == at
        assert ledger.history(CONTACT)[0].at == at


class TestHistoryAndState:
    def test_history_is_append_only(self, ledger: ConsentLedger) -> None:
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        (grant,) = ledger.history(CONTACT)
        ledger.withdraw(CONTACT, EMAIL, evidence=evidence())
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        history = ledger.history(CONTACT)
        assert history[0] == grant  # never removed nor changed
        assert [e.action for e in history] == ["grant", "withdraw", "grant"]
        assert len({e.event_id for e in history}) == 3

    def test_the_current_state_is_derived_from_the_latest_event(
        self, ledger: ConsentLedger
    ) -> None:
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        (state,) = ledger.states(CONTACT)
        assert (state.purpose, state.granted) == (EMAIL, True)
        withdrawal = ledger.withdraw(CONTACT, EMAIL, evidence=evidence())
        (state,) = ledger.states(CONTACT)
        assert state.granted is False
        assert state.consent_id == withdrawal.consent_id
        ledger.grant(CONTACT, EMAIL, evidence=evidence(), scope=Scope(event="E1"))
        assert {(s.scope, s.granted) for s in ledger.states(CONTACT)} == {
            (Scope(), False),
            (Scope(event="E1"), True),
        }

    def test_grant_withdraw_grant_as_decisions(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        reasons = [decider.check(CONTACT, EMAIL).reason]
        for action in (ledger.grant, ledger.withdraw, ledger.grant):
            action(CONTACT, EMAIL, evidence=evidence())
            reasons.append(decider.check(CONTACT, EMAIL).reason)
        assert reasons == [
            Reason.CONSENT_MISSING,
            Reason.ALLOWED,
            Reason.CONSENT_WITHDRAWN,
            Reason.ALLOWED,
        ]

    def test_a_withdrawal_ends_the_narrower_grants_it_covers(self, ledger: ConsentLedger) -> None:
        at_x = Scope(event="E1", exhibitor="X")
        at_y = Scope(event="E1", exhibitor="Y")
        elsewhere = Scope(event="E2", exhibitor="X")
        for scope in (at_x, at_y, elsewhere):
            ledger.grant(CONTACT, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence(), scope=scope)
        record = ledger.withdraw(
            CONTACT, Purposes.SHARING, evidence=evidence(), scope=Scope(event="E1")
        )
        assert record.events == 3  # its own, plus one per covered grant
        granted = {s.scope: s.granted for s in ledger.states(CONTACT)}
        assert granted == {at_x: False, at_y: False, elsewhere: True, Scope(event="E1"): False}

    def test_consent_to_a_parent_purpose_covers_its_children(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        ledger.grant(CONTACT, Purposes.MARKETING, evidence=evidence())
        assert decider.check(CONTACT, Purposes.MARKETING_EMAIL).allowed
        assert decider.check(CONTACT, Purposes.ADVERTISING).allowed
        # ... but not its siblings or parent.
        assert not decider.check(CONTACT, Purposes.PERSONALIZE).allowed
        assert not decider.check(CONTACT, Purposes.PARTNER_SHARING).allowed
        # A withdrawal of the child after the parent's grant wins for the child only.
        ledger.withdraw(CONTACT, Purposes.MARKETING_EMAIL, evidence=evidence())
        assert decider.check(CONTACT, Purposes.MARKETING_EMAIL).reason is Reason.CONSENT_WITHDRAWN
        assert decider.check(CONTACT, Purposes.ADVERTISING).allowed

    def test_consent_to_a_child_does_not_cover_the_parent(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        ledger.grant(CONTACT, Purposes.MARKETING_EMAIL, evidence=evidence())
        assert decider.check(CONTACT, Purposes.MARKETING).reason is Reason.CONSENT_MISSING


class TestScope:
    def test_a_broader_scope_covers_a_narrower_one(self) -> None:
        assert Scope(event="E1").within(Scope(event="E1", exhibitor="X"))
        assert Scope().within(Scope(event="E1"))
        assert Scope(event="E1").within(Scope(event="E1"))
        assert not Scope(event="E1").within(Scope(event="E2", exhibitor="X"))
        assert not Scope(event="E1", exhibitor="X").within(Scope(event="E1"))
        assert not Scope(event="E1").within(Scope())

    def test_scopes_are_values(self) -> None:
        assert Scope(event="E1", exhibitor="X") == Scope({"exhibitor": "X", "event": "E1"})
        assert hash(Scope(event="E1", exhibitor="X")) == hash(Scope(exhibitor="X", event="E1"))
        assert Scope.parse(Scope(event="E1", exhibitor="X").key) == Scope(event="E1", exhibitor="X")
        assert Scope.parse("") == Scope()
        assert dict(Scope(event="E1")) == {"event": "E1"}

    def test_consent_for_an_event_covers_checks_inside_it(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        ledger.grant(CONTACT, EMAIL, evidence=evidence(), scope=Scope(event="E1"))
        assert decider.check(CONTACT, EMAIL, scope=Scope(event="E1")).allowed
        assert decider.check(CONTACT, EMAIL, scope=Scope(event="E1", exhibitor="X")).allowed
        assert not decider.check(CONTACT, EMAIL, scope=Scope(event="E2")).allowed
        assert not decider.check(CONTACT, EMAIL).allowed  # a narrow consent is not a broad one

    def test_an_unscoped_consent_covers_every_scope(
        self, ledger: ConsentLedger, decider: Decider
    ) -> None:
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL, scope=Scope(event="E9", exhibitor="Z")).allowed


class TestCache:
    def test_writes_through_the_ledger_are_seen_by_the_next_check(
        self, ledger_store: Store
    ) -> None:
        for ttl in (0.0, 60.0):
            subject = Subject.business_contact(f"bc-ttl-{ttl}", tenant="acme")
            ledger = ConsentLedger(ledger_store, POLICY, cache_ttl=ttl)
            decider = Decider(POLICY, ledger)
            assert decider.check(subject, EMAIL).reason is Reason.CONSENT_MISSING
            ledger.grant(subject, EMAIL, evidence=evidence(subject))
            assert decider.check(subject, EMAIL).allowed
            ledger.withdraw(subject, EMAIL, evidence=evidence(subject))
            assert decider.check(subject, EMAIL).reason is Reason.CONSENT_WITHDRAWN

    def test_a_write_by_another_process_is_seen_through_the_change_token(
        self, ledger_store: Store
    ) -> None:
        ledger = ConsentLedger(ledger_store, POLICY)  # cache_ttl=0: validate every check
        decider = Decider(POLICY, ledger)
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL).allowed
        assert decider.check(CONTACT, EMAIL).allowed  # served from the cache
        ledger_store.append_consent_events([foreign_withdrawal(CONTACT, EMAIL)])
        assert decider.check(CONTACT, EMAIL).reason is Reason.CONSENT_WITHDRAWN

    def test_with_a_ttl_a_foreign_write_waits_for_invalidate(self, ledger_store: Store) -> None:
        ledger = ConsentLedger(ledger_store, POLICY, cache_ttl=60)
        decider = Decider(POLICY, ledger)
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL).allowed
        ledger_store.append_consent_events([foreign_withdrawal(CONTACT, EMAIL)])
        # Within the stated staleness bound the cached state is trusted.
        assert decider.check(CONTACT, EMAIL).allowed
        ledger.invalidate()
        assert decider.check(CONTACT, EMAIL).reason is Reason.CONSENT_WITHDRAWN

    @pytest.mark.skipif("sqlite" not in STORES, reason="no SQLite store in this build")
    def test_a_second_sqlite_store_on_the_same_file_is_another_process(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "shared.db"
        ours, theirs = STORES["sqlite"](tmp_path), STORES["sqlite"](tmp_path)
        try:
            assert getattr(ours, "path", path) == getattr(theirs, "path", path)
            ledger = ConsentLedger(ours, POLICY)
            decider = Decider(POLICY, ledger)
            ledger.grant(CONTACT, EMAIL, evidence=evidence())
            assert decider.check(CONTACT, EMAIL).allowed
            ConsentLedger(theirs, POLICY).withdraw(CONTACT, EMAIL, evidence=evidence())
            assert decider.check(CONTACT, EMAIL).reason is Reason.CONSENT_WITHDRAWN
        finally:
            ours.close()
            theirs.close()

    def test_a_negative_ttl_is_refused(self) -> None:
        with pytest.raises(PolicyError, match="cache_ttl"):
            ConsentLedger(MemoryStore(), POLICY, cache_ttl=-1)


class TestFailClosed:
    def test_consent_based_checks_raise_when_the_store_is_down(self) -> None:
        store = MemoryStore()
        ledger = ConsentLedger(store, POLICY)
        decider = Decider(POLICY, ledger)
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL).allowed  # cached now
        store.unavailable = True
        with pytest.raises(StoreUnavailable):
            decider.check(CONTACT, EMAIL)
        # An opt-out purpose needs the ledger too (has the person objected?).
        with pytest.raises(StoreUnavailable):
            decider.check(CONTACT, Purposes.ANALYTICS, [Categories.CLICKS])
        with pytest.raises(StoreUnavailable):
            ledger.grant(CONTACT, EMAIL, evidence=evidence())
        with pytest.raises(StoreUnavailable):
            ledger.withdraw(CONTACT, EMAIL, evidence=evidence())
        with pytest.raises(StoreUnavailable):
            ledger.history(CONTACT)

    def test_purposes_that_need_no_lookup_still_answer(self) -> None:
        """Documented: contract, legal-obligation and forbidden purposes are decided from the
        policy alone, so an outage does not stop the service (or open the forbidden)."""
        store = MemoryStore()
        decider = Decider(POLICY, ConsentLedger(store, POLICY))
        store.unavailable = True
        assert decider.check(CONTACT, Purposes.SERVICE, [Categories.EMAIL]).allowed
        assert decider.check(CONTACT, Purposes.LEGAL_DISCLOSURE, recipient="authority").allowed
        assert decider.check(CONTACT, Purposes.SALE).reason is Reason.FORBIDDEN
        assert (
            decider.check(CONTACT, Purposes.SERVICE, recipient="partner").reason
            is Reason.RECIPIENT_NOT_PERMITTED
        )

    def test_the_ttl_bound_holds_during_an_outage_too(self) -> None:
        """Documented: within ``cache_ttl`` a cached state is trusted without the store."""
        store = MemoryStore()
        ledger = ConsentLedger(store, POLICY, cache_ttl=60)
        decider = Decider(POLICY, ledger)
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL).allowed
        store.unavailable = True
        assert decider.check(CONTACT, EMAIL).allowed
        ledger.invalidate()
        with pytest.raises(StoreUnavailable):
            decider.check(CONTACT, EMAIL)

    def test_a_failed_write_leaves_no_stale_cache(self) -> None:
        store = MemoryStore()
        ledger = ConsentLedger(store, POLICY)
        decider = Decider(POLICY, ledger)
        ledger.grant(CONTACT, EMAIL, evidence=evidence())
        assert decider.check(CONTACT, EMAIL).allowed
        store.unavailable = True
        with pytest.raises(StoreUnavailable):
            ledger.withdraw(CONTACT, EMAIL, evidence=evidence())
        store.unavailable = False
        # The withdrawal did not land, and the ledger says so rather than guessing.
        assert decider.check(CONTACT, EMAIL).allowed
        assert [e.action for e in ledger.history(CONTACT)] == ["grant"]

    async def test_async_checks_fail_closed_too(self) -> None:
        store = MemoryStore()
        decider = Decider(POLICY, ConsentLedger(store, POLICY))
        store.unavailable = True
        with pytest.raises(StoreUnavailable):
            await decider.acheck(CONTACT, EMAIL)
        assert (await decider.acheck(CONTACT, Purposes.SERVICE)).allowed


class TestAsync:
    async def test_agrant_acheck_awithdraw(self, ledger: ConsentLedger, decider: Decider) -> None:
        assert (await decider.acheck(CONTACT, EMAIL)).reason is Reason.CONSENT_MISSING
        granted = await ledger.agrant(CONTACT, EMAIL, evidence=evidence())
        decision = await decider.acheck(CONTACT, EMAIL, [Categories.EMAIL])
        assert decision.allowed
        assert decision.consent_id == granted.consent_id
        assert decider.check(CONTACT, EMAIL).allowed  # the sync path sees it too
        withdrawn = await ledger.awithdraw(CONTACT, EMAIL, evidence=evidence())
        assert withdrawn.action is ConsentAction.WITHDRAW
        assert (await decider.acheck(CONTACT, EMAIL)).reason is Reason.CONSENT_WITHDRAWN
        history = await ledger.ahistory(CONTACT)
        assert [e.action for e in history] == ["grant", "withdraw"]
        assert history == ledger.history(CONTACT)

    async def test_async_and_sync_agree(self, ledger: ConsentLedger, decider: Decider) -> None:
        ledger.grant(
            CONTACT,
            Purposes.EXHIBITOR_DISCLOSURE,
            evidence=evidence(),
            scope=Scope(event="E1", exhibitor="X"),
        )
        for scope in (Scope(event="E1", exhibitor="X"), Scope(event="E1", exhibitor="Y")):
            sync = decider.check(
                CONTACT, Purposes.EXHIBITOR_DISCLOSURE, recipient="exhibitor", scope=scope
            )
            async_ = await decider.acheck(
                CONTACT, Purposes.EXHIBITOR_DISCLOSURE, recipient="exhibitor", scope=scope
            )
            assert sync == async_

    async def test_a_foreign_write_is_seen_by_acheck(
        self, ledger_store: Store, ledger: ConsentLedger, decider: Decider
    ) -> None:
        await ledger.agrant(CONTACT, EMAIL, evidence=evidence())
        assert (await decider.acheck(CONTACT, EMAIL)).allowed
        ledger_store.append_consent_events([foreign_withdrawal(CONTACT, EMAIL)])
        assert (await decider.acheck(CONTACT, EMAIL)).reason is Reason.CONSENT_WITHDRAWN


class TestDecisionsHoldNoPersonalData:
    def test_repr_and_errors_name_no_person(self, ledger: ConsentLedger, decider: Decider) -> None:
        # Even when a host (wrongly) uses an e-mail address as the subject id.
        subject = Subject.business_contact("alice.smith@example.com", tenant="acme")
        ledger.grant(subject, EMAIL, evidence=evidence(subject))
        decisions: list[Decision] = [
            decider.check(subject, EMAIL, [Categories.EMAIL]),
            decider.check(subject, Purposes.PERSONALIZE, [Categories.EMAIL]),
            decider.check(subject, Purposes.SALE, [Categories.EMAIL], recipient="partner"),
        ]
        for decision in decisions:
            text = repr(decision) + str(decision)
            assert "alice" not in text
            assert "example.com" not in text
            assert "acme" not in text
        with pytest.raises(PurposeDenied) as info:
            decisions[1].raise_for_denial()
        assert "alice" not in str(info.value) + repr(info.value)

    def test_decisions_are_immutable_values(self, decider: Decider) -> None:
        decision = decider.check(CONTACT, Purposes.SERVICE)
        with pytest.raises(AttributeError):
            decision.allowed = False  # type: ignore[misc]
        assert bool(decision) is True
        assert bool(decider.check(CONTACT, Purposes.SALE)) is False
        assert decision.basis is Basis.CONTRACT


class TestProgrammingErrors:
    def test_unknown_purpose(self, ledger: ConsentLedger, decider: Decider) -> None:
        with pytest.raises(UnknownPurpose):
            decider.check(CONTACT, "marketing.telepathy")
        with pytest.raises(UnknownPurpose):
            ledger.grant(CONTACT, "marketing.telepathy", evidence=evidence())
        with pytest.raises(UnknownPurpose):
            ledger.withdraw(CONTACT, "marketing.telepathy", evidence=evidence())

    @pytest.mark.parametrize(
        "purpose", [Purposes.SERVICE, EMAIL, Purposes.SALE, Purposes.EXHIBITOR_DISCLOSURE]
    )
    def test_unknown_category(self, decider: Decider, purpose: str) -> None:
        for category in ("user.contact.emial", Purposes.ANALYTICS):
            with pytest.raises(UnknownCategory):
                decider.check(CONTACT, purpose, [Categories.NAME, category])

    def test_unknown_recipient_kind(self, decider: Decider) -> None:
        with pytest.raises(UnknownRecipientKind):
            decider.check(CONTACT, Purposes.SERVICE, recipient="data_broker")

    def test_errors_are_policy_errors_not_denials(self, decider: Decider) -> None:
        with pytest.raises(PolicyError):
            decider.check(CONTACT, "marketing.telepathy")
        assert not issubclass(PolicyError, PurposeDenied)
        assert issubclass(ConsentRequired, PurposeDenied)
