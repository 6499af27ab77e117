"""Fixtures shared by the whole suite. Keep them general: other modules add theirs here."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from privguard._records import (
    CollectionRecord,
    ConsentAction,
    ConsentEvent,
    ConsentMethod,
    DisclosureRecord,
    Evidence,
)
from privguard._stores import MemoryStore, SQLiteStore, Store
from privguard._subject import Scope, Source
from tests.pg import contract_store

pytest_plugins = ["tests.pg"]

# -- stores ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreFactory:
    """How the contract suite builds one kind of store, in a fresh temporary directory."""

    make: Callable[[Path], Store]
    marks: tuple[pytest.MarkDecorator, ...] = ()


#: Every store the contract suite runs against. A new store is one line here.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": StoreFactory(lambda tmp: MemoryStore()),
    "sqlite": StoreFactory(lambda tmp: SQLiteStore(tmp / "privguard.db")),
    "postgresql": StoreFactory(contract_store, marks=(pytest.mark.postgres,)),
}


@pytest.fixture(
    params=[pytest.param(name, marks=f.marks, id=name) for name, f in STORE_FACTORIES.items()]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind in :data:`STORE_FACTORIES`; closed afterwards."""
    made = STORE_FACTORIES[request.param].make(tmp_path)
    try:
        yield made
    finally:
        made.close()


# -- records -----------------------------------------------------------------------------

#: A fixed, timezone-aware UTC instant; records built in a test count up from it.
T0 = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=UTC)


class RecordFactory:
    """Builds valid consent events, collection and disclosure records with unique ids and
    rising times.

    Every field can be overridden by keyword; ``subject`` is a store key
    ``(controller, kind, id)``.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _next(self) -> int:
        return next(self._ids)

    def event(
        self,
        subject: tuple[str, str, str] = ("tenant-a", "customer", "user-1"),
        *,
        purpose: str = "marketing.email",
        scope: Scope | None = None,
        action: ConsentAction = ConsentAction.GRANT,
        **overrides: Any,
    ) -> ConsentEvent:
        n = self._next()
        controller, kind, subject_id = subject
        fields: dict[str, Any] = {
            "event_id": f"evt-{n}",
            "consent_id": f"cns-{n}",
            "controller": controller,
            "subject_kind": kind,
            "subject_id": subject_id,
            "purpose": purpose,
            "scope": scope if scope is not None else Scope(),
            "action": action,
            "policy_version": "2024-05",
            "at": T0 + timedelta(seconds=n),
            "evidence": Evidence(
                method=ConsentMethod.FORM,
                actor=subject_id,
                notice_version="notice-3",
                jurisdiction="DE",
                request_trace=f"trace-{n}",
            ),
        }
        fields.update(overrides)
        return ConsentEvent(**fields)

    def collection(
        self, subject: tuple[str, str, str] = ("tenant-a", "customer", "user-1"), **overrides: Any
    ) -> CollectionRecord:
        n = self._next()
        controller, kind, subject_id = subject
        fields: dict[str, Any] = {
            "record_id": f"col-{n}",
            "controller": controller,
            "subject_kind": kind,
            "subject_id": subject_id,
            "categories": ("user.contact.email", "user.name"),
            "purpose": "event.registration",
            "source": Source.FORM,
            "scope": Scope(event="E1"),
            "policy_version": "2024-05",
            "bound": False,
            "at": T0 + timedelta(seconds=n),
        }
        fields.update(overrides)
        return CollectionRecord(**fields)

    def disclosure(
        self, subject: tuple[str, str, str] = ("tenant-a", "customer", "user-1"), **overrides: Any
    ) -> DisclosureRecord:
        n = self._next()
        controller, kind, subject_id = subject
        fields: dict[str, Any] = {
            "disclosure_id": f"dis-{n}",
            "batch_id": f"batch-{n}",
            "controller": controller,
            "subject_kind": kind,
            "subject_id": subject_id,
            "recipient": "acme",
            "recipient_kind": "exhibitor",
            "purpose": "third_party_sharing.exhibitor",
            "categories": ("user.contact.email", "user.name"),
            "basis": "consent",
            "policy_version": "2024-05",
            "at": T0 + timedelta(seconds=n),
            "channel": "export",
            "scope": Scope(event="E1", exhibitor="acme"),
            "consent_id": f"cns-{n}",
            "reference": None,
            "agreement": "DPA-7",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
        }
        fields.update(overrides)
        return DisclosureRecord(**fields)


@pytest.fixture
def records() -> RecordFactory:
    """Builders for valid store records (:class:`RecordFactory`)."""
    return RecordFactory()
