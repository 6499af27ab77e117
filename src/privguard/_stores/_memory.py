"""An in-memory store for tests and examples. One process only; nothing survives it."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from .._errors import StoreError, StoreUnavailable
from .._records import (
    CollectionRecord,
    ConsentAction,
    ConsentEvent,
    ConsentState,
    DisclosureRecord,
)
from ._base import Store, SubjectKey

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._history: dict[SubjectKey, list[ConsentEvent]] = {}
        self._state: dict[SubjectKey, dict[tuple[str, str], ConsentState]] = {}
        self._collections: dict[SubjectKey, list[CollectionRecord]] = {}
        self._event_ids: set[str] = set()
        self._record_ids: set[str] = set()
        # The disclosure log, append-only: one list, two indexes of positions in it.
        self._disclosures: list[DisclosureRecord] = []
        self._disclosure_ids: set[str] = set()
        self._by_subject: dict[SubjectKey, list[int]] = {}
        self._by_recipient: dict[str, list[int]] = {}
        self._seq = 0
        self._version = 0
        self._closed = False
        #: Set to True to simulate an outage (tests of fail-closed behaviour).
        self.unavailable = False

    def _check(self) -> None:
        if self._closed or self.unavailable:
            raise StoreUnavailable("memory store is unavailable")

    def migrate(self) -> None:
        self._check()

    def close(self) -> None:
        self._closed = True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check()
            snapshot = (
                {k: list(v) for k, v in self._history.items()},
                {k: dict(v) for k, v in self._state.items()},
                {k: list(v) for k, v in self._collections.items()},
                set(self._event_ids),
                set(self._record_ids),
                self._seq,
            )
            disclosed = len(self._disclosures)  # the log only grows: its length is enough
            try:
                yield
            except BaseException:
                (
                    self._history,
                    self._state,
                    self._collections,
                    self._event_ids,
                    self._record_ids,
                    self._seq,
                ) = snapshot
                self._truncate_disclosures(disclosed)
                self._version += 1
                raise

    def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        with self._lock:
            self._check()
            ids = [e.event_id for e in events]
            if len(set(ids)) != len(ids) or self._event_ids.intersection(ids):
                raise StoreUnavailable("duplicate consent event id")
            for event in events:
                key = (event.controller, event.subject_kind, event.subject_id)
                self._history.setdefault(key, []).append(event)
                self._seq += 1
                self._state.setdefault(key, {})[(event.purpose, event.scope.key)] = ConsentState(
                    consent_id=event.consent_id,
                    purpose=event.purpose,
                    scope=event.scope,
                    granted=event.action is ConsentAction.GRANT,
                    policy_version=event.policy_version,
                    at=event.at,
                    seq=self._seq,
                )
            self._event_ids.update(ids)
            self._version += 1

    def consent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        with self._lock:
            self._check()
            return tuple(self._state.get(subject, {}).values())

    def consent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        with self._lock:
            self._check()
            return tuple(self._history.get(subject, ()))

    def change_token(self) -> Hashable:
        self._check()
        return self._version

    def append_collections(self, records: Sequence[CollectionRecord]) -> None:
        with self._lock:
            self._check()
            ids = [r.record_id for r in records]
            if len(set(ids)) != len(ids) or self._record_ids.intersection(ids):
                raise StoreUnavailable("duplicate collection record id")
            for record in records:
                key = (record.controller, record.subject_kind, record.subject_id)
                self._collections.setdefault(key, []).append(record)
            self._record_ids.update(ids)

    def collections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]:
        with self._lock:
            self._check()
            return tuple(self._collections.get(subject, ()))

    # -- disclosures -----------------------------------------------------------------
    def append_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        with self._lock:
            self._check()
            batch = list(records)  # may raise: then nothing was written
            ids = [r.disclosure_id for r in batch]
            if len(set(ids)) != len(ids) or self._disclosure_ids.intersection(ids):
                raise StoreUnavailable("duplicate disclosure id")
            for record in batch:
                if record.at.tzinfo is None or record.at.utcoffset() is None:
                    raise StoreError("memory store: a record's time must be timezone-aware")
            start = len(self._disclosures)
            self._disclosures.extend(batch)
            for i, record in enumerate(batch, start):
                key = (record.controller, record.subject_kind, record.subject_id)
                self._by_subject.setdefault(key, []).append(i)
                self._by_recipient.setdefault(record.recipient, []).append(i)
            self._disclosure_ids.update(ids)

    def _truncate_disclosures(self, length: int) -> None:
        dropped = self._disclosures[length:]
        if not dropped:
            return
        del self._disclosures[length:]
        for record in dropped:
            self._disclosure_ids.discard(record.disclosure_id)
            key = (record.controller, record.subject_kind, record.subject_id)
            _drop_from(self._by_subject.get(key), length)
            _drop_from(self._by_recipient.get(record.recipient), length)

    def disclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        with self._lock:
            self._check()
            log = self._disclosures
            return tuple(log[i] for i in self._by_subject.get(subject, ()))

    def disclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        with self._lock:
            self._check()
            log = self._disclosures
            found = [
                log[i]
                for i in self._by_recipient.get(recipient, ())
                if (since is None or log[i].at >= since) and (until is None or log[i].at < until)
            ]
        found.sort(key=lambda r: r.at)  # stable: ties stay in the order written
        return tuple(found)


def _drop_from(positions: list[int] | None, length: int) -> None:
    """Forget positions at or past ``length`` (always at the end: positions only grow)."""
    while positions and positions[-1] >= length:
        positions.pop()
