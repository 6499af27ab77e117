"""The one store contract: every store in ``conftest.STORE_FACTORIES`` must pass it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, overload

import pytest

from privguard._errors import StoreError, StoreUnavailable
from privguard._records import (
    ConsentAction,
    ConsentEvent,
    ConsentMethod,
    ConsentState,
    DisclosureRecord,
    Evidence,
)
from privguard._stores import Store
from privguard._subject import Scope, Source

if TYPE_CHECKING:
    from conftest import RecordFactory

ALICE = ("tenant-a", "customer", "user-1")
#: A fixed instant for tests that place records in time themselves.
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
WITHDRAW = ConsentAction.WITHDRAW


class Boom(Exception):
    pass


def _without_seq(state: ConsentState) -> tuple[object, ...]:
    return (
        state.consent_id,
        state.purpose,
        state.scope,
        state.granted,
        state.policy_version,
        state.at,
    )


def _expected(event: ConsentEvent) -> tuple[object, ...]:
    return (
        event.consent_id,
        event.purpose,
        event.scope,
        event.action is ConsentAction.GRANT,
        event.policy_version,
        event.at,
    )


def _states(store: Store, subject: tuple[str, str, str]) -> set[tuple[object, ...]]:
    return {_without_seq(s) for s in store.consent_states(subject)}


def _everything(store: Store, subjects: Sequence[tuple[str, str, str]]) -> list[object]:
    return [(store.consent_history(s), _states(store, s), store.collections(s)) for s in subjects]


class FailingAtEnd(Sequence[ConsentEvent]):
    """A batch whose last item cannot be produced: the store must write none of it."""

    def __init__(self, events: list[ConsentEvent]) -> None:
        self._events = events

    def __len__(self) -> int:
        return len(self._events)

    @overload
    def __getitem__(self, i: int) -> ConsentEvent: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[ConsentEvent]: ...
    def __getitem__(self, i: int | slice) -> ConsentEvent | Sequence[ConsentEvent]:
        if isinstance(i, slice):
            return self._events[i]
        if i in (len(self._events) - 1, -1):
            raise Boom("the last event cannot be produced")
        return self._events[i]

    def __iter__(self) -> Iterator[ConsentEvent]:
        yield from self._events[:-1]
        raise Boom("the last event cannot be produced")


# -- round trips -------------------------------------------------------------------------


def test_an_empty_store_knows_nothing(store: Store) -> None:
    assert store.consent_states(ALICE) == ()
    assert store.consent_history(ALICE) == ()
    assert store.collections(ALICE) == ()


def test_history_round_trips_every_field(store: Store, records: RecordFactory) -> None:
    events = [
        records.event(ALICE, scope=Scope(event="E1", exhibitor="acme")),
        records.event(ALICE, purpose="analytics", action=WITHDRAW),
        records.event(
            ALICE,
            purpose="profiling",
            evidence=Evidence(method=ConsentMethod.GPC, actor="admin-7", notice_version="n-9"),
        ),
    ]
    store.append_consent_events(events)

    history = store.consent_history(ALICE)
    assert history == tuple(events)
    for got, sent in zip(history, events, strict=True):
        assert got.scope == sent.scope and got.scope.key == sent.scope.key
        assert got.action is sent.action
        assert got.evidence == sent.evidence
        assert got.evidence.method is sent.evidence.method
        assert got.at.utcoffset() == timedelta(0)
        assert got.at == sent.at
    assert history[2].evidence.jurisdiction == ""
    assert history[2].evidence.request_trace is None


def test_states_round_trip(store: Store, records: RecordFactory) -> None:
    grant = records.event(ALICE, scope=Scope(event="E1"))
    withdraw = records.event(ALICE, purpose="analytics", action=WITHDRAW)
    store.append_consent_events([grant, withdraw])

    states = {s.purpose: s for s in store.consent_states(ALICE)}
    assert _without_seq(states["marketing.email"]) == _expected(grant)
    assert _without_seq(states["analytics"]) == _expected(withdraw)
    assert states["marketing.email"].granted is True
    assert states["analytics"].granted is False
    assert states["analytics"].seq > states["marketing.email"].seq
    for state in states.values():
        assert isinstance(state.seq, int)
        assert state.at.tzinfo is not None and state.at.utcoffset() == timedelta(0)


def test_history_is_oldest_first_across_calls(store: Store, records: RecordFactory) -> None:
    events = [records.event(ALICE, purpose=f"p{i}") for i in range(5)]
    for event in events:
        store.append_consent_events([event])
    assert store.consent_history(ALICE) == tuple(events)


def test_newest_event_wins_per_purpose_and_scope(store: Store, records: RecordFactory) -> None:
    scope = Scope(event="E1")
    first = records.event(ALICE, scope=scope)
    second = records.event(ALICE, scope=scope, action=WITHDRAW)
    third = records.event(ALICE, scope=Scope({"event": "E1"}))
    store.append_consent_events([first, second])
    assert _states(store, ALICE) == {_expected(second)}
    store.append_consent_events([third])
    (state,) = store.consent_states(ALICE)
    assert _without_seq(state) == _expected(third)
    assert len(store.consent_history(ALICE)) == 3


def test_different_scopes_are_separate_states(store: Store, records: RecordFactory) -> None:
    events = [
        records.event(ALICE),
        records.event(ALICE, scope=Scope(event="E1")),
        records.event(ALICE, scope=Scope(event="E1", exhibitor="acme"), action=WITHDRAW),
        records.event(ALICE, scope=Scope(event="E2")),
        records.event(ALICE, purpose="analytics", scope=Scope(event="E1")),
    ]
    store.append_consent_events(events)
    assert _states(store, ALICE) == {_expected(e) for e in events}


def test_tenants_and_kinds_never_share_a_key_space(store: Store, records: RecordFactory) -> None:
    subjects = [
        ("tenant-a", "customer", "same-id"),
        ("tenant-b", "customer", "same-id"),
        ("tenant-a", "business_contact", "same-id"),
        ("platform", "visitor", "same-id"),
    ]
    events = {s: records.event(s) for s in subjects}
    collections = {s: records.collection(s) for s in subjects}
    store.append_consent_events(list(events.values()))
    store.append_collections(list(collections.values()))
    for subject in subjects:
        assert store.consent_history(subject) == (events[subject],)
        assert _states(store, subject) == {_expected(events[subject])}
        assert store.collections(subject) == (collections[subject],)
    assert store.consent_history(("tenant-c", "customer", "same-id")) == ()


# -- atomicity ---------------------------------------------------------------------------


def test_a_duplicate_event_id_is_rejected_and_nothing_written(
    store: Store, records: RecordFactory
) -> None:
    existing = records.event(ALICE)
    store.append_consent_events([existing])
    fresh = records.event(ALICE, purpose="analytics")
    clash = records.event(ALICE, purpose="profiling", event_id=existing.event_id)

    with pytest.raises(StoreUnavailable, match="duplicate") as caught:
        store.append_consent_events([fresh, clash])
    assert existing.event_id not in str(caught.value)
    assert ALICE[2] not in str(caught.value)
    assert store.consent_history(ALICE) == (existing,)
    assert _states(store, ALICE) == {_expected(existing)}


def test_a_duplicate_within_one_batch_is_rejected(store: Store, records: RecordFactory) -> None:
    one = records.event(ALICE)
    two = records.event(ALICE, purpose="analytics", event_id=one.event_id)
    with pytest.raises(StoreUnavailable, match="duplicate"):
        store.append_consent_events([one, two])
    assert store.consent_history(ALICE) == ()
    assert store.consent_states(ALICE) == ()


def test_a_duplicate_collection_record_id_is_rejected(store: Store, records: RecordFactory) -> None:
    existing = records.collection(ALICE)
    store.append_collections([existing])
    fresh = records.collection(ALICE)
    clash = records.collection(ALICE, record_id=existing.record_id, purpose="other")
    with pytest.raises(StoreUnavailable, match="duplicate"):
        store.append_collections([fresh, clash])
    assert store.collections(ALICE) == (existing,)


def test_transaction_rollback_leaves_nothing(store: Store, records: RecordFactory) -> None:
    kept = records.event(ALICE)
    store.append_consent_events([kept])
    before = _everything(store, [ALICE])

    with pytest.raises(Boom), store.transaction():
        store.append_consent_events([records.event(ALICE, action=WITHDRAW)])
        store.append_collections([records.collection(ALICE)])
        store.append_consent_events([records.event(ALICE, purpose="analytics")])
        raise Boom

    assert _everything(store, [ALICE]) == before
    store.append_consent_events([records.event(ALICE, purpose="after")])
    assert len(store.consent_history(ALICE)) == 2


def test_transaction_commits_all_writes_together(store: Store, records: RecordFactory) -> None:
    event = records.event(ALICE)
    collection = records.collection(ALICE)
    with store.transaction():
        store.append_consent_events([event])
        store.append_collections([collection])
        # A transaction reads its own writes.
        assert store.consent_history(ALICE) == (event,)
    assert store.consent_history(ALICE) == (event,)
    assert store.collections(ALICE) == (collection,)


def test_nested_transaction_joins_the_outer_one(store: Store, records: RecordFactory) -> None:
    outer = records.event(ALICE)
    with pytest.raises(Boom), store.transaction():
        store.append_consent_events([outer])
        with store.transaction():
            store.append_consent_events([records.event(ALICE, purpose="inner")])
        raise Boom
    assert store.consent_history(ALICE) == ()

    inner_failed = records.event(ALICE, purpose="inner")
    with store.transaction():
        store.append_consent_events([outer])
        with pytest.raises(Boom), store.transaction():
            store.append_consent_events([inner_failed])
            raise Boom
    # The caught inner failure undid only the inner block.
    assert store.consent_history(ALICE) == (outer,)


def test_a_failed_append_inside_a_transaction_writes_none_of_its_batch(
    store: Store, records: RecordFactory
) -> None:
    first = records.event(ALICE)
    with store.transaction():
        store.append_consent_events([first])
        with pytest.raises(StoreUnavailable):
            store.append_consent_events([records.event(ALICE, purpose="x"), first])
        last = records.event(ALICE, purpose="y")
        store.append_consent_events([last])
    assert store.consent_history(ALICE) == (first, last)


def test_a_bulk_append_of_10000_events_is_atomic(store: Store, records: RecordFactory) -> None:
    subjects = [("tenant-a", "customer", f"user-{i}") for i in range(100)]
    events = [records.event(subjects[i % 100], purpose=f"p{i % 7}") for i in range(10_000)]
    before = _everything(store, subjects)

    with pytest.raises(Boom):
        store.append_consent_events(FailingAtEnd(events))
    assert _everything(store, subjects) == before

    duplicate_at_end = [*events[:-1], records.event(subjects[0], event_id=events[0].event_id)]
    with pytest.raises(StoreUnavailable):
        store.append_consent_events(duplicate_at_end)
    assert _everything(store, subjects) == before

    with pytest.raises(Boom), store.transaction():
        store.append_consent_events(events)
        raise Boom
    assert _everything(store, subjects) == before

    store.append_consent_events(events)
    assert sum(len(store.consent_history(s)) for s in subjects) == 10_000
    assert sum(len(store.consent_states(s)) for s in subjects) == 100 * 7


# -- change token ------------------------------------------------------------------------


def test_change_token_changes_after_every_write(store: Store, records: RecordFactory) -> None:
    seen = [store.change_token()]
    assert store.change_token() == seen[0]  # stable while nothing changes
    store.append_consent_events([records.event(ALICE)])
    seen.append(store.change_token())
    with store.transaction():
        store.append_consent_events([records.event(ALICE, action=WITHDRAW)])
    seen.append(store.change_token())
    store.append_consent_events([records.event(ALICE, purpose="analytics")])
    seen.append(store.change_token())
    assert len(set(seen)) == len(seen)
    hash(seen[-1])


def test_change_token_sees_writes_from_another_thread(store: Store, records: RecordFactory) -> None:
    before = store.change_token()
    writer = threading.Thread(target=store.append_consent_events, args=([records.event(ALICE)],))
    writer.start()
    writer.join()
    assert store.change_token() != before


def test_change_token_agrees_across_threads_when_nothing_changes(
    store: Store, records: RecordFactory
) -> None:
    store.append_consent_events([records.event(ALICE)])
    barrier = threading.Barrier(4)
    settled: list[object] = []

    def look() -> None:
        store.change_token()  # a thread's first look may report a change it cannot rule out
        barrier.wait()
        settled.append(store.change_token())

    threads = [threading.Thread(target=look) for _ in range(3)]
    for t in threads:
        t.start()
    store.change_token()
    barrier.wait()
    for t in threads:
        t.join()
    assert len(set(settled)) == 1
    assert store.change_token() == settled[0]


# -- provenance --------------------------------------------------------------------------


def test_collections_round_trip(store: Store, records: RecordFactory) -> None:
    stored = [
        records.collection(ALICE),
        records.collection(
            ALICE,
            categories=(),
            source=Source.REFERRAL,
            scope=Scope(),
            bound=True,
            at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ),
    ]
    store.append_collections(stored)
    got = store.collections(ALICE)
    assert got == tuple(stored)
    assert got[1].bound is True and got[1].categories == () and got[1].scope == Scope()
    assert all(r.at.utcoffset() == timedelta(0) for r in got)
    store.append_collections([])
    store.append_consent_events([])
    assert store.collections(ALICE) == tuple(stored)


# -- the disclosure log -----------------------------------------------------------------


def test_disclosures_round_trip_every_field(store: Store, records: RecordFactory) -> None:
    written = [
        records.disclosure(ALICE),
        records.disclosure(
            ALICE,
            recipient="dept-of-justice",
            recipient_kind="authority",
            purpose="third_party_sharing.legal_obligation",
            categories=(),
            basis="legal_obligation",
            scope=Scope(),
            consent_id=None,
            reference="court order 2024/17",
            agreement=None,
            trace_id=None,
            span_id=None,
            channel="http",
            at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ),
    ]
    store.append_disclosures(written)
    got = store.disclosures_for_subject(ALICE)
    assert got == tuple(written)
    assert got[0].scope == Scope(event="E1", exhibitor="acme")
    assert got[1].categories == () and got[1].consent_id is None
    assert got[1].reference == "court order 2024/17"
    assert all(r.at.utcoffset() == timedelta(0) for r in got)
    store.append_disclosures([])
    assert store.disclosures_for_subject(ALICE) == tuple(written)


def test_disclosures_per_subject_in_the_order_written(store: Store, records: RecordFactory) -> None:
    bob = ("tenant-a", "customer", "user-2")
    other_tenant = ("tenant-b", "customer", "user-1")
    mine = [records.disclosure(ALICE, recipient=f"r{i}") for i in range(3)]
    store.append_disclosures([records.disclosure(bob), mine[0], records.disclosure(other_tenant)])
    store.append_disclosures(mine[1:])
    assert store.disclosures_for_subject(ALICE) == tuple(mine)
    assert len(store.disclosures_for_subject(bob)) == 1
    assert len(store.disclosures_for_subject(other_tenant)) == 1
    assert store.disclosures_for_subject(("tenant-c", "customer", "user-1")) == ()


def test_disclosures_per_recipient_and_time_range(store: Store, records: RecordFactory) -> None:
    day = timedelta(days=1)
    subjects = [("tenant-a", "business_contact", f"c-{i}") for i in range(6)]
    # Written out of time order on purpose: the answer is ordered by time.
    times = [T0 + 3 * day, T0, T0 + day, T0 + 2 * day, T0 + day, T0 + 4 * day]
    acme = [
        records.disclosure(s, recipient="acme", at=at)
        for s, at in zip(subjects, times, strict=True)
    ]
    store.append_disclosures([*acme, records.disclosure(subjects[0], recipient="globex", at=T0)])

    everything = store.disclosures_for_recipient("acme")
    assert [r.at for r in everything] == sorted(times)
    assert [r.disclosure_id for r in everything[1:3]] == [
        acme[2].disclosure_id,
        acme[4].disclosure_id,
    ]
    window = store.disclosures_for_recipient("acme", since=T0 + day, until=T0 + 3 * day)
    assert [r.at for r in window] == [T0 + day, T0 + day, T0 + 2 * day]  # since in, until out
    assert store.disclosures_for_recipient("acme", since=T0 + 4 * day) == (acme[5],)
    assert store.disclosures_for_recipient("acme", until=T0) == ()
    assert len(store.disclosures_for_recipient("globex")) == 1
    assert store.disclosures_for_recipient("nobody") == ()


def test_a_duplicate_disclosure_id_is_rejected_and_nothing_written(
    store: Store, records: RecordFactory
) -> None:
    existing = records.disclosure(ALICE)
    store.append_disclosures([existing])
    fresh = records.disclosure(ALICE)
    clash = records.disclosure(ALICE, disclosure_id=existing.disclosure_id)
    with pytest.raises(StoreUnavailable, match="duplicate disclosure id") as caught:
        store.append_disclosures([fresh, clash])
    assert existing.disclosure_id not in str(caught.value)
    assert store.disclosures_for_subject(ALICE) == (existing,)
    with pytest.raises(StoreUnavailable, match="duplicate"):
        store.append_disclosures([fresh, records.disclosure(ALICE, disclosure_id="x"), fresh])
    assert store.disclosures_for_subject(ALICE) == (existing,)


def test_a_naive_disclosure_time_is_refused(store: Store, records: RecordFactory) -> None:
    with pytest.raises(StoreError):
        store.append_disclosures([records.disclosure(ALICE, at=datetime(2024, 5, 1, 9, 30))])
    assert store.disclosures_for_subject(ALICE) == ()


class FailingDisclosures(Sequence[DisclosureRecord]):
    """A batch whose last record cannot be produced: the store must write none of it."""

    def __init__(self, records: list[DisclosureRecord]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, i: int) -> DisclosureRecord: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[DisclosureRecord]: ...
    def __getitem__(self, i: int | slice) -> DisclosureRecord | Sequence[DisclosureRecord]:
        if isinstance(i, slice):
            return self._records[i]
        if i in (len(self._records) - 1, -1):
            raise Boom("the last record cannot be produced")
        return self._records[i]

    def __iter__(self) -> Iterator[DisclosureRecord]:
        yield from self._records[:-1]
        raise Boom("the last record cannot be produced")


def test_a_bulk_append_of_100000_disclosures_is_atomic(
    store: Store, records: RecordFactory
) -> None:
    subjects = [("tenant-a", "business_contact", f"c-{i}") for i in range(100_000)]
    batch = [records.disclosure(s, batch_id="bulk", at=T0) for s in subjects]
    probes = [subjects[0], subjects[50_000], subjects[-1]]

    with pytest.raises(Boom):
        store.append_disclosures(FailingDisclosures(batch))
    assert all(store.disclosures_for_subject(s) == () for s in probes)
    assert store.disclosures_for_recipient("acme") == ()

    clash_at_end = [*batch[:-1], records.disclosure(subjects[-1], disclosure_id="dis-1")]
    with pytest.raises(StoreUnavailable):
        store.append_disclosures(clash_at_end)
    assert store.disclosures_for_recipient("acme") == ()

    with pytest.raises(Boom), store.transaction():
        store.append_disclosures(batch)
        raise Boom
    assert store.disclosures_for_recipient("acme") == ()

    store.append_disclosures(batch)
    assert len(store.disclosures_for_recipient("acme")) == 100_000
    assert store.disclosures_for_subject(subjects[-1]) == (batch[-1],)


def test_disclosures_join_a_transaction(store: Store, records: RecordFactory) -> None:
    event = records.event(ALICE)
    disclosure = records.disclosure(ALICE)
    with pytest.raises(Boom), store.transaction():
        store.append_consent_events([event])
        store.append_disclosures([disclosure])
        raise Boom
    assert store.consent_history(ALICE) == ()
    assert store.disclosures_for_subject(ALICE) == ()
    with store.transaction():
        store.append_consent_events([event])
        store.append_disclosures([disclosure])
        assert store.disclosures_for_subject(ALICE) == (disclosure,)
    assert store.disclosures_for_subject(ALICE) == (disclosure,)
    # The ids of a rolled-back batch are free again, and the log keeps growing after it.
    later = records.disclosure(ALICE)
    store.append_disclosures([later])
    assert store.disclosures_for_subject(ALICE) == (disclosure, later)


async def test_disclosure_async_twins(store: Store, records: RecordFactory) -> None:
    written = records.disclosure(ALICE)
    await store.aappend_disclosures([written])
    assert await store.adisclosures_for_subject(ALICE) == (written,)
    assert await store.adisclosures_for_recipient("acme", since=written.at) == (written,)
    assert await store.adisclosures_for_recipient("acme", until=written.at) == ()
    assert store.disclosures_for_subject(ALICE) == (written,)


# -- async twins -------------------------------------------------------------------------


async def test_async_twins(store: Store, records: RecordFactory) -> None:
    await store.amigrate()
    before = await store.achange_token()
    event = records.event(ALICE)
    collection = records.collection(ALICE)
    await store.aappend_consent_events([event])
    await store.aappend_collections([collection])
    assert await store.aconsent_history(ALICE) == (event,)
    assert {_without_seq(s) for s in await store.aconsent_states(ALICE)} == {_expected(event)}
    assert await store.acollections(ALICE) == (collection,)
    assert await store.achange_token() != before
    # And the sync side sees what the worker threads wrote.
    assert store.consent_history(ALICE) == (event,)


# -- lifecycle ---------------------------------------------------------------------------


def test_migrate_is_idempotent(store: Store, records: RecordFactory) -> None:
    store.append_consent_events([records.event(ALICE)])
    store.migrate()
    store.migrate()
    assert len(store.consent_history(ALICE)) == 1


def test_a_closed_store_raises_store_unavailable(store: Store, records: RecordFactory) -> None:
    store.append_consent_events([records.event(ALICE)])
    store.close()
    store.close()  # idempotent
    calls = [
        lambda: store.consent_states(ALICE),
        lambda: store.consent_history(ALICE),
        lambda: store.collections(ALICE),
        lambda: store.append_consent_events([records.event(ALICE)]),
        lambda: store.append_collections([records.collection(ALICE)]),
        lambda: store.append_disclosures([records.disclosure(ALICE)]),
        lambda: store.disclosures_for_subject(ALICE),
        lambda: store.disclosures_for_recipient("acme"),
        store.change_token,
        store.migrate,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            call()
    with pytest.raises(StoreUnavailable), store.transaction():
        pass


async def test_a_closed_store_raises_store_unavailable_async(store: Store) -> None:
    store.close()
    with pytest.raises(StoreUnavailable):
        await store.aconsent_states(ALICE)
    with pytest.raises(StoreUnavailable):
        await store.achange_token()


def test_the_store_is_a_context_manager(store: Store) -> None:
    with store as same:
        assert same is store
    with pytest.raises(StoreError):
        store.consent_history(ALICE)
