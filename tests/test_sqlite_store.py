"""SQLite specifics, on real files: settings, migrations, failures, processes and threads.

What every store must do is in ``test_store_contract.py``; this file covers what only the
SQLite store has to prove.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from privguard._errors import MigrationError, PolicyError, StoreError, StoreUnavailable
from privguard._records import ConsentAction, ConsentEvent, ConsentMethod, Evidence
from privguard._stores import SQLiteStore, _sqlite
from privguard._subject import Scope

ALICE = ("tenant-a", "customer", "user-1")
#: A personal value that must never appear in an error message.
SECRET_ID = "jane.doe@example.com"
SECRET = ("tenant-a", "customer", SECRET_ID)
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "privguard.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection, as another program (or an attacker with file access) has."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        yield db


def pragma(path: Path, name: str) -> object:
    with raw(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def event(n: int, subject: tuple[str, str, str] = ALICE, **overrides: object) -> ConsentEvent:
    """A self-contained builder, importable by spawned processes."""
    controller, kind, subject_id = subject
    fields: dict[str, object] = {
        "event_id": f"evt-{n}",
        "consent_id": f"cns-{n}",
        "controller": controller,
        "subject_kind": kind,
        "subject_id": subject_id,
        "purpose": "marketing.email",
        "scope": Scope(),
        "action": ConsentAction.GRANT,
        "policy_version": "2024-05",
        "at": datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=n),
        "evidence": Evidence(ConsentMethod.FORM, subject_id, "notice-3", "DE", None),
    }
    fields.update(overrides)
    return ConsentEvent(**fields)  # type: ignore[arg-type]


def assert_no_data(exc: BaseException) -> None:
    message = str(exc)
    assert SECRET_ID not in message
    assert "evt-" not in message


def tables(path: Path) -> list[tuple[str, str]]:
    with raw(path) as db:
        return db.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()


# -- settings ----------------------------------------------------------------------------


def test_settings(sqlite_store: SQLiteStore, db_path: Path) -> None:
    assert pragma(db_path, "journal_mode") == "wal"
    db = sqlite_store._connection().db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_every_subject_read_is_one_indexed_range(sqlite_store: SQLiteStore) -> None:
    db = sqlite_store._connection().db
    plans = {
        sql: " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, ALICE))
        for sql in (_sqlite._SELECT_STATES, _sqlite._SELECT_HISTORY, _sqlite._SELECT_COLLECTIONS)
    }
    assert plans[_sqlite._SELECT_STATES] == (
        "SEARCH consent_state USING PRIMARY KEY (controller=? AND subject_kind=? AND subject_id=?)"
    )
    for sql in (_sqlite._SELECT_HISTORY, _sqlite._SELECT_COLLECTIONS):
        assert "USING INDEX" in plans[sql]
        assert "TEMP B-TREE" not in plans[sql]  # the index's rowid suffix gives the order


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_a_file_path_is_required(path: str) -> None:
    with pytest.raises(PolicyError):
        SQLiteStore(path)


@pytest.mark.parametrize("timeout", [-1, float("inf"), float("nan")])
def test_busy_timeout_is_validated(db_path: Path, timeout: float) -> None:
    with pytest.raises(PolicyError):
        SQLiteStore(db_path, busy_timeout=timeout)
    assert not db_path.exists()


def test_times_are_stored_as_utc_microseconds(sqlite_store: SQLiteStore, db_path: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 11, 0, 0, 1, tzinfo=plus_two)
    sqlite_store.append_consent_events([event(1, at=local)])
    (stored,) = sqlite_store.consent_history(ALICE)
    assert stored.at == local
    assert stored.at.tzinfo is UTC
    assert stored.at.hour == 9
    with raw(db_path) as db:
        (at_us,) = db.execute("SELECT at_us FROM consent_events").fetchone()
    assert at_us == 1714554000000001


def test_a_naive_time_is_refused_and_nothing_written(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="timezone-aware"):
        sqlite_store.append_consent_events([event(1), event(2, at=datetime(2024, 5, 1))])
    assert sqlite_store.consent_history(ALICE) == ()


# -- migrations --------------------------------------------------------------------------


def test_migration_records_the_version_and_is_idempotent(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.append_consent_events([event(1)])
    assert pragma(db_path, "user_version") == _sqlite.SCHEMA_VERSION
    assert pragma(db_path, "application_id") == _sqlite.APPLICATION_ID
    schema = tables(db_path)
    assert ("table", "consent_events") in schema
    assert ("table", "consent_state") in schema
    assert ("table", "collections") in schema

    with SQLiteStore(db_path) as store:
        store.migrate()
        store.migrate()
        assert len(store.consent_history(ALICE)) == 1
    assert tables(db_path) == schema
    assert pragma(db_path, "user_version") == _sqlite.SCHEMA_VERSION


def test_a_newer_schema_raises_migration_error(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    with raw(db_path) as db:
        db.execute(f"PRAGMA user_version = {_sqlite.SCHEMA_VERSION + 1}")
    with pytest.raises(MigrationError, match="newer"):
        SQLiteStore(db_path)
    with pytest.raises(MigrationError, match="newer"):
        SQLiteStore(db_path, migrate=False)


def test_a_newer_schema_written_while_open_is_refused_by_new_connections(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        with raw(db_path) as db:
            db.execute(f"PRAGMA user_version = {_sqlite.SCHEMA_VERSION + 1}")
        reader = threading.Thread(target=lambda: errors.append(_error_of(store.consent_states)))
        errors: list[BaseException | None] = []
        reader.start()
        reader.join()
    assert isinstance(errors[0], MigrationError)


def _error_of(call: Callable[[tuple[str, str, str]], object]) -> BaseException | None:
    try:
        call(ALICE)
    except BaseException as exc:
        return exc
    return None


def test_migrate_false_leaves_the_schema_alone_until_asked(db_path: Path) -> None:
    with SQLiteStore(db_path, migrate=False) as store:
        with pytest.raises(MigrationError, match="call migrate"):
            store.consent_states(ALICE)
        assert pragma(db_path, "user_version") == 0
        store.migrate()
        assert store.consent_states(ALICE) == ()
    assert pragma(db_path, "user_version") == _sqlite.SCHEMA_VERSION


def test_another_programs_database_is_refused(db_path: Path) -> None:
    with raw(db_path) as db:
        db.execute("CREATE TABLE consent_events (x)")
    with pytest.raises(MigrationError):
        SQLiteStore(db_path)
    assert tables(db_path) == [("table", "consent_events")]
    with raw(db_path) as db:
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(MigrationError, match="not a privguard database"):
        SQLiteStore(db_path)
    # Refused before anything changed, not even the journal mode.
    assert pragma(db_path, "journal_mode") == "delete"
    assert tables(db_path) == [("table", "consent_events")]


def test_a_missing_table_is_a_migration_error(sqlite_store: SQLiteStore, db_path: Path) -> None:
    with raw(db_path) as db:
        db.execute("DROP TABLE collections")
    with pytest.raises(MigrationError, match="schema does not match"):
        sqlite_store.collections(ALICE)


def test_a_failing_migration_is_rolled_back_whole(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteStore(db_path).close()
    schema = tables(db_path)
    broken = _sqlite.Migration(
        _sqlite.SCHEMA_VERSION + 1,
        "broken",
        ("CREATE TABLE half_done (x)", "CREATE TABLE consent_events (x)"),
    )
    monkeypatch.setattr(_sqlite, "MIGRATIONS", (*_sqlite.MIGRATIONS, broken))
    monkeypatch.setattr(_sqlite, "SCHEMA_VERSION", broken.version)
    with pytest.raises(MigrationError, match="migration"):
        SQLiteStore(db_path)
    assert tables(db_path) == schema
    assert pragma(db_path, "user_version") == broken.version - 1


def test_processes_opening_a_new_file_at_once_migrate_it_once(db_path: Path) -> None:
    barrier = SPAWN.Barrier(3)
    workers = [
        SPAWN.Process(target=_write_consents, args=(str(db_path), w, 20, barrier)) for w in range(3)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert pragma(db_path, "user_version") == _sqlite.SCHEMA_VERSION
    with SQLiteStore(db_path) as store:
        assert sum(len(store.consent_history(s)) for s in SHARED_SUBJECTS) == 60


# -- the history is append-only in the database ------------------------------------------


def test_triggers_refuse_to_rewrite_history(sqlite_store: SQLiteStore, db_path: Path) -> None:
    sqlite_store.append_consent_events([event(1)])
    with raw(db_path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE consent_events SET action = 'withdraw'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM consent_events")
    assert sqlite_store.consent_history(ALICE) == (event(1),)


def test_the_state_projection_is_kept_by_the_database(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    # Another writer (a CLI import, say) inserts history directly; the state follows.
    sqlite_store.append_consent_events([event(1)])
    with raw(db_path) as db:
        db.execute(
            "INSERT INTO consent_events (event_id, consent_id, controller, subject_kind,"
            " subject_id, purpose, scope, action, policy_version, at_us, method, actor,"
            " notice_version, jurisdiction) VALUES ('evt-x', 'c', ?, ?, ?, 'marketing.email',"
            " '', 'withdraw', 'v', 0, 'import', 'a', 'n', '')",
            ALICE,
        )
    (state,) = sqlite_store.consent_states(ALICE)
    assert state.granted is False and state.consent_id == "c"


# -- failing closed ----------------------------------------------------------------------


def test_a_locked_database_fails_closed_and_writes_nothing(db_path: Path) -> None:
    with SQLiteStore(db_path, busy_timeout=0.2) as store:
        store.append_consent_events([event(1)])
        with raw(db_path) as other:
            other.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked") as caught:
                store.append_consent_events([event(2, SECRET)])
            assert 0.15 < time.monotonic() - started < 5
            assert str(db_path) in str(caught.value)
            assert_no_data(caught.value)
            with pytest.raises(StoreUnavailable, match="locked"), store.transaction():
                pass
            # WAL: readers are not blocked by a writer.
            assert store.consent_history(ALICE) == (event(1),)
            other.execute("ROLLBACK")
        assert store.consent_history(SECRET) == ()
        store.append_consent_events([event(3)])
        assert len(store.consent_history(ALICE)) == 2


def test_a_missing_file_with_create_false_fails_closed(db_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        SQLiteStore(db_path, create=False)
    assert not db_path.exists()


def test_an_existing_file_opens_with_create_false(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    with SQLiteStore(db_path, create=False) as store:
        store.append_consent_events([event(1)])


def test_a_missing_directory_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        SQLiteStore(tmp_path / "nowhere" / "privguard.db")


def test_random_bytes_fail_closed(db_path: Path) -> None:
    db_path.write_bytes(os.urandom(8192) + SECRET_ID.encode())
    with pytest.raises(StoreUnavailable, match="not a database") as caught:
        SQLiteStore(db_path)
    assert_no_data(caught.value)


def _filled(db_path: Path) -> bytes:
    subjects = [(*SECRET[:2], f"{SECRET_ID}-{i}") for i in range(40)]
    with SQLiteStore(db_path) as store:
        store.append_consent_events([event(i, subjects[i % 40]) for i in range(3000)])
    assert not Path(f"{db_path}-wal").exists()  # checkpointed into the main file
    return db_path.read_bytes()


def _touch_everything(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        for i in range(40):
            subject = (*SECRET[:2], f"{SECRET_ID}-{i}")
            store.consent_history(subject)
            store.consent_states(subject)
        store.append_consent_events([event(10_000, SECRET)])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 3], id="truncated"),
        pytest.param(lambda data: data[:4096] + os.urandom(len(data) - 4096), id="garbled"),
        pytest.param(
            lambda data: data[: len(data) - 8 * 4096] + os.urandom(8 * 4096), id="garbled-tail"
        ),
        pytest.param(lambda data: os.urandom(100) + data[100:], id="garbled-header"),
    ],
)
def test_a_damaged_database_fails_closed_without_data(db_path: Path, damage: object) -> None:
    data = _filled(db_path)
    db_path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises((StoreUnavailable, MigrationError)) as caught:
        _touch_everything(db_path)
    assert_no_data(caught.value)
    assert "cannot" in str(caught.value)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file read-only, even for root (who ignores permission bits)."""
    if sys.platform == "win32" or os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", path], check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a file read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", path], check=True)


def test_a_read_only_file_fails_closed_on_write(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.append_consent_events([event(1)])
    with read_only(db_path), SQLiteStore(db_path) as store:
        with pytest.raises(StoreUnavailable, match="read-only") as caught:
            store.append_consent_events([event(2, SECRET)])
        assert_no_data(caught.value)
        assert store.consent_history(ALICE) == (event(1),)
        assert store.consent_history(SECRET) == ()


def test_a_full_disk_fails_closed_and_writes_nothing(sqlite_store: SQLiteStore) -> None:
    sqlite_store.append_consent_events([event(1)])
    db = sqlite_store._connection().db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")  # this connection's "disk" is now full
    try:
        with pytest.raises(StoreUnavailable, match="disk is full") as caught:
            sqlite_store.append_consent_events([event(n, SECRET) for n in range(2, 3000)])
        assert_no_data(caught.value)
        with pytest.raises(StoreUnavailable, match="disk is full"), sqlite_store.transaction():
            sqlite_store.append_consent_events([event(n, SECRET) for n in range(2, 3000)])
    finally:
        db.execute("PRAGMA max_page_count = 4294967294")
    assert sqlite_store.consent_history(SECRET) == ()
    sqlite_store.append_consent_events([event(2)])
    assert len(sqlite_store.consent_history(ALICE)) == 2


def test_a_transaction_sqlite_rolled_back_never_commits_half(sqlite_store: SQLiteStore) -> None:
    # After an I/O error or a full disk SQLite may roll the whole transaction back; later
    # writes in the block must not commit on their own.
    rolled_back = pytest.raises(StoreUnavailable, match="rolled the transaction back")
    with rolled_back, sqlite_store.transaction():
        sqlite_store.append_consent_events([event(1)])
        sqlite_store._connection().db.execute("ROLLBACK")  # what SQLite would do
        with contextlib.suppress(StoreUnavailable):
            sqlite_store.append_consent_events([event(2)])
    assert sqlite_store.consent_history(ALICE) == ()
    sqlite_store.append_consent_events([event(3)])  # and the store goes on working
    assert sqlite_store.consent_history(ALICE) == (event(3),)


def test_errors_name_the_store_and_the_kind(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.append_consent_events([event(1)])
        with pytest.raises(StoreUnavailable) as caught:
            store.append_consent_events([event(1, SECRET)])
    assert str(caught.value) == (
        f"sqlite store {str(db_path)!r}: cannot append consent events: duplicate consent event id"
    )
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)


# -- lifecycle ---------------------------------------------------------------------------


async def test_close_closes_every_threads_connection(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.aappend_consent_events([event(1)])
    for _ in range(5):
        await store.aconsent_states(ALICE)
    threads = [threading.Thread(target=store.consent_history, args=(ALICE,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Path(f"{db_path}-wal").exists()
    store.close()
    assert store._connections == []
    # The last connection to close checkpoints and removes the WAL: none is left open.
    assert not Path(f"{db_path}-wal").exists()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.aconsent_history(ALICE)


def test_connections_of_ended_threads_are_closed(sqlite_store: SQLiteStore) -> None:
    for _ in range(5):
        t = threading.Thread(target=sqlite_store.consent_states, args=(ALICE,))
        t.start()
        t.join()
    # Each new connection prunes those of ended threads: this thread's and the last one.
    assert len(sqlite_store._connections) <= 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_store_opened_before_fork_fails_closed_in_the_child(sqlite_store: SQLiteStore) -> None:
    sqlite_store.append_consent_events([event(1)])
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=_use_after_fork, args=(sqlite_store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # The parent is untouched.
    sqlite_store.append_consent_events([event(2)])
    assert len(sqlite_store.consent_history(ALICE)) == 2


def _use_after_fork(store: SQLiteStore) -> None:
    for call in (store.change_token, lambda: store.consent_states(ALICE)):
        try:
            call()
        except StoreUnavailable as exc:
            assert "fork" in str(exc)
        else:
            raise AssertionError("a store inherited through fork() must fail closed")
    store.close()


# -- concurrency: processes --------------------------------------------------------------

SHARED_SUBJECTS = [("tenant-a", "customer", f"user-{i}") for i in range(10)]
PURPOSES = ("marketing.email", "analytics")
SCOPES = (Scope(), Scope(event="E1"))


def _write_consents(path: str, worker: int, count: int, barrier: object) -> None:
    """Run in a spawned process: append ``count`` events in transactions of 1 to 4.

    Every worker waits at ``barrier`` before it opens the store, so they really overlap.
    """
    barrier.wait()  # type: ignore[attr-defined]
    store = SQLiteStore(path, busy_timeout=60)
    try:
        i = 0
        while i < count:
            size = min(1 + i % 4, count - i)
            batch = [
                event(
                    n,
                    SHARED_SUBJECTS[n % len(SHARED_SUBJECTS)],
                    event_id=f"w{worker}-{n}",
                    consent_id=f"w{worker}-{n}",
                    purpose=PURPOSES[n % 2],
                    scope=SCOPES[(n // 2) % 2],
                    action=ConsentAction.GRANT if (n // 4) % 2 else ConsentAction.WITHDRAW,
                )
                for n in range(i, i + size)
            ]
            if size > 2:
                with store.transaction():
                    store.append_consent_events(batch[:1])
                    store.append_consent_events(batch[1:])
            else:
                store.append_consent_events(batch)
            i += size
            # Writers pause between transactions, as user-paced consent writes do. Without a
            # pause one process can starve the other: SQLite's busy handler polls with
            # growing sleeps, and the lock is free for only microseconds between commits.
            time.sleep(0.001)
    finally:
        store.close()


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    barrier = SPAWN.Barrier(2)
    workers = [
        SPAWN.Process(target=_write_consents, args=(str(db_path), w, 500, barrier)) for w in (1, 2)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0]

    with SQLiteStore(db_path) as store:
        ids: list[str] = []
        for subject in SHARED_SUBJECTS:
            history = store.consent_history(subject)
            ids.extend(e.event_id for e in history)
            for w in (1, 2):  # each process's events keep their order
                mine = [int(e.event_id.split("-")[1]) for e in history if e.event_id[1] == str(w)]
                assert mine == sorted(mine)
            newest = {(e.purpose, e.scope): e for e in history}
            states = store.consent_states(subject)
            assert {(s.purpose, s.scope): s.consent_id for s in states} == {
                k: e.consent_id for k, e in newest.items()
            }
            assert all(s.granted is (newest[s.purpose, s.scope].action == "grant") for s in states)
        assert len(ids) == 1000
        assert set(ids) == {f"w{w}-{n}" for w in (1, 2) for n in range(500)}
    with raw(db_path) as db:
        writers = [
            row[0][:2] for row in db.execute("SELECT event_id FROM consent_events ORDER BY seq")
        ]
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    # The two processes really wrote at the same time, taking turns at the write lock.
    assert switches > 10


def _append_one(path: str) -> None:
    with SQLiteStore(path) as store:
        store.append_consent_events([event(99)])


def test_change_token_sees_a_write_from_another_process(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    sqlite_store.append_consent_events([event(1)])
    before = sqlite_store.change_token()
    assert sqlite_store.change_token() == before
    writer = SPAWN.Process(target=_append_one, args=(str(db_path),))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    after = sqlite_store.change_token()
    assert after != before
    assert sqlite_store.change_token() == after
    assert len(sqlite_store.consent_history(ALICE)) == 2


# -- concurrency: threads ----------------------------------------------------------------


def test_many_threads_read_consistent_snapshots_while_one_writes(
    sqlite_store: SQLiteStore,
) -> None:
    done = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def write() -> None:
        try:
            for n in range(150):
                # Both purposes change in one transaction: readers see both or neither.
                with sqlite_store.transaction():
                    for purpose in PURPOSES:
                        sqlite_store.append_consent_events(
                            [
                                event(
                                    n,
                                    purpose=purpose,
                                    event_id=f"{purpose}-{n}",
                                    policy_version=f"v{n}",
                                )
                            ]
                        )
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                states = sqlite_store.consent_states(ALICE)
                assert len({s.policy_version for s in states}) <= 1
                assert len(sqlite_store.consent_history(ALICE)) % 2 == 0
                sqlite_store.change_token()
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(6)]
    writer = threading.Thread(target=write)
    for t in [*readers, writer]:
        t.start()
    for t in [writer, *readers]:
        t.join(60)
    assert errors == []
    assert reads[0] > 0
    assert len(sqlite_store.consent_history(ALICE)) == 300


def test_reads_do_not_wait_for_an_open_write_transaction(sqlite_store: SQLiteStore) -> None:
    sqlite_store.append_consent_events([event(1)])
    holding, release = threading.Event(), threading.Event()

    def write() -> None:
        with sqlite_store.transaction():
            sqlite_store.append_consent_events([event(2)])
            holding.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert holding.wait(10)
        timings: list[float] = []

        def read() -> None:
            started = time.monotonic()
            assert sqlite_store.consent_history(ALICE) == (event(1),)  # not the uncommitted one
            timings.append(time.monotonic() - started)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(10)
        read()
        assert len(timings) == 5 and max(timings) < 1.0
    finally:
        release.set()
        writer.join(10)
    assert len(sqlite_store.consent_history(ALICE)) == 2


def test_many_threads_writing_at_once_lose_nothing(sqlite_store: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(50):
                sqlite_store.append_consent_events([event(worker * 1000 + n)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(sqlite_store.consent_history(ALICE)) == 400
