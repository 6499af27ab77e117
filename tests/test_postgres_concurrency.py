"""PostgresStore across real OS processes (multiprocessing, spawn) on the shared server.

- A withdrawal made in one process denies the next check in every other one within the
  stated bound (``max_staleness``), even though each of them had the grant cached.
- Processes granting, withdrawing and disclosing at once lose no update and duplicate
  nothing; a bulk append is all or nothing.
- Processes that start at once migrate a fresh schema once.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from privguard import ConsentMethod, Evidence, Privguard, Purposes, Subject
from privguard._errors import StoreUnavailable
from privguard._records import ConsentAction
from privguard._stores import PostgresStore
from tests.pg import connect

pytestmark = pytest.mark.postgres

SPAWN = multiprocessing.get_context("spawn")
BOUND = 0.5  # max_staleness of these tests, in seconds
ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
NEWSLETTER = Purposes.MARKETING_EMAIL
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")


def run_all(
    target: Callable[..., Any], argsets: list[tuple[Any, ...]], timeout: float
) -> list[Any]:
    """Run ``target(queue, *args)`` in one spawned process per argset; their results."""
    queue = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(queue, *args)) for args in argsets]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    queue.close()
    queue.join_thread()
    errors = [r for r in results if isinstance(r, str)]
    assert not errors, errors
    return results


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A migrated schema of this test's own."""
    PostgresStore(pg_dsn, schema=pg_schema, migrate=True).close()
    yield pg_schema


# -- the consistency bound, with real processes ---------------------------------------------


def checker(queue: Any, dsn: str, schema: str, go: Any, ready: Any) -> None:
    """Cache Alice's grant, then check until the withdrawal shows; report what it saw."""
    try:
        guard = Privguard(store=PostgresStore(dsn, schema=schema, max_staleness=BOUND))
        try:
            assert guard.check(ALICE, NEWSLETTER).allowed
            assert guard.check(ALICE, NEWSLETTER).allowed  # served from the cache
            ready.set()
            withdrawn_at = go.get(timeout=30)  # monotonic time: one clock for the host
            first_denied = None
            while time.monotonic() < withdrawn_at + BOUND:
                if first_denied is None and not guard.check(ALICE, NEWSLETTER).allowed:
                    first_denied = time.monotonic()
                time.sleep(0.001)
            denied_after_bound = not guard.check(ALICE, NEWSLETTER).allowed
            lag = None if first_denied is None else first_denied - withdrawn_at
            queue.put((denied_after_bound, lag))
        finally:
            guard.close()
    except BaseException as exc:
        queue.put(f"checker failed: {exc!r}")


def test_a_withdrawal_in_one_process_denies_the_next_check_in_every_other(
    pg_dsn: str, schema: str
) -> None:
    writer = Privguard(store=PostgresStore(pg_dsn, schema=schema, max_staleness=BOUND))
    queue = SPAWN.Queue()
    readies = [SPAWN.Event() for _ in range(3)]
    gos = [SPAWN.Queue() for _ in range(3)]
    procs = [
        SPAWN.Process(target=checker, args=(queue, pg_dsn, schema, go, ready))
        for go, ready in zip(gos, readies, strict=True)
    ]
    try:
        writer.ledger.grant(ALICE, NEWSLETTER, evidence=EVIDENCE)
        for p in procs:
            p.start()
        for ready in readies:
            assert ready.wait(60), "a checker did not start"
        writer.ledger.withdraw(ALICE, NEWSLETTER, evidence=EVIDENCE)
        acknowledged = time.monotonic()  # the withdrawal has returned: it is acknowledged
        for go in gos:
            go.put(acknowledged)
        results = [queue.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
        writer.close()
    assert not [r for r in results if isinstance(r, str)], results
    for denied_after_bound, lag in results:
        assert denied_after_bound
        assert lag is not None and lag < BOUND  # in practice milliseconds (NOTIFY)
    print(f"withdrawal seen by the other processes after {[round(r[1], 4) for r in results]} s")


# -- many writers at once ------------------------------------------------------------------


def writer(queue: Any, dsn: str, schema: str, seed: int, rounds: int) -> None:
    """Grant, withdraw, disclose and bulk-append at random; report what was acknowledged."""
    from tests.conftest import RecordFactory  # not "conftest": tests/browser has one too

    try:
        rng = random.Random(seed)
        records = RecordFactory()
        store = PostgresStore(dsn, schema=schema, max_size=3)
        written: list[str] = []
        refused: list[str] = []
        disclosed: list[str] = []
        subjects = [("acme", "customer", f"u{i}") for i in range(4)]
        purposes = ["marketing.email", "analytics", "profiling"]
        try:
            for n in range(rounds):
                roll = rng.random()
                subject = rng.choice(subjects)
                if roll < 0.70:  # a user-paced consent write: one event
                    event = records.event(
                        subject,
                        purpose=rng.choice(purposes),
                        action=rng.choice(list(ConsentAction)),
                        event_id=f"w{seed}-{n}",
                    )
                    store.append_consent_events([event])
                    written.append(event.event_id)
                elif roll < 0.85:  # a disclosure batch
                    batch = [
                        records.disclosure(s, disclosure_id=f"d{seed}-{n}-{i}")
                        for i, s in enumerate(subjects)
                    ]
                    store.append_disclosures(batch)
                    disclosed.extend(d.disclosure_id for d in batch)
                elif roll < 0.93:  # a bulk import that fails at its last event
                    bulk = [
                        records.event(
                            rng.choice(subjects),
                            purpose=rng.choice(purposes),
                            event_id=f"x{seed}-{n}-{i}",
                        )
                        for i in range(300)
                    ]
                    bulk[-1] = records.event(subject, event_id=bulk[0].event_id)
                    try:
                        store.append_consent_events(bulk)
                    except StoreUnavailable as exc:
                        assert "duplicate consent event id" in str(exc)
                        refused.extend(e.event_id for e in bulk)
                    else:
                        raise AssertionError("a batch with a duplicate id was written")
                else:  # a bulk import that succeeds
                    bulk = [
                        records.event(
                            rng.choice(subjects),
                            purpose=rng.choice(purposes),
                            action=rng.choice(list(ConsentAction)),
                            event_id=f"b{seed}-{n}-{i}",
                        )
                        for i in range(300)
                    ]
                    store.append_consent_events(bulk)
                    written.extend(e.event_id for e in bulk)
        finally:
            store.close()
        queue.put((written, refused, disclosed))
    except BaseException as exc:
        queue.put(f"writer {seed} failed: {exc!r}")


def test_many_processes_writing_at_once_lose_nothing_and_duplicate_nothing(
    pg_dsn: str, schema: str
) -> None:
    results = run_all(writer, [(pg_dsn, schema, seed, 120) for seed in range(4)], timeout=120)
    written = [i for w, _, _ in results for i in w]
    refused = {i for _, r, _ in results for i in r}
    disclosed = [i for _, _, d in results for i in d]
    with connect(pg_dsn) as conn:
        stored = [r[0] for r in conn.execute(f"SELECT event_id FROM {schema}.consent_events")]
        disclosures = [
            r[0] for r in conn.execute(f"SELECT disclosure_id FROM {schema}.disclosures")
        ]
        # No lost update: every key's state is its newest event, in the order of history.
        mismatched = conn.execute(
            f"SELECT count(*) FROM {schema}.consent_state s"
            f" JOIN LATERAL (SELECT * FROM {schema}.consent_events e"
            "   WHERE (e.controller, e.subject_kind, e.subject_id, e.purpose, e.scope)"
            "       = (s.controller, s.subject_kind, s.subject_id, s.purpose, s.scope)"
            "   ORDER BY e.seq DESC LIMIT 1) last ON true"
            " WHERE last.seq <> s.seq OR last.consent_id <> s.consent_id"
            "   OR (last.action = 'grant') <> s.granted"
        ).fetchone()
        keys = conn.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT controller, subject_kind, subject_id,"
            f" purpose, scope FROM {schema}.consent_events) k"
        ).fetchone()
        states = conn.execute(f"SELECT count(*) FROM {schema}.consent_state").fetchone()
    assert sorted(stored) == sorted(written)  # nothing lost, nothing extra, no duplicate
    assert refused.isdisjoint(stored)  # a failed bulk append wrote none of itself
    assert sorted(disclosures) == sorted(disclosed)
    assert mismatched == (0,)
    assert keys == states


# -- migrations at start-up ------------------------------------------------------------------


def starter(queue: Any, dsn: str, schema: str, line: Any) -> None:
    try:
        line.wait(60)  # every process imported and ready: go at once
        with PostgresStore(dsn, schema=schema, migrate=True, listen=False) as store:
            queue.put(store.schema_version())
    except BaseException as exc:
        queue.put(f"starter failed: {exc!r}")


def test_processes_starting_at_once_migrate_a_fresh_schema_once(
    pg_dsn: str, pg_schema: str
) -> None:
    line = SPAWN.Barrier(4)
    results = run_all(starter, [(pg_dsn, pg_schema, line)] * 4, timeout=60)
    assert results == [2] * 4, results
    with connect(pg_dsn) as conn:
        versions = conn.execute(f"SELECT version FROM {pg_schema}.schema_migrations").fetchall()
    assert sorted(v for (v,) in versions) == [1, 2]
