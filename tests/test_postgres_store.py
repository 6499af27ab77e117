"""PostgresStore beyond the shared contract: migrations, triggers, the change listener,
pooler safety, native async, the CLI and ``Privguard.from_url``.

The contract every store passes is ``test_store_contract.py``; fault and multi-process
tests are ``test_postgres_faults.py`` and ``test_postgres_concurrency.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from privguard import Evidence, Privguard, Purposes, Scope, Subject
from privguard._cli import main as cli
from privguard._errors import MigrationError, PolicyError, StoreError, StoreUnavailable
from privguard._guard import store_from_url
from privguard._stores import MemoryStore, PostgresStore, SQLiteStore
from privguard._stores import _postgres as pgmod
from tests.pg import connect, unique_schema

if TYPE_CHECKING:
    from conftest import RecordFactory

ALICE = ("tenant-a", "customer", "user-1")
ROOT = Path(__file__).resolve().parent.parent
postgres = pytest.mark.postgres


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@pytest.fixture
def other(pg_dsn: str, pg_store: PostgresStore) -> Iterator[PostgresStore]:
    """A second store on the same schema: another process, as far as the listener knows."""
    second = PostgresStore(pg_dsn, schema=pg_store.schema, max_size=2)
    try:
        yield second
    finally:
        second.close()


# -- the optional dependency ------------------------------------------------------------


def test_privguard_imports_without_loading_psycopg() -> None:
    code = "import sys, privguard; print('psycopg' in sys.modules, privguard.PostgresStore)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.startswith("False <class 'privguard._stores._postgres.PostgresStore'>")


def test_without_psycopg_one_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import privguard\n"
        "try:\n"
        "    privguard.PostgresStore('postgresql://db/app')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "pip install 'privguard[postgresql]'" in out


# -- configuration (no server needed) ----------------------------------------------------


@pytest.mark.parametrize(
    "schema", ["", "Privguard", "a-b", "x" * 49, "1abc", 'p"; DROP TABLE x; --', None]
)
def test_a_bad_schema_name_is_refused(schema: Any) -> None:
    with pytest.raises(PolicyError, match="schema"):
        PostgresStore("postgresql://127.0.0.1:1/x", schema=schema)


def test_a_bad_dsn_is_refused_without_repeating_it() -> None:
    with pytest.raises(PolicyError) as caught:
        PostgresStore("postgresql://app:s3cret@db/x?sslmode=nonsense&bogus=1")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(PolicyError):
        PostgresStore("")


@pytest.mark.parametrize(
    "options",
    [
        {"min_size": 5, "max_size": 2},
        {"max_size": 0},
        {"pool_timeout": 0},
        {"max_staleness": float("inf")},
        {"statement_timeout": -1},
        {"write_retries": -1},
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        PostgresStore("postgresql://127.0.0.1:1/x", **options)


def test_from_url_picks_memory_and_sqlite(tmp_path: Path) -> None:
    assert isinstance(store_from_url("memory:"), MemoryStore)
    path = tmp_path / "pg-url.db"
    guard = Privguard.from_url(f"sqlite:///{path}")
    try:
        assert isinstance(guard.store, SQLiteStore)
        assert guard.store.path == path
    finally:
        guard.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://app:s3cret@db/x", "s3cret", "sqlite:relative.db", "sqlite:///", "memory://x"],
)
def test_from_url_refuses_what_it_does_not_know_without_echoing(url: str) -> None:
    with pytest.raises(PolicyError) as caught:
        store_from_url(url)
    assert "s3cret" not in str(caught.value)
    assert "relative.db" not in str(caught.value)


# -- migrations ---------------------------------------------------------------------------


@postgres
def test_an_unmigrated_schema_is_refused_until_migrated(
    pg_dsn: str, pg_schema: str, records: RecordFactory
) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        assert store.schema_version() == 0
        with pytest.raises(MigrationError, match=r"older than this code's.*privguard migrate"):
            store.consent_states(ALICE)
        with pytest.raises(MigrationError):
            store.append_consent_events([records.event(ALICE)])
        store.migrate()
        assert store.schema_version() == pgmod.SCHEMA_VERSION
        store.append_consent_events([records.event(ALICE)])
        assert len(store.consent_history(ALICE)) == 1
    with connect(pg_dsn) as conn:
        rows = conn.execute(f"SELECT version, name FROM {pg_schema}.schema_migrations").fetchall()
    assert [v for v, _ in rows] == [m.version for m in pgmod.MIGRATIONS]


@postgres
def test_a_current_schema_migrates_without_taking_the_lock(
    pg_store: PostgresStore, pg_dsn: str
) -> None:
    with connect(pg_dsn) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (pg_store._sql.lock_key,))
        started = time.monotonic()
        pg_store.migrate()
        assert time.monotonic() - started < 1.0
        holder.execute("ROLLBACK")


@postgres
def test_a_newer_schema_is_refused(pg_store: PostgresStore, pg_dsn: str) -> None:
    schema = pg_store.schema
    pg_store.consent_states(ALICE)
    with connect(pg_dsn) as conn:
        conn.execute(f"INSERT INTO {schema}.schema_migrations (version, name) VALUES (99, 'x')")
        # What a newer privguard's migration sends: running stores re-read the version.
        conn.execute("SELECT pg_notify(%s, 'schema')", (f"{schema}.consent",))
    with pytest.raises(MigrationError, match="newer than this code's"):
        PostgresStore(pg_dsn, schema=schema, migrate=True)
    assert wait_for(lambda: not pg_store._schema_ok)
    with pytest.raises(MigrationError, match="newer"):
        pg_store.consent_states(ALICE)


@postgres
def test_a_foreign_schema_is_refused_and_left_alone(pg_dsn: str, pg_schema: str) -> None:
    with connect(pg_dsn) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.orders (id int)")
    with pytest.raises(MigrationError, match="not a privguard schema"):
        PostgresStore(pg_dsn, schema=pg_schema, migrate=True)
    with connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema,)
        ).fetchall()
    assert tables == [("orders",)]


@postgres
def test_a_failing_migration_leaves_nothing_behind(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch, pg_dsn: str
) -> None:
    broken = pgmod.Migration(
        3, "broken", ("CREATE TABLE {schema}.half (id int)", "CREATE TABLE nonsense (")
    )
    monkeypatch.setattr(pgmod, "MIGRATIONS", (*pgmod.MIGRATIONS, broken))
    monkeypatch.setattr(pgmod, "SCHEMA_VERSION", 3)
    with pytest.raises(MigrationError, match=r"migration 3 \(broken\).*42601"):
        pg_store.migrate()
    with connect(pg_dsn) as conn:
        half = conn.execute("SELECT to_regclass(%s)", (f"{pg_store.schema}.half",)).fetchone()
    assert half == (None,)
    monkeypatch.undo()
    assert pg_store.schema_version() == pgmod.SCHEMA_VERSION


@postgres
def test_threads_migrating_one_schema_at_once_migrate_it_once(pg_dsn: str, pg_schema: str) -> None:
    barrier = threading.Barrier(6)
    results: list[object] = []

    def migrate() -> None:
        barrier.wait()
        try:
            results.append(pgmod.migrate_database(pg_dsn, schema=pg_schema)[1:])
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A migration applied twice would fail (its tables exist): every thread succeeded.
    assert all(isinstance(r, tuple) and r[1] == 2 for r in results), results
    with connect(pg_dsn) as conn:
        versions = conn.execute(f"SELECT version FROM {pg_schema}.schema_migrations").fetchall()
    assert sorted(v for (v,) in versions) == [1, 2]


# -- what the database itself enforces ---------------------------------------------------


@postgres
@pytest.mark.parametrize("table", ["consent_events", "disclosures"])
@pytest.mark.parametrize(
    "statement", ["UPDATE {t} SET purpose = purpose", "DELETE FROM {t}", "TRUNCATE {t} CASCADE"]
)
def test_history_and_disclosure_log_are_append_only_for_anyone(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory, table: str, statement: str
) -> None:
    import psycopg

    pg_store.append_consent_events([records.event(ALICE)])
    pg_store.append_disclosures([records.disclosure(ALICE)])
    with connect(pg_dsn) as conn, pytest.raises(psycopg.errors.RestrictViolation):
        conn.execute(statement.format(t=f"{pg_store.schema}.{table}"))
    assert len(pg_store.consent_history(ALICE)) == 1
    assert len(pg_store.disclosures_for_subject(ALICE)) == 1


@postgres
def test_the_projection_is_exact_whoever_inserts_history(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory
) -> None:
    # An import by hand, bypassing privguard: one statement with two events for one key.
    schema = pg_store.schema
    with connect(pg_dsn) as conn:
        conn.execute(
            f"INSERT INTO {schema}.consent_events (event_id, consent_id, controller,"
            " subject_kind, subject_id, purpose, scope, action, policy_version, at, method,"
            " actor, notice_version, jurisdiction) VALUES"
            " ('i-1', 'c-1', %s, %s, %s, 'analytics', '', 'grant', 'v', now(), 'import',"
            "  'ops', 'n', ''),"
            " ('i-2', 'c-1', %s, %s, %s, 'analytics', '', 'withdraw', 'v', now(), 'import',"
            "  'ops', 'n', '')",
            (*ALICE, *ALICE),
        )
    (state,) = pg_store.consent_states(ALICE)
    assert state.granted is False and state.consent_id == "c-1"
    pg_store.append_consent_events([records.event(ALICE, purpose="analytics")])
    (state,) = pg_store.consent_states(ALICE)
    assert state.granted is True
    with connect(pg_dsn) as conn:
        count = conn.execute(f"SELECT count(*) FROM {schema}.consent_state").fetchone()
    assert count == (1,)


@postgres
def test_reads_are_index_ranges_without_a_sort(pg_store: PostgresStore, pg_dsn: str) -> None:
    plans = {}
    with connect(pg_dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        for name, query, params in [
            ("states", pg_store._sql.states, ALICE),
            ("history", pg_store._sql.history, ALICE),
            ("collections", pg_store._sql.collections, ALICE),
            ("by subject", pg_store._sql.disclosures_for_subject, ALICE),
            ("by recipient", pg_store._sql.disclosures_for_recipient, ("acme", None, None)),
        ]:
            cur = conn.cursor()
            cur.execute("EXPLAIN (FORMAT JSON) " + query, params)
            plans[name] = json.dumps(cur.fetchone()[0])  # type: ignore[index]
    for name, plan in plans.items():
        assert "Index" in plan, name
        assert '"Sort"' not in plan, name
        assert "Seq Scan" not in plan, name


# -- errors ------------------------------------------------------------------------------


@postgres
def test_errors_name_the_store_and_the_kind_never_a_value_or_password(
    pg_dsn: str, pg_schema: str, records: RecordFactory
) -> None:
    dsn = pg_dsn.replace("postgres@", "postgres:hunter2@")
    with PostgresStore(dsn, schema=pg_schema, migrate=True) as store:
        secret = records.event(("tenant-a", "customer", "alice@example.com"))
        store.append_consent_events([secret])
        with pytest.raises(StoreUnavailable) as caught:
            store.append_consent_events([secret])
        message = str(caught.value)
        assert message.startswith("postgresql store 127.0.0.1:5432/test schema")
        assert message.endswith("cannot append consent events: duplicate consent event id")
        for leak in ("alice@example.com", secret.event_id, "hunter2"):
            assert leak not in message
            assert leak not in repr(store)
        with pytest.raises(StoreError, match="timezone-aware"):
            store.append_consent_events([records.event(ALICE, at=secret.at.replace(tzinfo=None))])


@postgres
def test_a_write_past_statement_timeout_fails_closed(
    pg_dsn: str, pg_schema: str, records: RecordFactory
) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema, migrate=True, statement_timeout=0.3) as store:
        with connect(pg_dsn) as blocker:
            blocker.execute("BEGIN")
            blocker.execute(f"LOCK TABLE {pg_schema}.consent_events IN EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="timed out or was cancelled"):
                store.append_consent_events([records.event(ALICE)])
            assert time.monotonic() - started < 3
            blocker.execute("ROLLBACK")
        assert store.consent_history(ALICE) == ()


@postgres
def test_an_exhausted_pool_fails_closed_after_pool_timeout(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(
        pg_dsn, schema=pg_schema, migrate=True, max_size=1, pool_timeout=0.3
    ) as store:
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with store.transaction():
                held.set()
                release.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(5)
            with pytest.raises(StoreUnavailable, match=r"all 1 of the pool are busy"):
                store.consent_states(ALICE)
        finally:
            release.set()
            holder.join()
        assert store.consent_states(ALICE) == ()
        assert store.stats()["database_down"] == 0.0


# -- the change listener ------------------------------------------------------------------


@postgres
def test_a_write_elsewhere_changes_the_token_within_the_bound(
    pg_store: PostgresStore, other: PostgresStore, records: RecordFactory
) -> None:
    before = pg_store.change_token()
    other.append_consent_events([records.event(ALICE)])
    written = time.monotonic()
    assert wait_for(lambda: pg_store.change_token() != before, timeout=2.0)
    assert time.monotonic() - written < pg_store._max_staleness


@postgres
def test_own_writes_cause_no_second_change(pg_store: PostgresStore, records: RecordFactory) -> None:
    pg_store.append_consent_events([records.event(ALICE)])
    after = pg_store.change_token()
    time.sleep(0.3)  # the notification of our own write has arrived and been skipped
    assert pg_store.change_token() == after


@postgres
def test_a_raw_sql_change_to_consent_state_reaches_the_listener(
    pg_store: PostgresStore, pg_dsn: str, records: RecordFactory
) -> None:
    pg_store.append_consent_events([records.event(ALICE)])
    before = pg_store.change_token()
    with connect(pg_dsn) as conn:
        conn.execute(f"DELETE FROM {pg_store.schema}.consent_state")  # e.g. an erasure job
    assert wait_for(lambda: pg_store.change_token() != before, timeout=2.0)


@postgres
def test_without_a_listener_no_token_is_ever_trusted(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(
        pg_dsn, schema=pg_schema, migrate=True, listen_dsn="postgresql://postgres@127.0.0.1:1/x"
    ) as store:
        assert store.change_token() != store.change_token()
        assert store.stats()["listener_connected"] == 0.0
    with PostgresStore(pg_dsn, schema=pg_schema, listen=False) as store:
        assert store.change_token() != store.change_token()


@postgres
def test_a_dropped_listener_connection_distrusts_tokens_until_it_is_back(
    pg_store: PostgresStore, pg_dsn: str
) -> None:
    listener = pg_store._listener
    assert listener is not None
    stable = pg_store.change_token()
    assert pg_store.change_token() == stable
    with connect(pg_dsn) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    assert wait_for(lambda: pg_store.change_token() != pg_store.change_token(), timeout=2.0)
    assert wait_for(lambda: pg_store.stats()["listener_reconnects"] >= 1, timeout=5.0)
    assert wait_for(lambda: pg_store.change_token() == pg_store.change_token(), timeout=5.0)
    # What happened while nobody listened is unknown: the token moved on.
    assert pg_store.change_token() != stable


@postgres
def test_two_guards_a_withdrawal_in_one_denies_the_next_check_in_the_other(
    pg_dsn: str, pg_schema: str
) -> None:
    options = {"schema": pg_schema, "max_staleness": 0.5}
    one = Privguard.from_url(pg_dsn, store_options=options)
    two = Privguard.from_url(pg_dsn, store_options=options)
    try:
        jane = Subject.business_contact("att-1", tenant="acme", jurisdiction="US")
        booth = Scope(event="devcon", exhibitor="globex")
        evidence = Evidence("form", actor="att-1", notice_version=one.policy.version)
        check = {"recipient": "exhibitor", "scope": booth}
        one.ledger.grant(jane, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence, scope=booth)
        assert two.check(jane, Purposes.EXHIBITOR_DISCLOSURE, **check).allowed  # now cached
        one.ledger.withdraw(jane, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence, scope=booth)
        time.sleep(0.5)
        assert not two.check(jane, Purposes.EXHIBITOR_DISCLOSURE, **check).allowed
    finally:
        one.close()
        two.close()


# -- a transaction-mode pooler keeps no session state --------------------------------------


@postgres
def test_pooled_connections_keep_no_session_state(
    pg_store: PostgresStore, records: RecordFactory
) -> None:
    for _ in range(10):  # past psycopg's default prepare threshold (5)
        pg_store.append_consent_events([records.event(ALICE)])
        pg_store.consent_states(ALICE)
        with pg_store.transaction():
            pg_store.append_disclosures([records.disclosure(ALICE)])
    asyncio.run(pg_store.aconsent_states(ALICE))
    conns = [pg_store._pool.getconn() for _ in range(pg_store._pool.get_stats()["pool_size"])]
    try:
        for conn in conns:
            assert conn.prepare_threshold is None
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_prepared_statements),"
                " (SELECT count(*) FROM pg_listening_channels()),"
                " coalesce(current_setting('privguard.origin', true), ''),"
                " current_setting('statement_timeout'),"
                " (SELECT count(*) FROM pg_settings WHERE source = 'session'"
                "  AND name NOT IN ('application_name', 'client_encoding', 'DateStyle',"
                "  'TimeZone', 'IntervalStyle', 'extra_float_digits'))"
            ).fetchone()
            assert row == (0, 0, "", "0", 0)
    finally:
        for conn in conns:
            pg_store._pool.putconn(conn)


@postgres
def test_statements_name_their_schema_whatever_the_search_path(
    pg_dsn: str, pg_schema: str, records: RecordFactory
) -> None:
    dsn = f"{pg_dsn}?options=-csearch_path%3Dnowhere"
    with PostgresStore(dsn, schema=pg_schema, migrate=True) as store:
        store.append_consent_events([records.event(ALICE)])
        assert len(store.consent_states(ALICE)) == 1


# -- async: native, any event loop ---------------------------------------------------------


@postgres
def test_async_twins_use_no_worker_threads(
    pg_store: PostgresStore, records: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("asyncio.to_thread was used")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)

    async def everything() -> None:
        await pg_store.aappend_consent_events([records.event(ALICE)])
        await pg_store.aappend_collections([records.collection(ALICE)])
        await pg_store.aappend_disclosures([records.disclosure(ALICE)])
        assert len(await pg_store.aconsent_states(ALICE)) == 1
        assert len(await pg_store.aconsent_history(ALICE)) == 1
        assert len(await pg_store.acollections(ALICE)) == 1
        assert len(await pg_store.adisclosures_for_subject(ALICE)) == 1
        assert len(await pg_store.adisclosures_for_recipient("acme")) == 1
        token, states = await pg_store.aconsent_snapshot(ALICE)
        assert token == await pg_store.achange_token() and len(states) == 1
        await pg_store.amigrate()

    asyncio.run(everything())


@postgres
def test_one_store_serves_many_event_loops_and_closes_cleanly(
    pg_dsn: str, pg_schema: str, records: RecordFactory
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=True, max_size=3)
    try:
        for i in range(5):  # a new loop each time, as asyncio.run per job does
            asyncio.run(store.aappend_consent_events([records.event(ALICE, purpose=f"p{i}")]))

        async def many() -> None:
            await asyncio.gather(*(store.aconsent_states(ALICE) for _ in range(20)))

        asyncio.run(many())

        def in_a_thread() -> None:
            asyncio.run(many())

        threads = [threading.Thread(target=in_a_thread) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.consent_history(ALICE)) == 5
        assert store.stats()["async_pool_size"] <= 3
    finally:
        store.close()  # every loop is closed by now: their connections are closed here


@postgres
async def test_close_from_a_coroutine_while_a_read_is_in_flight(
    pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=True)
    slow = asyncio.create_task(store.aconsent_states(ALICE))
    await asyncio.sleep(0)
    store.close()
    with contextlib.suppress(StoreUnavailable):
        await slow
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.aconsent_states(ALICE)


# -- fork -----------------------------------------------------------------------------


@postgres
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_store_opened_before_fork_fails_closed_in_the_child_and_spares_the_parent(
    pg_store: PostgresStore, records: RecordFactory
) -> None:
    pg_store.append_consent_events([records.event(ALICE)])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            pg_store.consent_states(ALICE)
            verdict = b"read"
        except StoreUnavailable as exc:
            verdict = b"refused" if b"fork()" in str(exc).encode() else b"other"
        import gc

        pg_store.close()
        gc.collect()  # the inherited connections are dropped here, in the child
        os.write(write, verdict)
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    verdict = os.read(read, 16)
    os.close(read)
    assert verdict == b"refused" and status == 0
    # Every pooled connection of the parent still works: the child sent no Terminate.
    for _ in range(5):
        assert len(pg_store.consent_history(ALICE)) == 1
    stats = pg_store.stats()
    assert stats["listener_reconnects"] == 0
    assert stats.get("sync_connections_lost", 0) == stats.get("sync_returns_bad", 0) == 0


# -- the command line ----------------------------------------------------------------------


@postgres
def test_cli_migrate_and_check(pg_dsn: str, pg_schema: str) -> None:
    out = io.StringIO()
    assert cli(["migrate", "--dsn", pg_dsn, "--schema", pg_schema, "--check"], out=out) == 1
    assert "at version 0; 2 migration(s) pending" in out.getvalue()
    out = io.StringIO()
    assert cli(["migrate", "--dsn", pg_dsn, "--schema", pg_schema], out=out) == 0
    assert "migrated from version 0 to 2" in out.getvalue()
    out = io.StringIO()
    assert cli(["migrate", "--dsn", pg_dsn, "--schema", pg_schema, "--check"], out=out) == 0
    assert "at version 2, current" in out.getvalue()


def test_cli_as_a_module_with_the_environment_variable(tmp_path: Path) -> None:
    env = {**os.environ, "PRIVGUARD_STORE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "privguard", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "migrated from version 0 to 2" in done.stdout


def test_cli_failures_exit_3_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    dsn = "postgresql://app:hunter2@127.0.0.1:1/x"
    assert cli(["migrate", "--dsn", dsn, "--connect-timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert "cannot connect to the database" in err and "hunter2" not in err
    assert cli(["migrate", "--dsn", ""]) == 2


@postgres
def test_cli_refuses_a_newer_schema(pg_dsn: str, pg_store: PostgresStore) -> None:
    with connect(pg_dsn) as conn:
        conn.execute(f"INSERT INTO {pg_store.schema}.schema_migrations VALUES (99, 'x')")
    assert cli(["migrate", "--dsn", pg_dsn, "--schema", pg_store.schema]) == 3


def test_unique_schema_names_are_valid_schema_names() -> None:
    names = {unique_schema("contract") for _ in range(3)}
    assert len(names) == 3
    assert all(pgmod._SCHEMA_NAME.fullmatch(name) for name in names)
