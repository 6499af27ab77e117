"""The PostgreSQL store: many processes on many hosts share one consent ledger.

Design (details and reasons in ``docs/postgresql.md``):

- psycopg 3 with a connection pool per process (``psycopg_pool``); the async twins use
  their own ``AsyncConnectionPool`` on the caller's event loop, never worker threads.
  psycopg is imported when the first store is built, so the core works without it.
- Every table lives in the store's schema, named in every statement: no ``search_path``,
  no session state, no prepared statements unless asked. It works behind a
  transaction-mode pooler (PgBouncer); only the change listener needs a session.
- Migrations are an ordered tuple, applied under a transaction-scoped advisory lock, so
  processes that start at once migrate once. A schema newer than the code is refused.
- The history is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE), and the
  current-state projection is kept by a statement trigger on the history, so it is exact
  whoever inserts. A trigger on the projection sends ``NOTIFY``; a listener thread per
  store turns it into a process-local change token, trusted only while the listener has
  proved itself current within ``max_staleness`` seconds.
- Fail closed: every psycopg error becomes :class:`StoreUnavailable` (schema trouble:
  :class:`MigrationError`) naming the store and the kind of failure, never a value.
  Writes outside a transaction are retried after transient failures; event ids are
  unique, so a retry after an ambiguous commit is recognised and never duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import re
import select
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

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

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool
    from psycopg import errors, sql
    from psycopg.adapt import Buffer, Loader
    from psycopg.pq import Format

__all__ = [
    "INSTALL_HINT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "PostgresStore",
    "migrate_database",
]

#: What to install when psycopg is missing.
INSTALL_HINT: Final = "pip install 'privguard[postgresql]'"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step, applied in one transaction with its row in ``schema_migrations``.

    Statements name the store's schema as ``{schema}``; it is filled in, quoted, when the
    migration runs.
    """

    version: int
    name: str
    statements: tuple[str, ...]


# Append new migrations at the end; never edit one that has shipped.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "consent history, consent state, provenance",
        (
            # Refuses UPDATE, DELETE and TRUNCATE of an append-only table, whoever connects
            # (short of a superuser disabling triggers: see docs/postgresql.md).
            """CREATE FUNCTION {schema}.refuse_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                    USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
            END
            $$""",
            """CREATE TABLE {schema}.consent_events (
                seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id       text NOT NULL,
                consent_id     text NOT NULL,
                controller     text NOT NULL,
                subject_kind   text NOT NULL,
                subject_id     text NOT NULL,
                purpose        text NOT NULL,
                scope          text NOT NULL,
                action         text NOT NULL CHECK (action IN ('grant', 'withdraw')),
                policy_version text NOT NULL,
                at             timestamptz NOT NULL,
                method         text NOT NULL,
                actor          text NOT NULL,
                notice_version text NOT NULL,
                jurisdiction   text NOT NULL,
                request_trace  text,
                CONSTRAINT consent_events_event_id_key UNIQUE (event_id)
            )""",
            # A subject's history in seq order is one index range, with no sort.
            """CREATE INDEX consent_events_by_subject
                ON {schema}.consent_events (controller, subject_kind, subject_id, seq)""",
            """CREATE TRIGGER consent_events_append_only
                BEFORE UPDATE OR DELETE OR TRUNCATE ON {schema}.consent_events
                FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_change()""",
            """CREATE TABLE {schema}.consent_state (
                controller     text NOT NULL,
                subject_kind   text NOT NULL,
                subject_id     text NOT NULL,
                purpose        text NOT NULL,
                scope          text NOT NULL,
                consent_id     text NOT NULL,
                granted        boolean NOT NULL,
                policy_version text NOT NULL,
                at             timestamptz NOT NULL,
                seq            bigint NOT NULL REFERENCES {schema}.consent_events (seq),
                PRIMARY KEY (controller, subject_kind, subject_id, purpose, scope)
            )""",
            # One upsert per INSERT or COPY into the history, whatever its size: the newest
            # event per key wins, and an older seq never replaces a newer one. Rows are
            # upserted in key order, so two batches never deadlock on each other.
            """CREATE FUNCTION {schema}.consent_events_project() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {schema}.consent_state AS s (controller, subject_kind,
                    subject_id, purpose, scope, consent_id, granted, policy_version, at, seq)
                SELECT DISTINCT ON (controller, subject_kind, subject_id, purpose, scope)
                    controller, subject_kind, subject_id, purpose, scope, consent_id,
                    action = 'grant', policy_version, at, seq
                FROM new_events
                ORDER BY controller, subject_kind, subject_id, purpose, scope, seq DESC
                ON CONFLICT (controller, subject_kind, subject_id, purpose, scope)
                DO UPDATE SET consent_id = excluded.consent_id, granted = excluded.granted,
                    policy_version = excluded.policy_version, at = excluded.at,
                    seq = excluded.seq
                WHERE excluded.seq > s.seq;
                RETURN NULL;
            END
            $$""",
            """CREATE TRIGGER consent_events_project AFTER INSERT ON {schema}.consent_events
                REFERENCING NEW TABLE AS new_events
                FOR EACH STATEMENT EXECUTE FUNCTION {schema}.consent_events_project()""",
            # Every change of the projection tells the listeners of every process. The
            # payload names the writing store (privguard.origin, set per transaction) so a
            # process can skip its own writes, which it has already counted.
            """CREATE FUNCTION {schema}.consent_state_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify(TG_TABLE_SCHEMA || '.consent',
                    coalesce(current_setting('privguard.origin', true), ''));
                RETURN NULL;
            END
            $$""",
            """CREATE TRIGGER consent_state_notify
                AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {schema}.consent_state
                FOR EACH STATEMENT EXECUTE FUNCTION {schema}.consent_state_notify()""",
            """CREATE TABLE {schema}.collections (
                seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                record_id      text NOT NULL,
                controller     text NOT NULL,
                subject_kind   text NOT NULL,
                subject_id     text NOT NULL,
                categories     text[] NOT NULL,
                purpose        text NOT NULL,
                source         text NOT NULL,
                scope          text NOT NULL,
                policy_version text NOT NULL,
                bound          boolean NOT NULL,
                at             timestamptz NOT NULL,
                CONSTRAINT collections_record_id_key UNIQUE (record_id)
            )""",
            """CREATE INDEX collections_by_subject
                ON {schema}.collections (controller, subject_kind, subject_id, seq)""",
        ),
    ),
    Migration(
        2,
        "disclosure log",
        (
            # One row per subject per disclosure (C10-C15, C19). Append-only.
            """CREATE TABLE {schema}.disclosures (
                seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                disclosure_id  text NOT NULL,
                batch_id       text NOT NULL,
                controller     text NOT NULL,
                subject_kind   text NOT NULL,
                subject_id     text NOT NULL,
                recipient      text NOT NULL,
                recipient_kind text NOT NULL,
                purpose        text NOT NULL,
                categories     text[] NOT NULL,
                basis          text NOT NULL,
                policy_version text NOT NULL,
                at             timestamptz NOT NULL,
                channel        text NOT NULL,
                scope          text NOT NULL,
                consent_id     text,
                reference      text,
                agreement      text,
                trace_id       text,
                span_id        text,
                CONSTRAINT disclosures_disclosure_id_key UNIQUE (disclosure_id)
            )""",
            # "Who got my data": a subject's disclosures, in the order written.
            """CREATE INDEX disclosures_by_subject
                ON {schema}.disclosures (controller, subject_kind, subject_id, seq)""",
            # "What did this recipient get, and when": by recipient and time, no sort.
            """CREATE INDEX disclosures_by_recipient
                ON {schema}.disclosures (recipient, at, seq)""",
            """CREATE TRIGGER disclosures_append_only
                BEFORE UPDATE OR DELETE OR TRUNCATE ON {schema}.disclosures
                FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_change()""",
        ),
    ),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

# Lower-case identifiers only, so the schema never needs case-sensitive quoting in psql and
# its notification channel (schema + ".consent") stays within PostgreSQL's 63 bytes.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,47}")

_EVENT_COLUMNS: Final = (
    "event_id, consent_id, controller, subject_kind, subject_id, purpose, scope, action,"
    " policy_version, at, method, actor, notice_version, jurisdiction, request_trace"
)
_COLLECTION_COLUMNS: Final = (
    "record_id, controller, subject_kind, subject_id, categories, purpose, source, scope,"
    " policy_version, bound, at"
)
_DISCLOSURE_COLUMNS: Final = (
    "disclosure_id, batch_id, controller, subject_kind, subject_id, recipient,"
    " recipient_kind, purpose, categories, basis, policy_version, at, channel, scope,"
    " consent_id, reference, agreement, trace_id, span_id"
)

# What an operator should read for a SQLSTATE (exact code, then its two-character class).
_KINDS: Final[dict[str, str]] = {
    "57014": "a statement timed out or was cancelled",
    "55P03": "timed out waiting for a lock",
    "40P01": "a deadlock was detected",
    "40001": "a serialization failure",
    "57P01": "the server is shutting down (administrator command)",
    "57P02": "the server crashed",
    "57P03": "the server is starting up or shutting down",
    "53300": "too many connections",
    "53100": "the disk is full",
    "53200": "the server is out of memory",
    "25006": "the database is read-only (a standby?)",
    "42501": "permission denied",
    "3D000": "the database does not exist",
    "28000": "authentication failed",
    "28P01": "authentication failed",
}
_CLASS_KINDS: Final[dict[str, str]] = {
    "08": "the connection to the database failed",
    "53": "the server is out of resources",
    "58": "the server had a system error",
    "XX": "the server had an internal error",
}
# Failures after which the same write, retried on a fresh connection, may succeed.
_TRANSIENT: Final = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
# Failures that mean the schema is not what this code expects.
_SCHEMA_TROUBLE: Final = frozenset({"42P01", "42703", "42883", "3F000", "42P07", "42710"})
_UNIQUE_KINDS: Final[dict[str, str]] = {
    "consent_events_event_id_key": "duplicate consent event id",
    "collections_record_id_key": "duplicate collection record id",
    "disclosures_disclosure_id_key": "duplicate disclosure id",
}
_APPEND_ONLY_KINDS: Final[dict[str, str]] = {
    "consent_events": "consent history is append-only",
    "disclosures": "the disclosure log is append-only",
}
_INVALID_ROW: Final = (ValueError, TypeError, KeyError, IndexError, OverflowError)
# While the database is known to be down, a request waits this long for a connection
# (instead of ``pool_timeout``) before it fails closed: a 503 now, not after seconds.
_OUTAGE_WAIT: Final = 0.25
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

_T = TypeVar("_T")


def _load_driver() -> None:
    """Import psycopg on first use, so ``import privguard`` works without it."""
    global Buffer, Format, Loader, errors, psycopg, psycopg_pool, sql
    try:
        import psycopg
        import psycopg_pool
        from psycopg import errors, sql
        from psycopg.adapt import Buffer, Loader
        from psycopg.pq import Format
    except ImportError as exc:
        raise ImportError(
            f"PostgresStore needs psycopg 3 and psycopg-pool: {INSTALL_HINT}"
        ) from exc
    _define_loader()


_UTCLoader: Any = None


def _define_loader() -> None:
    global _UTCLoader
    if _UTCLoader is not None:
        return

    class UTCTimestamptzLoader(Loader):
        """``timestamptz`` (binary) as a UTC datetime, whatever the session's TimeZone."""

        format = Format.BINARY

        def load(self, data: Buffer) -> datetime:
            micros = int.from_bytes(data, "big", signed=True)
            # ±infinity and values past year 9999 raise OverflowError: an invalid record.
            return _PG_EPOCH + timedelta(microseconds=micros)

    _UTCLoader = UTCTimestamptzLoader


# -- records <-> rows ------------------------------------------------------------------


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError("postgresql store: a record's time must be timezone-aware")
    return at


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
        _aware(event.at),
        ConsentMethod(evidence.method).value,
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
        at=_utc(row[9]),
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
    return ConsentState(row[0], row[1], _scope(row[2]), row[3], row[4], _utc(row[5]), row[6])


def _collection_row(record: CollectionRecord) -> tuple[object, ...]:
    return (
        record.record_id,
        record.controller,
        record.subject_kind,
        record.subject_id,
        list(record.categories),
        record.purpose,
        Source(record.source).value,
        record.scope.key,
        record.policy_version,
        bool(record.bound),
        _aware(record.at),
    )


def _collection(row: Any) -> CollectionRecord:
    return CollectionRecord(
        record_id=row[0],
        controller=row[1],
        subject_kind=row[2],
        subject_id=row[3],
        categories=tuple(row[4]),
        purpose=row[5],
        source=Source(row[6]),
        scope=_scope(row[7]),
        policy_version=row[8],
        bound=row[9],
        at=_utc(row[10]),
    )


def _disclosure_row(r: DisclosureRecord) -> tuple[object, ...]:
    return (
        r.disclosure_id,
        r.batch_id,
        r.controller,
        r.subject_kind,
        r.subject_id,
        r.recipient,
        r.recipient_kind,
        r.purpose,
        list(r.categories),
        r.basis,
        r.policy_version,
        _aware(r.at),
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
        categories=tuple(row[8]),
        basis=row[9],
        policy_version=row[10],
        at=_utc(row[11]),
        channel=row[12],
        scope=_scope(row[13]),
        consent_id=row[14],
        reference=row[15],
        agreement=row[16],
        trace_id=row[17],
        span_id=row[18],
    )


def _utc(at: Any) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise TypeError("not a timezone-aware datetime")
    return at


@dataclass(frozen=True, slots=True)
class _Table:
    """How one append-only batch is written and, after an ambiguous commit, recognised."""

    copy: str
    select_ids: str
    to_row: Callable[[Any], tuple[object, ...]]
    from_row: Callable[[Any], Any]
    key: Callable[[Any], str]
    doing: str


class _Statements:
    """Every statement of one store, with its schema quoted in, rendered once."""

    def __init__(self, schema: str) -> None:
        ident = sql.Identifier(schema)

        def q(text: str, columns: str = "") -> str:
            # Only the schema and column lists are formatted in; values are bound parameters.
            return sql.SQL(text).format(schema=ident, columns=sql.SQL(columns)).as_string()

        def select(table: str, where: str, columns: str) -> str:
            # Every part is a literal of this module; values are bound parameters.
            text = "SELECT {columns} FROM {schema}." + table + " WHERE " + where  # noqa: S608
            return q(text, columns)

        by_subject = "controller = %s AND subject_kind = %s AND subject_id = %s"
        self.schema = schema
        self.quoted = ident.as_string()
        self.states = select(
            "consent_state",
            by_subject,
            "consent_id, purpose, scope, granted, policy_version, at, seq",
        )
        self.history = select("consent_events", by_subject + " ORDER BY seq", _EVENT_COLUMNS)
        self.collections = select("collections", by_subject + " ORDER BY seq", _COLLECTION_COLUMNS)
        self.disclosures_for_subject = select(
            "disclosures", by_subject + " ORDER BY seq", _DISCLOSURE_COLUMNS
        )
        self.disclosures_for_recipient = select(
            "disclosures",
            "recipient = %s AND at >= coalesce(%s::timestamptz, '-infinity')"
            " AND at < coalesce(%s::timestamptz, 'infinity') ORDER BY at, seq",
            _DISCLOSURE_COLUMNS,
        )
        self.events = _Table(
            copy=q("COPY {schema}.consent_events ({columns}) FROM STDIN", _EVENT_COLUMNS),
            select_ids=select("consent_events", "event_id = ANY(%s)", _EVENT_COLUMNS),
            to_row=_event_row,
            from_row=_event,
            key=lambda e: e.event_id,
            doing="append consent events",
        )
        self.collection_table = _Table(
            copy=q("COPY {schema}.collections ({columns}) FROM STDIN", _COLLECTION_COLUMNS),
            select_ids=select("collections", "record_id = ANY(%s)", _COLLECTION_COLUMNS),
            to_row=_collection_row,
            from_row=_collection,
            key=lambda r: r.record_id,
            doing="append collection records",
        )
        self.disclosure_table = _Table(
            copy=q("COPY {schema}.disclosures ({columns}) FROM STDIN", _DISCLOSURE_COLUMNS),
            select_ids=select("disclosures", "disclosure_id = ANY(%s)", _DISCLOSURE_COLUMNS),
            to_row=_disclosure_row,
            from_row=_disclosure,
            key=lambda r: r.disclosure_id,
            doing="append disclosures",
        )
        self.version = q("SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations")
        self.create_schema = q("CREATE SCHEMA {schema}")
        self.create_migrations = q(
            "CREATE TABLE {schema}.schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        self.record_migration = q(
            "INSERT INTO {schema}.schema_migrations (version, name) VALUES (%s, %s)"
        )
        self.channel = f"{schema}.consent"
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)).as_string()
        # The migration lock is per schema: two schemas of one database migrate in parallel.
        digest = hashlib.sha256(f"privguard.migrate:{schema}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)

    def render(self, statement: str) -> str:
        return sql.SQL(statement).format(schema=sql.Identifier(self.schema)).as_string()


# -- the listener ---------------------------------------------------------------------


class _Listener:
    """One thread per store: LISTENs on a direct connection, counts changes made elsewhere.

    ``confirmed`` is the monotonic time at which the last heartbeat (``SELECT 1``) was
    sent. When it returns, every notification of a transaction committed before it was
    sent has been received and counted (PostgreSQL delivers pending notifications before
    the reply), so a token is current as of ``confirmed``. A lost connection sets it to
    minus infinity: the store then trusts no cached state until the listener is back.
    """

    def __init__(
        self,
        store: PostgresStore,
        conninfo: str,
        kwargs: dict[str, Any],
        heartbeat: float,
    ) -> None:
        self._store = weakref.ref(store)
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._heartbeat = heartbeat
        self._listen = store._sql.listen
        self._origin = store._origin
        self.confirmed = -math.inf
        self.connected = False
        self.connections = 0
        self.failures = 0
        self.backend_pid: int | None = None
        self.first_attempt = threading.Event()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._pipe_lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"privguard-listener-{store._sql.schema}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.confirmed = -math.inf
        with self._pipe_lock, contextlib.suppress(OSError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._close_pipe()

    def _close_pipe(self) -> None:
        # Once only, whoever gets here first (stop(), or the thread as it ends): a second
        # close could hit a descriptor number the process has reused since.
        with self._pipe_lock:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _sleep(self, seconds: float) -> bool:
        """Wait, unless told to stop. True when it is time to stop."""
        if self._stop.is_set():
            return True
        with contextlib.suppress(OSError, ValueError):
            select.select([self._wake_r], [], [], seconds)
        return self._stop.is_set()

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(
                    self._conninfo, autocommit=True, prepare_threshold=None, **self._kwargs
                )
            except psycopg.Error:
                self.failures += 1
                self.first_attempt.set()
                if self._sleep(delay):
                    break
                delay = min(delay * 2, 1.0)
                continue
            self._conn = conn
            try:
                self._serve(conn)
                delay = 0.05
            except (psycopg.Error, OSError, ValueError):
                self.failures += 1
            finally:
                self.confirmed = -math.inf
                self.connected = False
                self._conn = None
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                self.first_attempt.set()
            if self._store() is None or self._sleep(delay):
                break
        self.confirmed = -math.inf
        if self._stop.is_set():
            self._close_pipe()

    def _serve(self, conn: psycopg.Connection[Any]) -> None:
        conn.add_notify_handler(lambda n: self._payload(n.payload))
        conn.execute(self._listen)
        self.backend_pid = conn.info.backend_pid
        store = self._store()
        if store is None:
            return
        # Whatever happened while nobody listened is unknown: every cached state goes,
        # and the schema version is read again.
        store._changed()
        store._schema_changed()
        del store
        self.connections += 1
        self.connected = True
        fd = conn.fileno()
        while not self._stop.is_set():
            started = time.monotonic()
            conn.execute("SELECT 1")  # the notify handler runs for what arrived before
            self.confirmed = started
            self.first_attempt.set()
            deadline = started + self._heartbeat
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                readable, _, _ = select.select([fd, self._wake_r], [], [], left)
                if self._wake_r in readable or self._stop.is_set():
                    return
                if fd in readable:
                    conn.pgconn.consume_input()
                    while (n := conn.pgconn.notifies()) is not None:
                        self._payload(n.extra.decode())
            if self._store() is None:
                return

    def _payload(self, payload: str) -> None:
        store = self._store()
        if store is None:
            return
        if payload.startswith("schema"):
            if payload != f"schema {self._origin}":
                store._schema_changed()
        elif payload != self._origin:
            store._changed()


# -- connections -----------------------------------------------------------------------


class _Tx:
    """This thread's open transaction: its connection and bookkeeping."""

    __slots__ = ("conn", "depth", "doomed")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.depth = 1
        #: Something failed outside a savepoint: the transaction must not commit.
        self.doomed = False


class _PoolTimeout(Exception):
    """No connection within the time allowed (the async pool's own timeout)."""


class _AsyncPool:
    """The async twins' connections: psycopg ``AsyncConnection`` objects, any event loop.

    Not ``psycopg_pool.AsyncConnectionPool``: that pool runs maintenance tasks on the loop
    that opened it, and a store lives longer than a loop (built at start-up, used from
    ``asyncio.run`` per job, per test, from an anyio portal). When such a loop ends with a
    connection attempt in flight, the pool catches the cancellation as a connection error
    and reschedules it, and the loop's shutdown never completes. Here connections are made
    by the coroutine that needs one, no task runs in the background, and an idle
    connection (bound to no loop) serves whichever loop asks next.
    """

    def __init__(
        self,
        dsn: str,
        kwargs: dict[str, Any],
        max_size: int,
        configure: Callable[[psycopg.AsyncConnection[Any]], None],
    ) -> None:
        self._dsn = dsn
        self._kwargs = kwargs
        self._max_size = max_size
        self._configure = configure
        self._lock = threading.Lock()  # never held across an await
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._size = 0  # idle + lent out + being made
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        #: Lent connections and the loop each was lent to.
        self._lent: dict[psycopg.AsyncConnection[Any], asyncio.AbstractEventLoop] = {}
        self._closed = False
        self.connections_num = 0
        self.connections_errors = 0

    async def getconn(self, timeout: float) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            waiter: asyncio.Future[None] | None = None
            with self._lock:
                if self._closed:
                    raise psycopg_pool.PoolClosed("the pool is closed")
                while self._idle:
                    conn = self._idle.pop()  # the most recently used: warm, likely alive
                    if not conn.closed:
                        self._lent[conn] = loop
                        return conn
                    self._size -= 1
                if self._size < self._max_size:
                    self._size += 1
                else:
                    waiter = loop.create_future()
                    self._waiters.append((loop, waiter))
            if waiter is None:
                return await self._connect(loop)
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                raise _PoolTimeout from None
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove((loop, waiter))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
            self._configure(conn)
        except BaseException:
            self.connections_errors += 1
            with self._lock:
                self._size -= 1
                self._wake_one_locked()
            raise
        self.connections_num += 1
        with self._lock:
            if self._closed:
                self._size -= 1
                conn.pgconn.finish()
                raise psycopg_pool.PoolClosed("the pool is closed")
            self._lent[conn] = loop
        return conn

    def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Take a connection back (synchronous: nothing here waits)."""
        with self._lock:
            self._lent.pop(conn, None)
            reusable = (
                not self._closed
                and not conn.closed
                and not conn.broken
                and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            )
            if reusable:
                self._idle.append(conn)
            else:
                self._size -= 1
                if not conn.closed:
                    conn.pgconn.finish()
            self._wake_one_locked()

    def _wake_one_locked(self) -> None:
        for loop, waiter in self._waiters:
            if not waiter.done() and not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, waiter)
                return

    def close(self) -> None:
        """Close every idle connection now, and each lent one when it comes back.

        A connection lent to a loop that has since closed never comes back: it is closed
        here too. Callable from any thread, with or without a running loop.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            orphans = [c for c, loop in self._lent.items() if loop.is_closed()]
            for conn in orphans:
                del self._lent[conn]
            self._size -= len(idle) + len(orphans)
            waiters, self._waiters = self._waiters, []
        for conn in idle + orphans:
            if not conn.closed:
                conn.pgconn.finish()
        for loop, waiter in waiters:
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, waiter)

    def connections(self) -> list[psycopg.AsyncConnection[Any]]:
        with self._lock:
            return [*self._idle, *self._lent]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "pool_max": self._max_size,
                "pool_size": self._size,
                "pool_available": len(self._idle),
                "requests_waiting": len(self._waiters),
                "connections_num": self.connections_num,
                "connections_errors": self.connections_errors,
            }


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _aconfigure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("timestamptz", _UTCLoader)


def _label_of(params: dict[str, Any], schema: str) -> str:
    # Host, port, database and schema: never the user's password or other options.
    host = str(params.get("host") or params.get("hostaddr") or "local socket")
    port = params.get("port")
    where = f"{host}:{port}" if port else host
    return f"postgresql store {where}/{params.get('dbname') or '-'} schema {schema!r}"


class PostgresStore(Store):
    """A store on PostgreSQL (psycopg 3): many processes on many hosts share one ledger.

    >>> store = PostgresStore("postgresql://app@db/events", migrate=True)  # doctest: +SKIP
    >>> guard = Privguard(store=store)  # doctest: +SKIP

    Each store works in one ``schema`` (default ``privguard``), named in every statement.
    ``migrate=True`` brings the schema up to date on start-up (safe when many processes
    start at once); otherwise run ``python -m privguard migrate --dsn ...`` as a deploy
    step, and until the schema is current every read and write raises
    :class:`MigrationError`. A schema newer than this code is refused the same way.

    Consent changes made by any process reach this one through ``LISTEN``/``NOTIFY``: a
    withdrawal acknowledged at time *t* is honoured by every check that starts after
    *t* + ``max_staleness`` seconds, in every process (see ``docs/postgresql.md``).
    ``listen_dsn`` is where the listener connects when ``dsn`` is a transaction-mode
    pooler; ``listen=False`` turns it off, and then every check reads the database
    (or trusts the ledger's ``cache_ttl``).

    ``min_size``/``max_size``: connections of the sync pool (kept open / at most);
    ``max_size`` also bounds the async twins' pool, which every event loop shares and
    which opens connections as they are needed. ``pool_timeout``: seconds a call waits
    for a connection before it fails closed. ``statement_timeout``: seconds a write may
    take inside PostgreSQL (``SET LOCAL``; 0 for none). ``write_retries``: how often a
    write outside a transaction is retried after a transient failure. ``prepare=True`` lets psycopg
    prepare statements (faster; only on direct connections or a pooler that supports
    them).
    """

    name = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "privguard",
        migrate: bool = False,
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
        max_staleness: float = 1.0,
        listen: bool = True,
        listen_dsn: str | None = None,
        prepare: bool = False,
        write_retries: int = 2,
        reconnect_timeout: float = 5.0,
        application_name: str = "privguard",
    ) -> None:
        _load_driver()
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise PolicyError(
                "schema must be a lower-case identifier of at most 48 characters"
                " (letters, digits, underscores)"
            )
        for what, value in (
            ("pool_timeout", pool_timeout),
            ("connect_timeout", connect_timeout),
            ("max_staleness", max_staleness),
            ("reconnect_timeout", reconnect_timeout),
        ):
            if not isinstance(value, int | float) or not 0 < value < math.inf:
                raise PolicyError(f"{what} must be a positive, finite number of seconds")
        if not isinstance(statement_timeout, int | float) or not 0 <= statement_timeout < 1e6:
            raise PolicyError("statement_timeout must be a number of seconds, at least 0")
        if not isinstance(min_size, int) or not isinstance(max_size, int):
            raise PolicyError("min_size and max_size must be integers")
        if not 0 <= min_size <= max_size or max_size < 1:
            raise PolicyError("pool sizes need 0 <= min_size <= max_size and max_size >= 1")
        if not isinstance(write_retries, int) or write_retries < 0:
            raise PolicyError("write_retries must be an integer, at least 0")
        params = self._parse_dsn(dsn, "dsn")
        if listen_dsn is not None:
            self._parse_dsn(listen_dsn, "listen_dsn")
        self.schema = schema
        self._label = _label_of(params, schema)
        self._dsn = dsn
        self._listen_dsn = listen_dsn if listen_dsn is not None else dsn
        self._sql = _Statements(schema)
        self._origin = uuid.uuid4().hex
        self._min_size = min_size
        self._max_size = max_size
        self._pool_timeout = float(pool_timeout)
        self._connect_timeout = float(connect_timeout)
        self._max_staleness = float(max_staleness)
        self._reconnect_timeout = float(reconnect_timeout)
        self._write_retries = write_retries
        # Connection parameters we choose unless the DSN sets them: client-side libpq
        # settings and application_name, which PgBouncer passes on. Never a startup
        # "options" (-c ...), which a pooler refuses.
        defaults: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(connect_timeout)),
            "application_name": application_name,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
        self._conn_params = {k: v for k, v in defaults.items() if k not in params}
        self._kwargs: dict[str, Any] = {
            "autocommit": True,  # we send BEGIN/COMMIT ourselves: one round trip each
            "prepare_threshold": 5 if prepare else None,
            **self._conn_params,
        }
        self._begin_sql = self._begin_statement(statement_timeout)
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _generation and _schema_ok
        self._generation = 0
        self._schema_ok = False
        self._schema_epoch = 0
        self._outage = False
        self._seen_connect_errors = 0
        self._closed = False
        self._closed_why = "the store is closed"
        self._connections: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._apool = _AsyncPool(dsn, self._kwargs, max_size, _aconfigure)
        self._inherited: list[object] = []
        self._listener: _Listener | None = None
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=self._pool_timeout,
                reconnect_timeout=self._reconnect_timeout,
                kwargs=self._kwargs,
                configure=self._configure,
                name=f"privguard-{schema}",
                open=False,
            )
        )
        _LIVE_STORES.add(self)
        try:
            self._pool.open(wait=False)
            if listen:
                self._listener = _Listener(
                    self, self._listen_dsn, self._conn_params, heartbeat=max_staleness / 4
                )
                self._listener.start()
                # A reachable server answers in milliseconds; an unreachable one fails
                # the first attempt. Either way the store is usable (or fails closed).
                self._listener.first_attempt.wait(self._connect_timeout)
            if migrate:
                self.migrate()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self._label!r})"

    @staticmethod
    def _parse_dsn(dsn: object, what: str) -> dict[str, Any]:
        if not isinstance(dsn, str) or not dsn:
            raise PolicyError(f"{what} must be a PostgreSQL connection string or URL")
        try:
            return psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            # The DSN may hold a password: never repeat it.
            raise PolicyError(f"{what} is not a valid PostgreSQL connection string") from None

    def _begin_statement(self, statement_timeout: float) -> str:
        # One round trip: BEGIN, the write's time limit, and the origin the notification
        # trigger reports (so this store skips its own writes, which it already counted).
        parts: list[sql.Composable] = [sql.SQL("BEGIN")]
        if statement_timeout:
            millis = max(1, round(statement_timeout * 1000))
            parts.append(sql.SQL("SET LOCAL statement_timeout = {}").format(millis))
        parts.append(
            sql.SQL("SELECT set_config('privguard.origin', {}, true)").format(self._origin)
        )
        return sql.SQL("; ").join(parts).as_string()

    # -- lifecycle -----------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the missing migrations, each in its own transaction. Idempotent.

        Every migration takes a transaction-scoped advisory lock on the schema and
        re-reads the version under it, so processes that start at once migrate once. A
        current schema costs one read and takes no lock. A schema newer than this code,
        or a schema that holds tables privguard did not make, raises
        :class:`MigrationError` before anything changes.
        """
        self._check_open()
        if self._tx() is not None:
            raise MigrationError(f"{self._label}: cannot migrate inside a transaction")
        try:
            conn = psycopg.connect(self._dsn, **self._kwargs)
        except psycopg.Error as exc:
            raise self._failure(exc, "migrate", connecting=True) from exc
        try:
            with conn:
                migrate_schema(conn, self._sql, self._label, origin=self._origin)
        except psycopg.Error as exc:
            raise self._failure(exc, "migrate") from exc
        self._schema_ok = True

    async def amigrate(self) -> None:
        self._check_open()
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
        except psycopg.Error as exc:
            raise self._failure(exc, "migrate", connecting=True) from exc
        try:
            async with conn:
                await amigrate_schema(conn, self._sql, self._label, origin=self._origin)
        except psycopg.Error as exc:
            raise self._failure(exc, "migrate") from exc
        self._schema_ok = True

    def schema_version(self) -> int:
        """The schema version in the database (0 before the first migration)."""
        return self._fetch_unchecked(lambda c: _read_version(c, self._sql, self._label))

    def close(self) -> None:
        """Close the pools and the listener, from any thread or coroutine. Idempotent.

        Connections in use elsewhere are closed as they come back.
        """
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._pool.close()
        self._apool.close()
        self._local = threading.local()
        _LIVE_STORES.discard(self)

    def stats(self) -> dict[str, float]:
        """Numbers to monitor (see ``docs/postgresql.md``): pool use, listener health."""
        out: dict[str, float] = {f"sync_{k}": float(v) for k, v in self._pool.get_stats().items()}
        out.update({f"async_{k}": float(v) for k, v in self._apool.stats().items()})
        listener = self._listener
        if listener is not None:
            out["listener_connected"] = float(listener.connected)
            out["listener_reconnects"] = float(max(0, listener.connections - 1))
            out["listener_failures"] = float(listener.failures)
            out["listener_confirmed_age_s"] = time.monotonic() - listener.confirmed
        out["change_generation"] = float(self._generation)
        out["database_down"] = float(self._outage)
        return out

    # -- transactions ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group this thread's writes into one transaction on one connection.

        Nested use joins the outer transaction through a savepoint: an exception undoes the
        inner block's writes and, unless caught, the whole transaction. Reads inside see
        the transaction's own writes. The async twins are not part of it (they use the
        event loop's pool).
        """
        self._check_open()
        tx = self._tx()
        if tx is not None:
            yield from self._nested(tx)
            return
        self._ensure_schema()
        conn = self._getconn(time.monotonic() + self._pool_timeout, "begin a transaction")
        try:
            try:
                conn.execute(self._begin_sql)
            except psycopg.Error as exc:
                raise self._failure(exc, "begin a transaction") from exc
            tx = _Tx(conn)
            self._local.tx = tx
            try:
                yield
            except BaseException:
                self._rollback_quietly(conn)
                raise
            self._commit(conn, tx.doomed, "commit")
        finally:
            self._local.tx = None
            self._putconn(conn)
            self._changed()

    def _nested(self, tx: _Tx) -> Iterator[None]:
        name = f"privguard_{tx.depth}"
        self._in_tx(tx, f"SAVEPOINT {name}", "begin a nested transaction")
        tx.depth += 1
        try:
            yield
        except BaseException:
            tx.depth -= 1
            try:
                tx.conn.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
            except psycopg.Error:
                tx.doomed = True
            raise
        tx.depth -= 1
        self._in_tx(tx, f"RELEASE SAVEPOINT {name}", "end a nested transaction")

    def _in_tx(self, tx: _Tx, statement: str, doing: str) -> None:
        if tx.doomed:
            raise StoreUnavailable(f"{self._label}: cannot {doing}: the transaction failed")
        try:
            tx.conn.execute(statement)
        except psycopg.Error as exc:
            tx.doomed = True
            raise self._failure(exc, doing) from exc

    def _commit(self, conn: psycopg.Connection[Any], doomed: bool, doing: str) -> None:
        if doomed:
            self._rollback_quietly(conn)
            raise StoreUnavailable(f"{self._label}: cannot {doing}: the transaction failed")
        try:
            status = conn.execute("COMMIT").statusmessage
        except psycopg.Error as exc:
            raise self._failure(exc, doing, committing=True) from exc
        if status != "COMMIT":
            # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, not an error.
            raise StoreUnavailable(
                f"{self._label}: cannot {doing}: the database rolled the transaction back"
            )

    @staticmethod
    def _rollback_quietly(conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")

    def _tx(self) -> _Tx | None:
        tx: _Tx | None = getattr(self._local, "tx", None)
        return tx

    # -- consents ------------------------------------------------------------------
    def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        self._append(self._sql.events, events)

    def consent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        return self._read(self._sql.states, subject, _state, "read consent states")

    def consent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        return self._read(self._sql.history, subject, _event, "read consent history")

    def change_token(self) -> Hashable:
        """A process-wide counter, bumped by this store's commits and by the listener.

        Trusted only while the listener has confirmed, within ``max_staleness`` seconds,
        that it has seen every change: otherwise a fresh object that equals nothing, so
        no cached state is used until the listener is back.
        """
        if self._closed:
            raise StoreUnavailable(f"{self._label}: {self._closed_why}")
        listener = self._listener
        if listener is not None and time.monotonic() - listener.confirmed <= self._max_staleness:
            return self._generation
        return object()

    async def achange_token(self) -> Hashable:
        return self.change_token()

    async def aconsent_snapshot(
        self, subject: SubjectKey
    ) -> tuple[Hashable, tuple[ConsentState, ...]]:
        token = self.change_token()
        return token, await self.aconsent_states(subject)

    def _changed(self) -> None:
        with self._lock:
            self._generation += 1

    def _schema_changed(self) -> None:
        with self._lock:
            self._schema_ok = False
            self._schema_epoch += 1

    # -- provenance ----------------------------------------------------------------
    def append_collections(self, records: Sequence[CollectionRecord]) -> None:
        self._append(self._sql.collection_table, records)

    def collections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]:
        return self._read(self._sql.collections, subject, _collection, "read collection records")

    # -- disclosures -----------------------------------------------------------------
    def append_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        """One ``COPY`` in one transaction: every record or none."""
        self._append(self._sql.disclosure_table, records)

    def disclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        return self._read(
            self._sql.disclosures_for_subject, subject, _disclosure, "read disclosures"
        )

    def disclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        params = self._range(recipient, since, until)
        return self._read(
            self._sql.disclosures_for_recipient, params, _disclosure, "read disclosures"
        )

    @staticmethod
    def _range(
        recipient: str, since: datetime | None, until: datetime | None
    ) -> tuple[object, ...]:
        return (
            recipient,
            None if since is None else _aware(since),
            None if until is None else _aware(until),
        )

    # -- async twins: the event loop's own pool ------------------------------------
    async def aappend_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        await self._aappend(self._sql.events, events)

    async def aconsent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        return await self._aread(self._sql.states, subject, _state, "read consent states")

    async def aconsent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        return await self._aread(self._sql.history, subject, _event, "read consent history")

    async def aappend_collections(self, records: Sequence[CollectionRecord]) -> None:
        await self._aappend(self._sql.collection_table, records)

    async def acollections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]:
        return await self._aread(
            self._sql.collections, subject, _collection, "read collection records"
        )

    async def aappend_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        await self._aappend(self._sql.disclosure_table, records)

    async def adisclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        return await self._aread(
            self._sql.disclosures_for_subject, subject, _disclosure, "read disclosures"
        )

    async def adisclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        params = self._range(recipient, since, until)
        return await self._aread(
            self._sql.disclosures_for_recipient, params, _disclosure, "read disclosures"
        )

    # -- reads -----------------------------------------------------------------------
    def _read(
        self,
        query: str,
        params: tuple[object, ...],
        build: Callable[[Any], _T],
        doing: str,
    ) -> tuple[_T, ...]:
        self._check_open()
        tx = self._tx()
        if tx is not None:
            try:
                rows = tx.conn.execute(query, params, binary=True).fetchall()
            except psycopg.Error as exc:
                tx.doomed = True
                raise self._failure(exc, doing) from exc
            return self._build(rows, build, doing)
        self._ensure_schema()
        deadline = time.monotonic() + self._pool_timeout
        retried = False
        while True:
            conn = self._getconn(deadline, doing)
            try:
                rows = conn.execute(query, params, binary=True).fetchall()
            except psycopg.Error as exc:
                # A pooled connection the server dropped (a restart): once more, afresh.
                if not retried and conn.broken and time.monotonic() < deadline:
                    retried = True
                    continue
                raise self._failure(exc, doing) from exc
            finally:
                self._putconn(conn)
            self._outage = False
            return self._build(rows, build, doing)

    async def _aread(
        self,
        query: str,
        params: tuple[object, ...],
        build: Callable[[Any], _T],
        doing: str,
    ) -> tuple[_T, ...]:
        self._check_open()
        await self._aensure_schema()
        deadline = time.monotonic() + self._pool_timeout
        retried = False
        while True:
            conn = await self._agetconn(deadline, doing)
            try:
                cur = await conn.execute(query, params, binary=True)
                rows = await cur.fetchall()
            except psycopg.Error as exc:
                if not retried and conn.broken and time.monotonic() < deadline:
                    retried = True
                    continue
                raise self._failure(exc, doing) from exc
            finally:
                self._aputconn(conn)
            self._outage = False
            return self._build(rows, build, doing)

    def _build(self, rows: list[Any], build: Callable[[Any], _T], doing: str) -> tuple[_T, ...]:
        try:
            return tuple(build(row) for row in rows)
        except _INVALID_ROW as exc:
            invalid = f"{self._label}: cannot {doing}: a stored record is invalid"
            raise StoreUnavailable(invalid) from exc

    def _fetch_unchecked(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        self._check_open()
        conn = self._getconn(time.monotonic() + self._pool_timeout, "read the schema version")
        try:
            return work(conn)
        except psycopg.Error as exc:
            raise self._failure(exc, "read the schema version") from exc
        finally:
            self._putconn(conn)

    # -- writes ----------------------------------------------------------------------
    def _rows(self, table: _Table, records: Sequence[Any]) -> list[tuple[object, ...]]:
        # Everything that can fail in Python fails here, before any I/O.
        return [table.to_row(r) for r in records]

    def _append(self, table: _Table, records: Sequence[Any]) -> None:
        self._check_open()
        rows = self._rows(table, records)
        if not rows:
            return
        tx = self._tx()
        if tx is not None:
            self._append_in_tx(tx, table, rows)
            return
        self._ensure_schema()
        deadline = time.monotonic() + self._pool_timeout
        attempt = 0
        while True:
            conn = self._getconn(deadline, table.doing)
            try:
                conn.execute(self._begin_sql)
                self._copy(conn, table.copy, rows)
                self._commit(conn, False, table.doing)
                self._outage = False
                return
            except errors.UniqueViolation as exc:
                self._rollback_quietly(conn)
                # After a failed attempt (an ambiguous commit), our own rows may be there.
                if attempt and self._stored_identically(conn, table, records):
                    return
                raise self._failure(exc, table.doing) from exc
            except psycopg.Error as exc:
                self._rollback_quietly(conn)
                if attempt < self._write_retries and self._transient(exc, conn, deadline):
                    attempt += 1
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._failure(exc, table.doing, committing=True) from exc
            finally:
                self._putconn(conn)
                self._changed()

    def _append_in_tx(self, tx: _Tx, table: _Table, rows: list[tuple[object, ...]]) -> None:
        # A savepoint, so a failed batch writes none of itself and the transaction goes on.
        self._in_tx(tx, "SAVEPOINT privguard_append", table.doing)
        try:
            self._copy(tx.conn, table.copy, rows)
        except BaseException as exc:
            try:
                tx.conn.execute(
                    "ROLLBACK TO SAVEPOINT privguard_append; RELEASE SAVEPOINT privguard_append"
                )
            except psycopg.Error:
                tx.doomed = True
            if isinstance(exc, psycopg.Error):
                raise self._failure(exc, table.doing) from exc
            raise
        self._in_tx(tx, "RELEASE SAVEPOINT privguard_append", table.doing)

    @staticmethod
    def _copy(
        conn: psycopg.Connection[Any], statement: str, rows: list[tuple[object, ...]]
    ) -> None:
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _stored_identically(
        self, conn: psycopg.Connection[Any], table: _Table, records: Sequence[Any]
    ) -> bool:
        ids = [table.key(r) for r in records]
        try:
            stored = conn.execute(table.select_ids, (ids,), binary=True).fetchall()
        except psycopg.Error:
            return False
        return _same_records(stored, table, records, ids)

    async def _aappend(self, table: _Table, records: Sequence[Any]) -> None:
        self._check_open()
        rows = self._rows(table, records)
        if not rows:
            return
        await self._aensure_schema()
        deadline = time.monotonic() + self._pool_timeout
        attempt = 0
        while True:
            conn = await self._agetconn(deadline, table.doing)
            try:
                await conn.execute(self._begin_sql)
                async with conn.cursor() as cur, cur.copy(table.copy) as copy:
                    for row in rows:
                        await copy.write_row(row)
                await self._acommit(conn, table.doing)
                self._outage = False
                return
            except errors.UniqueViolation as exc:
                await self._arollback_quietly(conn)
                if attempt and await self._astored_identically(conn, table, records):
                    return
                raise self._failure(exc, table.doing) from exc
            except psycopg.Error as exc:
                await self._arollback_quietly(conn)
                if attempt < self._write_retries and self._transient(exc, conn, deadline):
                    attempt += 1
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                raise self._failure(exc, table.doing, committing=True) from exc
            finally:
                self._aputconn(conn)
                self._changed()

    async def _acommit(self, conn: psycopg.AsyncConnection[Any], doing: str) -> None:
        try:
            status = (await conn.execute("COMMIT")).statusmessage
        except psycopg.Error as exc:
            raise self._failure(exc, doing, committing=True) from exc
        if status != "COMMIT":
            raise StoreUnavailable(
                f"{self._label}: cannot {doing}: the database rolled the transaction back"
            )

    @staticmethod
    async def _arollback_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")

    async def _astored_identically(
        self, conn: psycopg.AsyncConnection[Any], table: _Table, records: Sequence[Any]
    ) -> bool:
        ids = [table.key(r) for r in records]
        try:
            cur = await conn.execute(table.select_ids, (ids,), binary=True)
            stored = await cur.fetchall()
        except psycopg.Error:
            return False
        return _same_records(stored, table, records, ids)

    def _transient(self, exc: psycopg.Error, conn: Any, deadline: float) -> bool:
        if time.monotonic() >= deadline:
            return False
        return bool(conn.broken) or (exc.sqlstate or "") in _TRANSIENT

    # -- connections -----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self._label}: {self._closed_why}")

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.adapters.register_loader("timestamptz", _UTCLoader)
        self._connections.add(conn)

    def _getconn(self, deadline: float, doing: str) -> psycopg.Connection[Any]:
        wait = max(0.0, deadline - time.monotonic())
        if self._outage:
            wait = min(wait, _OUTAGE_WAIT)
        try:
            return self._pool.getconn(timeout=wait)
        except psycopg_pool.PoolClosed as exc:
            raise StoreUnavailable(f"{self._label}: {self._closed_why}") from exc
        except psycopg_pool.PoolTimeout as exc:
            raise self._failure(exc, doing) from exc
        except psycopg.Error as exc:
            raise self._failure(exc, doing) from exc

    def _putconn(self, conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(psycopg.Error, psycopg_pool.PoolClosed):
            self._pool.putconn(conn)

    async def _agetconn(self, deadline: float, doing: str) -> psycopg.AsyncConnection[Any]:
        wait = max(0.0, deadline - time.monotonic())
        if self._outage:
            wait = min(wait, _OUTAGE_WAIT)
        try:
            return await self._apool.getconn(timeout=wait)
        except psycopg_pool.PoolClosed as exc:
            raise StoreUnavailable(f"{self._label}: {self._closed_why}") from exc
        except _PoolTimeout as exc:
            raise StoreUnavailable(
                f"{self._label}: cannot {doing}: no free connection within {wait:g} s"
                f" (all {self._max_size} of the async pool are busy)"
            ) from exc
        except psycopg.Error as exc:
            raise self._failure(exc, doing, connecting=True) from exc

    def _aputconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._apool.putconn(conn)

    # -- schema ----------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        if self._schema_ok:
            return
        epoch = self._schema_epoch
        version = self._fetch_unchecked(lambda c: _read_version(c, self._sql, self._label))
        self._check_version(version)
        # Unless a migration was announced while we read: then look again next time.
        self._schema_ok = epoch == self._schema_epoch

    async def _aensure_schema(self) -> None:
        if self._schema_ok:
            return
        epoch = self._schema_epoch
        conn = await self._agetconn(
            time.monotonic() + self._pool_timeout, "read the schema version"
        )
        try:
            version = await _aread_version(conn, self._sql, self._label)
        except psycopg.Error as exc:
            raise self._failure(exc, "read the schema version") from exc
        finally:
            self._aputconn(conn)
        self._check_version(version)
        self._schema_ok = epoch == self._schema_epoch

    def _check_version(self, version: int) -> None:
        if version < SCHEMA_VERSION:
            raise MigrationError(
                f"{self._label}: schema version {version} is older than this code's"
                f" ({SCHEMA_VERSION}); run `python -m privguard migrate` or pass migrate=True"
            )

    # -- errors ----------------------------------------------------------------------
    def _failure(
        self, exc: BaseException, doing: str, *, committing: bool = False, connecting: bool = False
    ) -> StoreError:
        """The privguard error for a driver error: the store and the kind, never data."""
        prefix = f"{self._label}: cannot {doing}"
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return StoreUnavailable(f"{prefix}: {self._pool_timeout_kind()}")
        if isinstance(exc, psycopg_pool.TooManyRequests):
            return StoreUnavailable(f"{prefix}: too many requests are waiting for a connection")
        if isinstance(exc, psycopg_pool.PoolClosed):
            return StoreUnavailable(f"{prefix}: {self._closed_why}")
        if not isinstance(exc, psycopg.Error):
            return StoreUnavailable(f"{prefix}: {type(exc).__name__}")
        sqlstate = exc.sqlstate or ""
        diag = exc.diag
        if isinstance(exc, errors.UniqueViolation):
            kind = _UNIQUE_KINDS.get(diag.constraint_name or "", "a unique constraint failed")
            return StoreUnavailable(f"{prefix}: {kind}")
        if isinstance(exc, errors.RestrictViolation) and diag.table_name in _APPEND_ONLY_KINDS:
            return StoreUnavailable(f"{prefix}: {_APPEND_ONLY_KINDS[diag.table_name]}")
        if sqlstate in _SCHEMA_TROUBLE:
            self._schema_ok = False
            return MigrationError(f"{prefix}: the schema does not match this code")
        if sqlstate in _KINDS:
            kind = _KINDS[sqlstate]
        elif sqlstate[:2] in _CLASS_KINDS:
            kind = _CLASS_KINDS[sqlstate[:2]]
        elif sqlstate[:2] == "23":
            kind = f"a constraint failed ({sqlstate})"
        elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            self._outage = True
            if self._closed:
                kind = self._closed_why
            elif connecting and not sqlstate:
                kind = "cannot connect to the database (down, unreachable or refusing)"
            else:
                kind = "the connection to the database was lost"
            if committing:
                kind += " (the write may have been committed: retrying with the same ids is safe)"
        else:
            kind = f"PostgreSQL error {sqlstate or type(exc).__name__}"
        return StoreUnavailable(f"{prefix}: {kind}")

    def _pool_timeout_kind(self) -> str:
        stats = self._pool.get_stats()
        errors_now = stats.get("connections_errors", 0)
        unreachable = errors_now > self._seen_connect_errors or (
            stats.get("pool_size", 0) == 0 or self._outage
        )
        self._seen_connect_errors = errors_now
        if unreachable:
            self._outage = True
            return "no connection to the database (down or unreachable; the pool keeps trying)"
        return (
            f"no free connection within {self._pool_timeout:g} s"
            f" (all {self._max_size} of the pool are busy)"
        )

    # -- fork ------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        # The child shares the parent's sockets. Closing a libpq connection sends the server
        # a Terminate message, which would end the *parent's* session: point the child's copy
        # of each socket at /dev/null first, and never use these connections here.
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            conns: list[Any] = [*self._connections, *self._apool.connections()]
            listener = self._listener
            if listener is not None and listener._conn is not None:
                conns.append(listener._conn)
            for conn in conns:
                with contextlib.suppress(Exception):
                    fd = conn.pgconn.socket
                    if fd >= 0:
                        os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        self._inherited.extend([self._pool, self._apool, self._listener, conns])
        self._listener = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closed = True
        self._closed_why = "it was opened before fork(); open the store in the child process"


def _same_records(stored: list[Any], table: _Table, records: Sequence[Any], ids: list[str]) -> bool:
    """Whether the stored rows are exactly this batch (a retry after an ambiguous commit)."""
    if len(set(ids)) != len(ids) or len(stored) != len(ids):
        return False
    try:
        found = {table.key(r): r for r in map(table.from_row, stored)}
    except _INVALID_ROW:
        return False
    return all(found.get(table.key(r)) == r for r in records)


# -- migrations -------------------------------------------------------------------------


def _version_probe(s: _Statements) -> tuple[str, tuple[object, ...]]:
    table = f"{s.quoted}.schema_migrations"
    return (
        "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL,"
        " (SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(%s))",
        (s.quoted, table, s.quoted),
    )


def _interpret_version(
    probe: tuple[Any, ...], version: int | None, s: _Statements, label: str
) -> int:
    schema_exists, has_table, relations = probe
    if not has_table or version is None:
        if schema_exists and relations:
            raise MigrationError(
                f"{label}: not a privguard schema (it holds tables privguard did not make)"
            )
        return 0
    if version > SCHEMA_VERSION:
        raise MigrationError(
            f"{label}: schema version {version} is newer than this code's"
            f" ({SCHEMA_VERSION}); upgrade privguard"
        )
    return version


def _read_version(conn: psycopg.Connection[Any], s: _Statements, label: str) -> int:
    query, params = _version_probe(s)
    probe = conn.execute(query, params).fetchone()
    if probe is None:
        raise MigrationError(f"{label}: cannot read the schema version")
    version = None
    if probe[1]:
        row = conn.execute(s.version).fetchone()
        version = int(row[0]) if row else 0
    return _interpret_version(tuple(probe), version, s, label)


async def _aread_version(conn: psycopg.AsyncConnection[Any], s: _Statements, label: str) -> int:
    query, params = _version_probe(s)
    probe = await (await conn.execute(query, params)).fetchone()
    if probe is None:
        raise MigrationError(f"{label}: cannot read the schema version")
    version = None
    if probe[1]:
        row = await (await conn.execute(s.version)).fetchone()
        version = int(row[0]) if row else 0
    return _interpret_version(tuple(probe), version, s, label)


def _migration_steps(
    s: _Statements, migration: Migration, version: int, origin: str
) -> Iterator[tuple[str, tuple[object, ...]]]:
    """The statements of one migration after the lock is held, schema creation first."""
    if version == 0:
        yield s.create_migrations, ()
    for statement in migration.statements:
        yield s.render(statement), ()
    yield s.record_migration, (migration.version, migration.name)
    # Running stores re-read the version before their next statement.
    yield "SELECT pg_notify(%s, %s)", (s.channel, f"schema {origin}")


_SCHEMA_EXISTS: Final = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
# DDL takes strong locks: give up after 5 s instead of queueing every request behind it.
_MIGRATION_BEGIN: Final = "BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = 0"


def migrate_schema(
    conn: psycopg.Connection[Any], s: _Statements, label: str, *, origin: str = ""
) -> tuple[int, int]:
    """Apply the missing migrations on ``conn`` (autocommit). Returns (before, after)."""
    before = version = _read_version(conn, s, label)
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        conn.execute(_MIGRATION_BEGIN)
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (s.lock_key,))
            version = _read_version(conn, s, label)  # another process may have got here first
            if version < migration.version:
                _check_next(version, migration, label)
                if version == 0 and conn.execute(_SCHEMA_EXISTS, (s.schema,)).fetchone() is None:
                    _execute_step(conn, s.create_schema, (), migration, label)
                for query, params in _migration_steps(s, migration, version, origin):
                    _execute_step(conn, query, params, migration, label)
                version = migration.version
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return before, version


async def amigrate_schema(
    conn: psycopg.AsyncConnection[Any], s: _Statements, label: str, *, origin: str = ""
) -> tuple[int, int]:
    """:func:`migrate_schema` on an async connection."""
    before = version = await _aread_version(conn, s, label)
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        await conn.execute(_MIGRATION_BEGIN)
        try:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (s.lock_key,))
            version = await _aread_version(conn, s, label)
            if version < migration.version:
                _check_next(version, migration, label)
                exists = await (await conn.execute(_SCHEMA_EXISTS, (s.schema,))).fetchone()
                if version == 0 and exists is None:
                    await _aexecute_step(conn, s.create_schema, (), migration, label)
                for query, params in _migration_steps(s, migration, version, origin):
                    await _aexecute_step(conn, query, params, migration, label)
                version = migration.version
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    return before, version


def migrate_database(
    dsn: str, *, schema: str = "privguard", check: bool = False, connect_timeout: float = 5.0
) -> tuple[str, int, int]:
    """Migrate (or with ``check``, only inspect) a schema over one direct connection.

    Returns the store's label, the version before and the version after. What
    ``python -m privguard migrate`` runs; it needs no pool and no listener.
    """
    _load_driver()
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise PolicyError("schema must be a lower-case identifier of at most 48 characters")
    params = PostgresStore._parse_dsn(dsn, "dsn")
    label = _label_of(params, schema)
    statements = _Statements(schema)
    timeout = max(2, math.ceil(connect_timeout))
    try:
        with psycopg.connect(
            dsn, autocommit=True, prepare_threshold=None, connect_timeout=timeout
        ) as conn:
            if check:
                version = _read_version(conn, statements, label)
                return label, version, version
            before, after = migrate_schema(conn, statements, label)
            return label, before, after
    except psycopg.Error as exc:
        kind = _KINDS.get(exc.sqlstate or "")
        if kind is None:
            kind = "cannot connect to the database (down, unreachable or refusing)"
            if exc.sqlstate:
                kind = f"PostgreSQL error {exc.sqlstate}"
        raise StoreUnavailable(f"{label}: cannot migrate: {kind}") from exc


def _check_next(version: int, migration: Migration, label: str) -> None:
    if version != migration.version - 1:
        raise MigrationError(
            f"{label}: cannot apply migration {migration.version} to schema version {version}"
        )


def _execute_step(
    conn: psycopg.Connection[Any],
    query: str,
    params: tuple[object, ...],
    migration: Migration,
    label: str,
) -> None:
    try:
        conn.execute(query, params or None)
    except psycopg.Error as exc:
        raise _migration_failure(exc, migration, label) from exc


async def _aexecute_step(
    conn: psycopg.AsyncConnection[Any],
    query: str,
    params: tuple[object, ...],
    migration: Migration,
    label: str,
) -> None:
    try:
        await conn.execute(query, params or None)
    except psycopg.Error as exc:
        raise _migration_failure(exc, migration, label) from exc


def _migration_failure(exc: psycopg.Error, migration: Migration, label: str) -> StoreError:
    sqlstate = exc.sqlstate or ""
    prefix = f"{label}: cannot apply migration {migration.version} ({migration.name})"
    if isinstance(exc, psycopg.OperationalError) or sqlstate in _KINDS:
        kind = _KINDS.get(sqlstate, "the connection to the database was lost")
        return StoreUnavailable(f"{prefix}: {kind}")
    return MigrationError(f"{prefix}: PostgreSQL error {sqlstate or type(exc).__name__}")


_LIVE_STORES: weakref.WeakSet[PostgresStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE_STORES):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
