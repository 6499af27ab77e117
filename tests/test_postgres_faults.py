"""PostgresStore when the database fails: fail closed, never half-written, recover alone.

Tests that stop, crash or lock out the server run against a throwaway cluster of this
module's own (``tests.pg.ThrowawayCluster``), never the shared server; the others use the
shared server in a schema of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope as ASGIScope

from privguard import (
    Categories,
    ConsentMethod,
    Evidence,
    PrivacyMiddleware,
    Privguard,
    Purposes,
    StoreUnavailable,
    Subject,
    privacy,
)
from privguard._records import ConsentAction
from privguard._stores import PostgresStore
from tests.pg import ThrowawayCluster, connect, free_port, unique_schema

if TYPE_CHECKING:
    from conftest import RecordFactory

pytestmark = pytest.mark.postgres

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
KEY = ALICE.key
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
NEWSLETTER = Purposes.MARKETING_EMAIL
# Short waits, so a test of an outage takes seconds: production defaults are longer.
FAST = {"pool_timeout": 1.0, "max_staleness": 0.5, "connect_timeout": 2.0}


def eventually(check: Any, timeout: float) -> float:
    """Call ``check`` until it returns true; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except StoreUnavailable:
            pass
        if time.monotonic() - started > timeout:
            pytest.fail(f"not recovered within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def cluster(pg_cluster: ThrowawayCluster) -> Iterator[ThrowawayCluster]:
    """The module's cluster, running again after the test whatever the test did to it."""
    if not pg_cluster.running:
        pg_cluster.start()
    yield pg_cluster
    if not pg_cluster.running:
        pg_cluster.start()


@pytest.fixture
def guard(cluster: ThrowawayCluster) -> Iterator[Privguard]:
    store = PostgresStore(cluster.dsn, schema=unique_schema("fault"), migrate=True, **FAST)
    made = Privguard(store=store)
    try:
        yield made
    finally:
        made.close()


# -- the database goes away and comes back -----------------------------------------------


def test_checks_fail_closed_while_the_database_is_down_and_recover_alone(
    guard: Privguard, cluster: ThrowawayCluster
) -> None:
    guard.ledger.grant(ALICE, NEWSLETTER, evidence=EVIDENCE)
    assert guard.check(ALICE, NEWSLETTER).allowed
    assert guard.check(ALICE, NEWSLETTER).allowed  # from the ledger's cache

    cluster.stop("fast")
    stopped = time.monotonic()
    # The cached grant is not served: the listener lost its connection, so the cache is
    # not trusted, and the database cannot be read.
    with pytest.raises(StoreUnavailable, match="cannot read consent states"):
        guard.check(ALICE, NEWSLETTER)
    assert time.monotonic() - stopped < FAST["max_staleness"] + FAST["pool_timeout"] + 1
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no connection to the database"):
        guard.check(ALICE, NEWSLETTER)
    assert time.monotonic() - started < 0.6  # known down: no waiting for the pool
    with pytest.raises(StoreUnavailable):
        guard.ledger.withdraw(ALICE, NEWSLETTER, evidence=EVIDENCE)
    assert guard.store.stats()["database_down"] == 1.0

    cluster.start()
    took = eventually(lambda: guard.check(ALICE, NEWSLETTER).allowed, timeout=20)
    assert took < 15, f"recovery took {took:.1f} s"
    history = guard.ledger.history(ALICE)
    assert [e.action for e in history] == [ConsentAction.GRANT]  # nothing half-written
    guard.ledger.withdraw(ALICE, NEWSLETTER, evidence=EVIDENCE)
    assert not guard.check(ALICE, NEWSLETTER).allowed
    assert guard.store.stats()["database_down"] == 0.0


def test_async_checks_fail_closed_and_recover(guard: Privguard, cluster: ThrowawayCluster) -> None:
    async def scenario() -> None:
        await guard.ledger.agrant(ALICE, NEWSLETTER, evidence=EVIDENCE)
        assert (await guard.acheck(ALICE, NEWSLETTER)).allowed
        cluster.stop("fast")
        with pytest.raises(StoreUnavailable):
            await guard.acheck(ALICE, NEWSLETTER)
        with pytest.raises(StoreUnavailable):
            await guard.ledger.awithdraw(ALICE, NEWSLETTER, evidence=EVIDENCE)
        cluster.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await guard.acheck(ALICE, NEWSLETTER)).allowed:
                    break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert len(await guard.ledger.ahistory(ALICE)) == 1

    asyncio.run(scenario())


def test_a_crash_mid_stream_leaves_every_batch_whole(
    cluster: ThrowawayCluster, records: RecordFactory
) -> None:
    schema = unique_schema("crash")
    store = PostgresStore(cluster.dsn, schema=schema, migrate=True, **FAST)
    ok: list[int] = []
    failed: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        batch = 0
        while not stop.is_set():
            events = [
                records.event(
                    ("acme", "customer", f"u{j % 7}"),
                    purpose=f"p{j % 5}",
                    action=ConsentAction.WITHDRAW if (batch + j) % 3 else ConsentAction.GRANT,
                    event_id=f"b{batch}-{j}",
                )
                for j in range(50)
            ]
            try:
                store.append_consent_events(events)
                ok.append(batch)
            except StoreUnavailable:
                failed.append(batch)
            batch += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        cluster.stop("immediate")  # as if the server crashed: no checkpoint, no goodbye
        time.sleep(0.5)
        cluster.start()  # crash recovery
        before = len(ok)
        eventually(lambda: len(ok) >= before + 5, timeout=20)
    finally:
        stop.set()
        thread.join()
        store.close()
    assert failed, "the crash did not interrupt any write"
    with connect(cluster.dsn) as conn:
        counts = dict(
            conn.execute(
                f"SELECT split_part(event_id, '-', 1), count(*) FROM {schema}.consent_events"
                " GROUP BY 1"
            ).fetchall()
        )
        stale = conn.execute(
            f"SELECT count(*) FROM {schema}.consent_state s WHERE s.seq <> ("
            f" SELECT max(seq) FROM {schema}.consent_events e WHERE (e.controller,"
            " e.subject_kind, e.subject_id, e.purpose, e.scope) = (s.controller,"
            " s.subject_kind, s.subject_id, s.purpose, s.scope))"
        ).fetchone()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    for batch in ok:
        assert counts.get(f"b{batch}") == 50, batch
    for batch in failed:  # not acknowledged: all of it or none (an ambiguous commit)
        assert counts.get(f"b{batch}", 0) in (0, 50), batch
    assert stale == (0,)


def test_a_transaction_cut_by_a_restart_commits_nothing(
    guard: Privguard, cluster: ThrowawayCluster, records: RecordFactory
) -> None:
    store = guard.store
    with pytest.raises(StoreUnavailable), store.transaction():
        store.append_consent_events([records.event(KEY)])
        store.append_disclosures([records.disclosure(KEY)])
        cluster.stop("fast")
        cluster.start()
    eventually(lambda: store.consent_history(KEY) == (), timeout=20)
    assert store.disclosures_for_subject(KEY) == ()


def test_an_unreachable_database_fails_closed_at_once(records: RecordFactory) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    started = time.monotonic()
    with PostgresStore(dsn, schema="privguard", **FAST) as store:
        assert time.monotonic() - started < 3  # the store is built; it fails closed on use
        for call in (
            lambda: store.consent_states(KEY),
            lambda: store.append_consent_events([records.event(KEY)]),
            lambda: asyncio.run(store.aconsent_states(KEY)),
        ):
            with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:\d+/postgres"):
                call()
        assert store.change_token() != store.change_token()
        with pytest.raises(StoreUnavailable, match="cannot connect to the database"):
            store.migrate()


# -- retries: idempotent, never a duplicate ----------------------------------------------


def _cut_after_commit(store: PostgresStore, dsn: str, *, land: bool, clobber: Any = None) -> None:
    """The first commit's answer is lost: the connection drops right after COMMIT (or,
    with ``land=False``, after a rollback, while ``clobber`` writes a row elsewhere)."""
    real = store._commit
    calls = []

    def commit(conn: Any, doomed: bool, doing: str) -> None:
        calls.append(doing)
        if len(calls) > 1:
            return real(conn, doomed, doing)
        if land:
            real(conn, doomed, doing)
        else:
            conn.execute("ROLLBACK")
            clobber()
        with connect(dsn) as side:
            side.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        conn.execute("SELECT 1")  # raises: the server ended the session

    store._commit = commit  # type: ignore[method-assign]


def test_a_write_whose_commit_answer_was_lost_is_retried_without_a_duplicate(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory
) -> None:
    events = [records.event(KEY, purpose=f"p{i}") for i in range(20)]
    _cut_after_commit(pg_store, pg_dsn, land=True)
    pg_store.append_consent_events(events)  # the retry finds its own rows: success
    assert pg_store.consent_history(KEY) == tuple(events)


def test_a_retry_that_meets_someone_elses_rows_reports_a_duplicate(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory
) -> None:
    mine = records.event(KEY)
    theirs = records.event(KEY, purpose="analytics", event_id=mine.event_id)

    def clobber() -> None:
        with contextlib.closing(PostgresStore(pg_dsn, schema=pg_store.schema)) as elsewhere:
            elsewhere.append_consent_events([theirs])

    _cut_after_commit(pg_store, pg_dsn, land=False, clobber=clobber)
    with pytest.raises(StoreUnavailable, match="duplicate consent event id"):
        pg_store.append_consent_events([mine])
    assert pg_store.consent_history(KEY) == (theirs,)


def test_an_async_write_whose_commit_answer_was_lost_is_not_duplicated(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory
) -> None:
    disclosures = [records.disclosure(KEY) for _ in range(10)]
    real = pg_store._acommit
    calls: list[str] = []

    async def commit(conn: Any, doing: str) -> None:
        calls.append(doing)
        await real(conn, doing)
        if len(calls) == 1:
            with connect(pg_dsn) as side:
                side.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            await conn.execute("SELECT 1")

    pg_store._acommit = commit  # type: ignore[method-assign]
    asyncio.run(pg_store.aappend_disclosures(disclosures))
    assert len(calls) == 1  # the retry met its own rows at COPY: nothing to commit
    assert pg_store.disclosures_for_subject(KEY) == tuple(disclosures)


# -- the listener locked out ---------------------------------------------------------------


def test_a_listener_that_cannot_reconnect_never_lets_a_stale_grant_through(
    cluster: ThrowawayCluster,
) -> None:
    schema = unique_schema("listener")
    with connect(cluster.dsn) as admin:
        admin.execute("DROP ROLE IF EXISTS privguard_listener_test")
        admin.execute("CREATE ROLE privguard_listener_test LOGIN")
    listen_dsn = cluster.dsn.replace("postgres@", "privguard_listener_test@")
    options = {**FAST, "schema": schema}
    checker = Privguard(
        store=PostgresStore(cluster.dsn, migrate=True, listen_dsn=listen_dsn, **options)
    )
    writer = Privguard(store=PostgresStore(cluster.dsn, **options))
    try:
        listener = checker.store._listener  # type: ignore[attr-defined]
        writer.ledger.grant(ALICE, NEWSLETTER, evidence=EVIDENCE)
        assert checker.check(ALICE, NEWSLETTER).allowed  # cached
        with connect(cluster.dsn) as admin:
            admin.execute("ALTER ROLE privguard_listener_test NOLOGIN")
            admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
        eventually(lambda: checker.store.change_token() != checker.store.change_token(), 5)
        writer.ledger.withdraw(ALICE, NEWSLETTER, evidence=EVIDENCE)
        # No notification can arrive, and none is needed: the cache is not trusted.
        assert not checker.check(ALICE, NEWSLETTER).allowed
        writer.ledger.grant(ALICE, NEWSLETTER, evidence=EVIDENCE)
        assert checker.check(ALICE, NEWSLETTER).allowed
        assert checker.store.stats()["listener_connected"] == 0.0

        with connect(cluster.dsn) as admin:
            admin.execute("ALTER ROLE privguard_listener_test LOGIN")
        eventually(lambda: checker.store.stats()["listener_connected"] == 1.0, 10)
        eventually(lambda: checker.store.change_token() == checker.store.change_token(), 5)
    finally:
        checker.close()
        writer.close()
        with connect(cluster.dsn) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            admin.execute("DROP ROLE IF EXISTS privguard_listener_test")


# -- through the real middleware -------------------------------------------------------------


@privacy(NEWSLETTER, categories=[Categories.EMAIL])
async def newsletter(request: Request) -> JSONResponse:
    return JSONResponse({"subscribed": True})


def alice(scope: ASGIScope) -> Subject:
    return ALICE


@contextlib.asynccontextmanager
async def client_for(guard: Privguard) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Route("/newsletter", newsletter)],
        middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=alice)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def test_the_middleware_answers_503_while_the_database_is_down_and_200_after(
    guard: Privguard, cluster: ThrowawayCluster
) -> None:
    async def scenario() -> None:
        await guard.ledger.agrant(ALICE, NEWSLETTER, evidence=EVIDENCE)
        async with client_for(guard) as client:
            assert (await client.get("/newsletter")).status_code == 200
            cluster.stop("fast")
            down = await client.get("/newsletter")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert down.json()["type"].endswith("decision-unavailable")
            assert "subscribed" not in down.text
            cluster.start()
            deadline = time.monotonic() + 20
            while (await client.get("/newsletter")).status_code != 200:
                assert time.monotonic() < deadline, "the app did not recover"
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
