"""The SQLite store: the embedded default. One file, many threads, several processes.

Design (details and reasons in ``docs/stores.md``):

- One connection per thread (``threading.local``), all tracked so :meth:`close` can close
  them. Readers never take a Python lock: WAL lets them read a consistent snapshot while
  a writer works.
- Writes run in ``BEGIN IMMEDIATE`` transactions, so a writer takes the database's write
  lock up front and never deadlocks upgrading a read lock. A process-local lock queues this
  process's writers in Python instead of in SQLite's sleeping busy handler.
- The current-state projection ``consent_state`` is kept by a trigger on
  ``consent_events``, so it is exact whoever writes; triggers also refuse UPDATE and DELETE
  of the history.
- Every sqlite3 error becomes :class:`StoreUnavailable` (or :class:`MigrationError` for
  schema trouble) whose message names the store and the kind of failure, never data.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from .._errors import MigrationError, PolicyError, StoreError, StoreUnavailable
from .._records import (
    CollectionRecord,
    ConsentAction,
    ConsentEvent,
    ConsentMethod,
    ConsentState,
    DisclosureRecord,
    Evidence,
)
from .._subject import Scope, Source
from ._base import Store, SubjectKey

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "Migration", "SQLiteStore"]

#: ``PRAGMA application_id`` of a privguard database ("pgrd"): marks the file as ours.
APPLICATION_ID: Final = 0x70677264


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step. Applied in one transaction, with ``PRAGMA user_version``."""

    version: int
    name: str
    statements: tuple[str, ...]


# Append new migrations at the end; never edit one that has shipped.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "consent history, consent state, provenance",
        (
            # seq is the rowid, named so VACUUM never renumbers it; event_id is the
            # natural key. Times are integer microseconds since the Unix epoch, UTC.
            """CREATE TABLE consent_events (
                seq            INTEGER PRIMARY KEY,
                event_id       TEXT NOT NULL UNIQUE,
                consent_id     TEXT NOT NULL,
                controller     TEXT NOT NULL,
                subject_kind   TEXT NOT NULL,
                subject_id     TEXT NOT NULL,
                purpose        TEXT NOT NULL,
                scope          TEXT NOT NULL,
                action         TEXT NOT NULL CHECK (action IN ('grant', 'withdraw')),
                policy_version TEXT NOT NULL,
                at_us          INTEGER NOT NULL,
                method         TEXT NOT NULL,
                actor          TEXT NOT NULL,
                notice_version TEXT NOT NULL,
                jurisdiction   TEXT NOT NULL,
                request_trace  TEXT
            )""",
            # Every index ends with the rowid, so this reads a subject's history in order.
            """CREATE INDEX consent_events_by_subject
                ON consent_events (controller, subject_kind, subject_id)""",
            """CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
            BEGIN
                SELECT RAISE(ABORT, 'consent_events is append-only');
            END""",
            """CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
            BEGIN
                SELECT RAISE(ABORT, 'consent_events is append-only');
            END""",
            # Clustered on the subject: consent_states(subject) is one primary-key range.
            """CREATE TABLE consent_state (
                controller     TEXT NOT NULL,
                subject_kind   TEXT NOT NULL,
                subject_id     TEXT NOT NULL,
                purpose        TEXT NOT NULL,
                scope          TEXT NOT NULL,
                consent_id     TEXT NOT NULL,
                granted        INTEGER NOT NULL CHECK (granted IN (0, 1)),
                policy_version TEXT NOT NULL,
                at_us          INTEGER NOT NULL,
                seq            INTEGER NOT NULL REFERENCES consent_events (seq),
                PRIMARY KEY (controller, subject_kind, subject_id, purpose, scope)
            ) WITHOUT ROWID""",
            """CREATE TRIGGER consent_events_project AFTER INSERT ON consent_events
            BEGIN
                INSERT INTO consent_state (controller, subject_kind, subject_id, purpose,
                    scope, consent_id, granted, policy_version, at_us, seq)
                VALUES (NEW.controller, NEW.subject_kind, NEW.subject_id, NEW.purpose,
                    NEW.scope, NEW.consent_id, NEW.action = 'grant', NEW.policy_version,
                    NEW.at_us, NEW.seq)
                ON CONFLICT (controller, subject_kind, subject_id, purpose, scope)
                DO UPDATE SET consent_id = excluded.consent_id, granted = excluded.granted,
                    policy_version = excluded.policy_version, at_us = excluded.at_us,
                    seq = excluded.seq
                WHERE excluded.seq > consent_state.seq;
            END""",
            """CREATE TABLE collections (
                seq            INTEGER PRIMARY KEY,
                record_id      TEXT NOT NULL UNIQUE,
                controller     TEXT NOT NULL,
                subject_kind   TEXT NOT NULL,
                subject_id     TEXT NOT NULL,
                categories     TEXT NOT NULL,
                purpose        TEXT NOT NULL,
                source         TEXT NOT NULL,
                scope          TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                bound          INTEGER NOT NULL CHECK (bound IN (0, 1)),
                at_us          INTEGER NOT NULL
            )""",
            """CREATE INDEX collections_by_subject
                ON collections (controller, subject_kind, subject_id)""",
        ),
    ),
    Migration(
        2,
        "disclosure log",
        (
            # One row per subject per disclosure (C10-C15, C19). Append-only, like the
            # consent history. categories is a JSON array; scope a Scope key.
            """CREATE TABLE disclosures (
                seq            INTEGER PRIMARY KEY,
                disclosure_id  TEXT NOT NULL UNIQUE,
                batch_id       TEXT NOT NULL,
                controller     TEXT NOT NULL,
                subject_kind   TEXT NOT NULL,
                subject_id     TEXT NOT NULL,
                recipient      TEXT NOT NULL,
                recipient_kind TEXT NOT NULL,
                purpose        TEXT NOT NULL,
                categories     TEXT NOT NULL,
                basis          TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                at_us          INTEGER NOT NULL,
                channel        TEXT NOT NULL,
                scope          TEXT NOT NULL,
                consent_id     TEXT,
                reference      TEXT,
                agreement      TEXT,
                trace_id       TEXT,
                span_id        TEXT
            )""",
            # "Who got my data": a subject's disclosures, in the order written.
            """CREATE INDEX disclosures_by_subject
                ON disclosures (controller, subject_kind, subject_id)""",
            # "What did this recipient get, and when": by recipient and time range.
            """CREATE INDEX disclosures_by_recipient ON disclosures (recipient, at_us)""",
            """CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures
            BEGIN
                SELECT RAISE(ABORT, 'disclosures is append-only');
            END""",
            """CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures
            BEGIN
                SELECT RAISE(ABORT, 'disclosures is append-only');
            END""",
        ),
    ),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

# Literal SQL only: every value is bound with "?", never formatted into a statement.
_INSERT_EVENT: Final = """
    INSERT INTO consent_events (event_id, consent_id, controller, subject_kind, subject_id,
        purpose, scope, action, policy_version, at_us, method, actor, notice_version,
        jurisdiction, request_trace)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_SELECT_HISTORY: Final = """
    SELECT event_id, consent_id, controller, subject_kind, subject_id, purpose, scope, action,
        policy_version, at_us, method, actor, notice_version, jurisdiction, request_trace
    FROM consent_events
    WHERE controller = ? AND subject_kind = ? AND subject_id = ?
    ORDER BY seq"""
_SELECT_STATES: Final = """
    SELECT consent_id, purpose, scope, granted, policy_version, at_us, seq
    FROM consent_state
    WHERE controller = ? AND subject_kind = ? AND subject_id = ?"""
# The change token and the states in one statement, so one read transaction: the
# LEFT JOIN keeps the data_version row when the subject has no states.
_SELECT_SNAPSHOT: Final = """
    SELECT d.data_version, s.consent_id, s.purpose, s.scope, s.granted, s.policy_version,
        s.at_us, s.seq
    FROM pragma_data_version AS d
    LEFT JOIN consent_state AS s
        ON s.controller = ? AND s.subject_kind = ? AND s.subject_id = ?"""
_INSERT_COLLECTION: Final = """
    INSERT INTO collections (record_id, controller, subject_kind, subject_id, categories,
        purpose, source, scope, policy_version, bound, at_us)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_SELECT_COLLECTIONS: Final = """
    SELECT record_id, controller, subject_kind, subject_id, categories, purpose, source, scope,
        policy_version, bound, at_us
    FROM collections
    WHERE controller = ? AND subject_kind = ? AND subject_id = ?
    ORDER BY seq"""

_INSERT_DISCLOSURE: Final = """
    INSERT INTO disclosures (disclosure_id, batch_id, controller, subject_kind, subject_id,
        recipient, recipient_kind, purpose, categories, basis, policy_version, at_us, channel,
        scope, consent_id, reference, agreement, trace_id, span_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_SELECT_DISCLOSURES_BY_SUBJECT: Final = """
    SELECT disclosure_id, batch_id, controller, subject_kind, subject_id,
        recipient, recipient_kind, purpose, categories, basis, policy_version, at_us, channel,
        scope, consent_id, reference, agreement, trace_id, span_id
    FROM disclosures
    WHERE controller = ? AND subject_kind = ? AND subject_id = ?
    ORDER BY seq"""
_SELECT_DISCLOSURES_BY_RECIPIENT: Final = """
    SELECT disclosure_id, batch_id, controller, subject_kind, subject_id,
        recipient, recipient_kind, purpose, categories, basis, policy_version, at_us, channel,
        scope, consent_id, reference, agreement, trace_id, span_id
    FROM disclosures
    WHERE recipient = ? AND at_us >= ? AND at_us < ?
    ORDER BY at_us, seq"""
_MIN_US: Final = -(2**63)
_MAX_US: Final = 2**63 - 1

_T = TypeVar("_T")

_SELECT_SCHEMA_VERSION: Final = (
    "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version"
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# Primary result codes (``sqlite_errorcode & 0xFF``) and what they mean to an operator.
_KINDS: Final[dict[int, str]] = {
    sqlite3.SQLITE_NOTADB: "the file is not a database",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt",
    sqlite3.SQLITE_CANTOPEN: (
        "cannot open the database file (missing file or directory, or no permission)"
    ),
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_READONLY: "the database is read-only",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_NOMEM: "out of memory",
    sqlite3.SQLITE_PROTOCOL: "file locking protocol error",
    sqlite3.SQLITE_TOOBIG: "a value is too big",
    sqlite3.SQLITE_INTERRUPT: "interrupted",
    sqlite3.SQLITE_NOLFS: "large files are not supported",
}
_BUSY: Final = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_SCHEMA_MARKERS: Final = ("no such table", "no such column", "has no column", "already exists")


def _to_micros(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError("sqlite store: a record's time must be timezone-aware")
    return (at - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@functools.lru_cache(maxsize=4096)
def _scope(key: str) -> Scope:
    # Scopes repeat across subjects and are immutable: parse each key once.
    return Scope.parse(key)


def _event_row(event: ConsentEvent) -> tuple[object, ...]:
    evidence = event.evidence
    return (
        event.event_id,
        event.consent_id,
        event.controller,
        event.subject_kind,
        event.subject_id,
        event.purpose,
        event.scope.key,
        ConsentAction(event.action).value,
        event.policy_version,
        _to_micros(event.at),
        evidence.method.value,
        evidence.actor,
        evidence.notice_version,
        evidence.jurisdiction,
        evidence.request_trace,
    )


def _event(row: Any) -> ConsentEvent:
    return ConsentEvent(
        event_id=row[0],
        consent_id=row[1],
        controller=row[2],
        subject_kind=row[3],
        subject_id=row[4],
        purpose=row[5],
        scope=_scope(row[6]),
        action=ConsentAction(row[7]),
        policy_version=row[8],
        at=_from_micros(row[9]),
        evidence=Evidence(
            method=ConsentMethod(row[10]),
            actor=row[11],
            notice_version=row[12],
            jurisdiction=row[13],
            request_trace=row[14],
        ),
    )


def _state(row: Any) -> ConsentState:
    # Positional: this runs on every consent-cache miss.
    return ConsentState(
        row[0], row[1], _scope(row[2]), bool(row[3]), row[4], _from_micros(row[5]), row[6]
    )


def _collection_row(record: CollectionRecord) -> tuple[object, ...]:
    return (
        record.record_id,
        record.controller,
        record.subject_kind,
        record.subject_id,
        json.dumps(list(record.categories)),
        record.purpose,
        Source(record.source).value,
        record.scope.key,
        record.policy_version,
        int(bool(record.bound)),
        _to_micros(record.at),
    )


def _collection(row: Any) -> CollectionRecord:
    return CollectionRecord(
        record_id=row[0],
        controller=row[1],
        subject_kind=row[2],
        subject_id=row[3],
        categories=tuple(json.loads(row[4])),
        purpose=row[5],
        source=Source(row[6]),
        scope=_scope(row[7]),
        policy_version=row[8],
        bound=bool(row[9]),
        at=_from_micros(row[10]),
    )


@functools.lru_cache(maxsize=4096)
def _categories_json(categories: tuple[str, ...]) -> str:
    # A bulk export repeats a handful of category sets: encode each once.
    return json.dumps(list(categories))


@functools.lru_cache(maxsize=4096)
def _categories(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _disclosure_rows(records: Sequence[DisclosureRecord]) -> Iterator[tuple[object, ...]]:
    # One record after another, straight into executemany. A batch shares its time, so
    # the conversion of the last one is reused.
    last_at: datetime | None = None
    at_us = 0
    categories = _categories_json
    for r in records:
        if r.at is not last_at:
            at_us = _to_micros(r.at)
            last_at = r.at
        yield (
            r.disclosure_id,
            r.batch_id,
            r.controller,
            r.subject_kind,
            r.subject_id,
            r.recipient,
            r.recipient_kind,
            r.purpose,
            categories(r.categories),
            r.basis,
            r.policy_version,
            at_us,
            r.channel,
            r.scope.key,
            r.consent_id,
            r.reference,
            r.agreement,
            r.trace_id,
            r.span_id,
        )


def _disclosure(row: Any) -> DisclosureRecord:
    return DisclosureRecord(
        disclosure_id=row[0],
        batch_id=row[1],
        controller=row[2],
        subject_kind=row[3],
        subject_id=row[4],
        recipient=row[5],
        recipient_kind=row[6],
        purpose=row[7],
        categories=_categories(row[8]),
        basis=row[9],
        policy_version=row[10],
        at=_from_micros(row[11]),
        channel=row[12],
        scope=_scope(row[13]),
        consent_id=row[14],
        reference=row[15],
        agreement=row[16],
        trace_id=row[17],
        span_id=row[18],
    )


def _active(c: _Connection) -> bool:
    """Whether the connection is inside a transaction (a closed one is not)."""
    try:
        return c.db.in_transaction
    except sqlite3.Error:
        return False


class _Connection:
    """One thread's connection and its transaction bookkeeping."""

    __slots__ = ("data_version", "db", "depth", "doomed", "schema_ok", "thread", "version_cursor")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.thread = weakref.ref(threading.current_thread())
        #: 0 outside a transaction, 1 in the outer one, more in nested ones.
        self.depth = 0
        #: SQLite rolled the whole transaction back under us: the outer one must not commit.
        self.doomed = False
        self.schema_ok = False
        #: The last ``PRAGMA data_version`` seen by :meth:`SQLiteStore.change_token`.
        self.data_version: int | None = None
        #: Reused by change_token: a fresh cursor per call costs a third more.
        self.version_cursor = db.cursor()


class SQLiteStore(Store):
    """The embedded default store: one SQLite file in WAL mode.

    Safe for many threads in one process and several processes on one host (not for a
    network file system). Every failure raises :class:`StoreUnavailable` (schema trouble:
    :class:`MigrationError`), so checks fail closed.

    >>> store = SQLiteStore("privguard.db")  # doctest: +SKIP
    >>> with store.transaction():  # doctest: +SKIP
    ...     store.append_consent_events([grant])
    ...     store.append_collections([record])

    ``create=False`` refuses to create a missing file. ``busy_timeout`` (seconds) is how
    long a write waits for other writers before failing. ``migrate=False`` leaves the
    schema alone: call :meth:`migrate` yourself (until then every read and write raises
    :class:`MigrationError`). A database written by newer code, or not by privguard,
    raises :class:`MigrationError` here, before anything in it is changed.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        raw = os.fspath(path)
        if not isinstance(raw, str) or not raw or raw == ":memory:" or "\x00" in raw:
            raise PolicyError("SQLiteStore needs a file path; use MemoryStore in memory")
        if not isinstance(busy_timeout, int | float) or not 0 <= busy_timeout < math.inf:
            raise PolicyError("busy_timeout must be a finite number of seconds, at least 0")
        if sqlite3.sqlite_version_info < (3, 24, 0):
            raise StoreUnavailable(
                f"sqlite store needs SQLite 3.24 or later, found {sqlite3.sqlite_version}"
            )
        self.path = Path(raw).absolute()
        self._label = f"sqlite store {str(self.path)!r}"
        self._uri = f"{self.path.as_uri()}?mode={'rwc' if create else 'rw'}"
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _connections and _generation
        self._write_lock = threading.Lock()  # this process's writers queue here
        self._connections: list[_Connection] = []
        self._inherited: list[_Connection] = []  # from a parent process: never touched
        self._generation = 0
        self._closed = False
        self._closed_why = "the store is closed"
        _LIVE_STORES.add(self)
        try:
            c = self._connection(check_schema=False)
            # Refuse a foreign or newer database before changing anything in it.
            self._schema_version(c)
            self._enable_wal(c)
            if migrate:
                self.migrate()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- lifecycle -----------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction. Idempotent.

        Safe when several processes start at once: each migration re-reads the version
        under the write lock. A database newer than this code raises
        :class:`MigrationError`, and so does a SQLite file that is not privguard's.
        """
        c = self._connection(check_schema=False)
        if c.depth:
            raise MigrationError(f"{self._label}: cannot migrate inside a transaction")
        version = self._schema_version(c)
        for migration in MIGRATIONS:
            if migration.version > version:
                self._apply(c, migration)
        c.schema_ok = True

    def close(self) -> None:
        """Close every connection this store opened, in every thread. Idempotent."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for c in connections:
            self._close_quietly(c)
        self._local = threading.local()
        _LIVE_STORES.discard(self)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group this thread's writes into one ``BEGIN IMMEDIATE`` transaction.

        Nested use joins the outer transaction through a savepoint: an exception undoes the
        inner block's writes and, unless caught, the whole transaction.
        """
        c = self._connection()
        if c.depth == 0:
            self._begin(c)
            c.depth = 1
            try:
                yield
            except BaseException:
                self._finish(c, commit=False)
                raise
            self._finish(c, commit=True)
            return
        name = f"privguard_{c.depth}"
        self._in_transaction(c, f"SAVEPOINT {name}", "begin a nested transaction")
        c.depth += 1
        try:
            yield
        except BaseException:
            c.depth -= 1
            try:
                c.db.execute(f"ROLLBACK TO {name}")
                c.db.execute(f"RELEASE {name}")
            except sqlite3.Error:
                c.doomed = True
            raise
        c.depth -= 1
        self._in_transaction(c, f"RELEASE {name}", "end a nested transaction")

    # -- consents ------------------------------------------------------------------
    def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        c = self._connection()
        if not events:
            return
        try:
            with self.transaction():
                c.db.executemany(_INSERT_EVENT, map(_event_row, events))
        except sqlite3.Error as exc:
            raise self._failure(exc, "append consent events") from exc

    def consent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        return self._read(_SELECT_STATES, subject, _state, "read consent states")

    def consent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        return self._read(_SELECT_HISTORY, subject, _event, "read consent history")

    def change_token(self) -> Hashable:
        """A process-wide counter, bumped after this process commits and whenever a
        connection sees ``PRAGMA data_version`` move (a commit by another connection).

        ``data_version`` alone is not enough: it ignores the connection's own commits, and
        its values are not comparable between two threads' connections. A connection's
        first look also bumps the counter, since it cannot know what it missed.
        """
        c = self._connection()
        try:
            data_version = c.version_cursor.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._failure(exc, "read the change token") from exc
        if data_version != c.data_version:
            with self._lock:
                c.data_version = data_version
                self._generation += 1
        return self._generation

    def consent_snapshot(self, subject: SubjectKey) -> tuple[Hashable, tuple[ConsentState, ...]]:
        c = self._connection()
        try:
            rows = c.db.execute(_SELECT_SNAPSHOT, subject).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc, "read consent states") from exc
        data_version = rows[0][0]
        if data_version != c.data_version:
            with self._lock:
                c.data_version = data_version
                self._generation += 1
        try:
            states = tuple(_state(row[1:]) for row in rows if row[1] is not None)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            invalid = f"{self._label}: cannot read consent states: a stored record is invalid"
            raise StoreUnavailable(invalid) from exc
        return self._generation, states

    # -- provenance ----------------------------------------------------------------
    def append_collections(self, records: Sequence[CollectionRecord]) -> None:
        c = self._connection()
        if not records:
            return
        try:
            with self.transaction():
                c.db.executemany(_INSERT_COLLECTION, map(_collection_row, records))
        except sqlite3.Error as exc:
            raise self._failure(exc, "append collection records") from exc

    def collections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]:
        return self._read(_SELECT_COLLECTIONS, subject, _collection, "read collection records")

    # -- disclosures -----------------------------------------------------------------
    def append_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        """One ``executemany`` in one transaction: all the records or none."""
        c = self._connection()
        if not records:
            return
        try:
            with self.transaction():
                c.db.executemany(_INSERT_DISCLOSURE, _disclosure_rows(records))
        except sqlite3.Error as exc:
            raise self._failure(exc, "append disclosures") from exc

    def disclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        return self._read(_SELECT_DISCLOSURES_BY_SUBJECT, subject, _disclosure, "read disclosures")

    def disclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        low = _MIN_US if since is None else _to_micros(since)
        high = _MAX_US if until is None else _to_micros(until)
        return self._read(
            _SELECT_DISCLOSURES_BY_RECIPIENT,
            (recipient, low, high),
            _disclosure,
            "read disclosures",
        )

    # -- connections -----------------------------------------------------------------
    def _connection(self, *, check_schema: bool = True) -> _Connection:
        if self._closed:
            raise StoreUnavailable(f"{self._label}: {self._closed_why}")
        c: _Connection | None = getattr(self._local, "connection", None)
        if c is None:
            c = self._open()
        if check_schema and not c.schema_ok:
            self._schema_version(c, current=True)
            c.schema_ok = True
        return c

    def _open(self) -> _Connection:
        try:
            db = sqlite3.connect(
                self._uri,
                uri=True,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # so close() can close other threads' connections
            )
        except sqlite3.Error as exc:
            raise self._failure(exc, "open the database") from exc
        c = _Connection(db)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            # FULL: a commit is on disk (WAL fsynced) before it returns; see docs/stores.md.
            db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            self._close_quietly(c)
            raise self._failure(exc, "open the database") from exc
        with self._lock:
            if self._closed:
                self._close_quietly(c)
                raise StoreUnavailable(f"{self._label}: the store is closed")
            self._prune_locked()
            self._connections.append(c)
        self._local.connection = c
        return c

    def _prune_locked(self) -> None:
        # Close the connections of threads that have ended (thread pools come and go).
        alive = []
        for c in self._connections:
            thread = c.thread()
            if thread is not None and thread.is_alive():
                alive.append(c)
            else:
                self._close_quietly(c)
        self._connections = alive

    def _discard(self, c: _Connection) -> None:
        with self._lock:
            if c in self._connections:
                self._connections.remove(c)
        self._close_quietly(c)
        if getattr(self._local, "connection", None) is c:
            del self._local.connection

    @staticmethod
    def _close_quietly(c: _Connection) -> None:
        with suppress(sqlite3.Error):
            c.db.close()

    def _after_fork_in_child(self) -> None:
        # SQLite connections must not cross fork(), and SQLite's per-process lock
        # bookkeeping is copied with them, so a store opened before fork() fails closed in
        # the child. Its connections are kept, never used or closed: closing one could roll
        # back into the wal-index the parent still shares.
        self._inherited.extend(self._connections)
        self._connections = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = True
        self._closed_why = "it was opened before fork(); open the store in the child process"

    def _enable_wal(self, c: _Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite skips the busy
        # handler for it when that could deadlock: processes opening a new file at once
        # retry here until the busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = c.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.Error as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY
                if not busy or time.monotonic() >= deadline:
                    raise self._failure(exc, "enable WAL") from exc
                time.sleep(0.005)
        if str(mode).lower() != "wal":
            raise StoreUnavailable(f"{self._label}: cannot enable WAL journal mode")

    # -- schema ----------------------------------------------------------------------
    def _schema_version(self, c: _Connection, *, current: bool = False) -> int:
        version: int
        try:
            # One statement, so both come from one snapshot even while a migration commits.
            application_id, version = c.db.execute(_SELECT_SCHEMA_VERSION).fetchone()
        except sqlite3.Error as exc:
            raise self._failure(exc, "read the schema version") from exc
        if application_id != APPLICATION_ID and (application_id != 0 or version != 0):
            raise MigrationError(f"{self._label}: not a privguard database")
        if version > SCHEMA_VERSION:
            raise MigrationError(
                f"{self._label}: schema version {version} is newer than this code's"
                f" ({SCHEMA_VERSION}); upgrade privguard"
            )
        if current and version < SCHEMA_VERSION:
            raise MigrationError(
                f"{self._label}: schema version {version} is older than this code's"
                f" ({SCHEMA_VERSION}); call migrate()"
            )
        return version

    def _apply(self, c: _Connection, migration: Migration) -> None:
        self._begin(c)
        try:
            version = self._schema_version(c)  # another process may have got here first
            if version < migration.version:
                if version != migration.version - 1:
                    raise MigrationError(
                        f"{self._label}: cannot apply migration {migration.version}"
                        f" to schema version {version}"
                    )
                for statement in migration.statements:
                    c.db.execute(statement)
                c.db.execute(f"PRAGMA user_version = {migration.version:d}")
                c.db.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        except BaseException as exc:
            self._finish(c, commit=False)
            if isinstance(exc, sqlite3.Error):
                failure = self._failure(exc, f"apply migration {migration.version}")
                primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                schema_trouble = (sqlite3.SQLITE_ERROR, sqlite3.SQLITE_CONSTRAINT)
                if isinstance(failure, StoreUnavailable) and primary in schema_trouble:
                    failure = MigrationError(str(failure))
                raise failure from exc
            raise
        self._finish(c, commit=True)

    # -- transactions ----------------------------------------------------------------
    def _begin(self, c: _Connection) -> None:
        started = time.monotonic()
        if not self._write_lock.acquire(timeout=self._busy_timeout):
            raise StoreUnavailable(f"{self._label}: cannot write: {self._locked()}")
        try:
            # Threads of this process waited above; what is left is for other processes.
            waited = time.monotonic() - started
            shortened = waited > 0.001
            if shortened:
                remaining = max(0, int((self._busy_timeout - waited) * 1000))
                c.db.execute(f"PRAGMA busy_timeout = {remaining:d}")
            try:
                c.db.execute("BEGIN IMMEDIATE")
            finally:
                if shortened:
                    c.db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000):d}")
        except BaseException as exc:
            if _active(c):
                self._finish(c, commit=False)
            else:
                self._write_lock.release()
            if isinstance(exc, sqlite3.Error):
                raise self._failure(exc, "begin a transaction") from exc
            raise

    def _finish(self, c: _Connection, *, commit: bool) -> None:
        """End the outer transaction: commit or roll back, and always release the lock."""
        failure: BaseException | None = None
        committed = False
        try:
            if commit:
                if c.doomed or not _active(c):
                    failure = StoreUnavailable(
                        f"{self._label}: cannot commit: the database rolled the transaction back"
                    )
                else:
                    try:
                        c.db.execute("COMMIT")
                        committed = True
                    except sqlite3.Error as exc:
                        failure = self._failure(exc, "commit")
                        failure.__cause__ = exc
            if not committed and _active(c):
                try:
                    c.db.execute("ROLLBACK")
                except sqlite3.Error:
                    # A connection stuck in a transaction would hold the write lock.
                    self._discard(c)
        finally:
            c.depth = 0
            c.doomed = False
            self._write_lock.release()
        if committed:
            with self._lock:
                self._generation += 1
        if failure is not None:
            raise failure

    def _in_transaction(self, c: _Connection, sql: str, doing: str) -> None:
        # After some errors (disk full, I/O) SQLite rolls the whole transaction back; a
        # SAVEPOINT would then quietly start a new one and commit half the writes.
        if c.doomed or not _active(c):
            c.doomed = True
            raise StoreUnavailable(
                f"{self._label}: cannot {doing}: the database rolled the transaction back"
            )
        try:
            c.db.execute(sql)
        except sqlite3.Error as exc:
            c.doomed = True
            raise self._failure(exc, doing) from exc

    # -- reads and errors ------------------------------------------------------------
    def _read(
        self, sql: str, params: tuple[object, ...], build: Callable[[Any], _T], doing: str
    ) -> tuple[_T, ...]:
        c = self._connection()
        try:
            rows = c.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc, doing) from exc
        try:
            return tuple(build(row) for row in rows)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            invalid = f"{self._label}: cannot {doing}: a stored record is invalid"
            raise StoreUnavailable(invalid) from exc

    def _locked(self) -> str:
        return f"the database is locked (busy for more than {self._busy_timeout:g} s)"

    def _failure(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """The privguard error for a sqlite3 error: the store and the kind, never data."""
        prefix = f"{self._label}: cannot {doing}"
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # raised by the sqlite3 module itself, not by SQLite
            if self._closed:
                return StoreUnavailable(f"{prefix}: the store is closed")
            return StoreUnavailable(f"{prefix}: {type(exc).__name__}")
        primary = code & 0xFF
        if primary in _BUSY:
            return StoreUnavailable(f"{prefix}: {self._locked()}")
        if primary == sqlite3.SQLITE_CONSTRAINT:
            text = str(exc)
            if "consent_events.event_id" in text:
                kind = "duplicate consent event id"
            elif "collections.record_id" in text:
                kind = "duplicate collection record id"
            elif "disclosures.disclosure_id" in text:
                kind = "duplicate disclosure id"
            elif "disclosures is append-only" in text:
                kind = "the disclosure log is append-only"
            elif "append-only" in text:
                kind = "consent history is append-only"
            else:
                kind = f"a constraint failed ({exc.sqlite_errorname})"
            return StoreUnavailable(f"{prefix}: {kind}")
        if primary in (sqlite3.SQLITE_ERROR, sqlite3.SQLITE_SCHEMA) and any(
            marker in str(exc) for marker in _SCHEMA_MARKERS
        ):
            return MigrationError(f"{prefix}: the schema does not match this code")
        kind = _KINDS.get(primary, f"SQLite error {exc.sqlite_errorname}")
        return StoreUnavailable(f"{prefix}: {kind}")


_LIVE_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE_STORES):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
