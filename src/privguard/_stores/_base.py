"""The store interface.

Every store serves sync and async callers. Sync methods do the I/O; the async ``a*``
twins default to running the sync method in a worker thread (``asyncio.to_thread``), so
a check made on the event loop never blocks it. A store with a native async driver
(PostgreSQL) overrides them.

A store keeps records and answers queries. It never decides: no policy, no purposes
beyond the strings it is given.

Failure contract: any failure to read or write raises :class:`StoreUnavailable`
(``MigrationError`` for schema trouble). Writes of a sequence are atomic: all or none.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from .._records import CollectionRecord, ConsentEvent, ConsentState, DisclosureRecord

__all__ = ["Store", "SubjectKey"]

SubjectKey = tuple[str, str, str]
"""(controller, subject kind, subject id)."""


class Store(ABC):
    """Where privguard keeps consents, provenance, disclosures and (later) audit."""

    #: A short name for messages and metrics ("memory", "sqlite", "postgresql").
    name: str = "store"

    # -- lifecycle -----------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> None:
        """Bring the schema to this code's version. Idempotent."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Group writes from this thread: all of them land, or none."""

    # -- consents ------------------------------------------------------------------
    @abstractmethod
    def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        """Append to the history and update the current state, atomically."""

    @abstractmethod
    def consent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        """The current state of every (purpose, scope) the subject has ever touched."""

    @abstractmethod
    def consent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        """Every consent event of the subject, oldest first."""

    @abstractmethod
    def change_token(self) -> Hashable:
        """A value that changes whenever consent data changes, in any process.

        Cheap: called before a cached consent state is trusted.
        """

    def consent_snapshot(self, subject: SubjectKey) -> tuple[Hashable, tuple[ConsentState, ...]]:
        """The change token and the subject's states, the token read first (or atomically).

        What a consent-cache miss reads. A store that can read both in one round trip
        overrides this.
        """
        return self.change_token(), self.consent_states(subject)

    # -- provenance ----------------------------------------------------------------
    @abstractmethod
    def append_collections(self, records: Sequence[CollectionRecord]) -> None: ...

    @abstractmethod
    def collections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]: ...

    # -- disclosures (C10-C15, C19) ------------------------------------------------
    @abstractmethod
    def append_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        """Append to the disclosure log, atomically: every record or none.

        The log is append-only. A ``disclosure_id`` already in it is refused
        (:class:`StoreUnavailable`, nothing written); times must be timezone-aware.
        """

    @abstractmethod
    def disclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        """Every disclosure of the subject's data, in the order written (who got my data)."""

    @abstractmethod
    def disclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        """Disclosures to the recipient named ``recipient`` with ``since <= at < until``,
        oldest first (ties in the order written)."""

    # -- async twins -----------------------------------------------------------------
    async def amigrate(self) -> None:
        await asyncio.to_thread(self.migrate)

    async def aappend_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        await asyncio.to_thread(self.append_consent_events, events)

    async def aconsent_states(self, subject: SubjectKey) -> tuple[ConsentState, ...]:
        return await asyncio.to_thread(self.consent_states, subject)

    async def aconsent_history(self, subject: SubjectKey) -> tuple[ConsentEvent, ...]:
        return await asyncio.to_thread(self.consent_history, subject)

    async def aconsent_snapshot(
        self, subject: SubjectKey
    ) -> tuple[Hashable, tuple[ConsentState, ...]]:
        return await asyncio.to_thread(self.consent_snapshot, subject)

    async def achange_token(self) -> Hashable:
        return await asyncio.to_thread(self.change_token)

    async def aappend_collections(self, records: Sequence[CollectionRecord]) -> None:
        await asyncio.to_thread(self.append_collections, records)

    async def acollections(self, subject: SubjectKey) -> tuple[CollectionRecord, ...]:
        return await asyncio.to_thread(self.collections, subject)

    async def aappend_disclosures(self, records: Sequence[DisclosureRecord]) -> None:
        await asyncio.to_thread(self.append_disclosures, records)

    async def adisclosures_for_subject(self, subject: SubjectKey) -> tuple[DisclosureRecord, ...]:
        return await asyncio.to_thread(self.disclosures_for_subject, subject)

    async def adisclosures_for_recipient(
        self,
        recipient: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        return await asyncio.to_thread(
            lambda: self.disclosures_for_recipient(recipient, since=since, until=until)
        )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[None]:  # pragma: no cover - guard against misuse
        raise TypeError("a Store is not iterable")
