"""``Privguard``: one object that holds a host's policy, store, ledger, decider and redactor."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._consent import ConsentLedger
from ._decisions import Decider, Decision
from ._policy import Policy
from ._stores import MemoryStore, Store
from ._subject import Provenance, Scope, Subject
from ._taxonomy import RecipientKind

if TYPE_CHECKING:
    from ._crypto import Keyring
    from ._redaction import Redactor

__all__ = ["Privguard"]


class Privguard:
    """The services a host app uses, wired together.

    >>> guard = Privguard.sqlite("privguard.sqlite3")
    >>> guard.check(subject, Purposes.SERVICE).allowed
    True

    ``store`` defaults to an in-memory store (tests, examples); production uses
    :meth:`sqlite` (one host) or a PostgreSQL store (many hosts).
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        store: Store | None = None,
        redactor: Redactor | None = None,
        keyring: Keyring | None = None,
        cache_ttl: float = 0.0,
    ) -> None:
        self.policy = policy or Policy.default()
        self.store = store if store is not None else MemoryStore()
        self.keyring = keyring
        self.ledger = ConsentLedger(self.store, self.policy, cache_ttl=cache_ttl)
        self.decider = Decider(self.policy, self.ledger)
        self._redactor = redactor

    @classmethod
    def sqlite(
        cls,
        path: str | os.PathLike[str],
        *,
        policy: Policy | None = None,
        redactor: Redactor | None = None,
        keyring: Keyring | None = None,
        cache_ttl: float = 0.0,
    ) -> Privguard:
        from ._stores import SQLiteStore  # type: ignore[attr-defined,unused-ignore]

        store: Store = SQLiteStore(path)
        return cls(
            policy=policy, store=store, redactor=redactor, keyring=keyring, cache_ttl=cache_ttl
        )

    @property
    def redactor(self) -> Redactor:
        if self._redactor is None:
            from ._redaction import Redactor

            self._redactor = Redactor(self.policy, keyring=self.keyring)
        return self._redactor

    def check(
        self,
        subject: Subject,
        purpose: str,
        categories: Iterable[str] = (),
        *,
        recipient: RecipientKind | str | None = None,
        scope: Scope | None = None,
        provenance: Provenance | None = None,
        controller: str | None = None,
    ) -> Decision:
        return self.decider.check(
            subject,
            purpose,
            categories,
            recipient=recipient,
            scope=scope,
            provenance=provenance,
            controller=controller,
        )

    async def acheck(
        self,
        subject: Subject,
        purpose: str,
        categories: Iterable[str] = (),
        *,
        recipient: RecipientKind | str | None = None,
        scope: Scope | None = None,
        provenance: Provenance | None = None,
        controller: str | None = None,
    ) -> Decision:
        return await self.decider.acheck(
            subject,
            purpose,
            categories,
            recipient=recipient,
            scope=scope,
            provenance=provenance,
            controller=controller,
        )

    def close(self) -> None:
        self.store.close()
