"""``Privguard``: one object that holds a host's policy, store, ledger, decider, redactor,
recipients and disclosures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._consent import ConsentLedger
from ._decisions import Decider, Decision
from ._policy import Policy
from ._recipients import Recipient, RecipientRegistry
from ._stores import MemoryStore, Store
from ._subject import Provenance, Scope, Subject
from ._taxonomy import RecipientKind
from ._telemetry import Telemetry

if TYPE_CHECKING:
    from ._crypto import Keyring
    from ._disclosures import DisclosureBatch, DisclosureResult, Disclosures
    from ._redaction import Redactor

__all__ = ["Privguard"]


class Privguard:
    """The services a host app uses, wired together.

    >>> guard = Privguard.sqlite("privguard.sqlite3")
    >>> guard.check(subject, Purposes.SERVICE).allowed
    True

    ``store`` defaults to an in-memory store (tests, examples); production uses
    :meth:`sqlite` (one host) or a PostgreSQL store (many hosts). ``recipients`` is who
    data may be disclosed to (an empty registry by default: nothing may leave);
    ``telemetry`` where spans, metrics and log records go (the global OpenTelemetry
    providers by default).
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        store: Store | None = None,
        redactor: Redactor | None = None,
        keyring: Keyring | None = None,
        cache_ttl: float = 0.0,
        recipients: RecipientRegistry | Iterable[Recipient] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.policy = policy or Policy.default()
        self.store = store if store is not None else MemoryStore()
        self.keyring = keyring
        self.ledger = ConsentLedger(self.store, self.policy, cache_ttl=cache_ttl)
        self.decider = Decider(self.policy, self.ledger)
        self._redactor = redactor
        if not isinstance(recipients, RecipientRegistry):
            recipients = RecipientRegistry(recipients or (), taxonomy=self.policy.taxonomy)
        self.recipients = recipients
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self._disclosures: Disclosures | None = None

    @classmethod
    def sqlite(
        cls,
        path: str | os.PathLike[str],
        *,
        policy: Policy | None = None,
        redactor: Redactor | None = None,
        keyring: Keyring | None = None,
        cache_ttl: float = 0.0,
        recipients: RecipientRegistry | Iterable[Recipient] | None = None,
        telemetry: Telemetry | None = None,
    ) -> Privguard:
        from ._stores import SQLiteStore  # type: ignore[attr-defined,unused-ignore]

        store: Store = SQLiteStore(path)
        return cls(
            policy=policy,
            store=store,
            redactor=redactor,
            keyring=keyring,
            cache_ttl=cache_ttl,
            recipients=recipients,
            telemetry=telemetry,
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

    # -- disclosures (C10-C15, C19) ----------------------------------------------------
    @property
    def disclosures(self) -> Disclosures:
        """The disclosure service: disclose, and query the disclosure log."""
        if self._disclosures is None:
            from ._disclosures import Disclosures

            self._disclosures = Disclosures(
                policy=self.policy,
                decider=self.decider,
                store=self.store,
                registry=self.recipients,
                key_names=self.redactor,
                telemetry=self.telemetry,
                keyring=self.keyring,
            )
        return self._disclosures

    def disclose(
        self,
        records: Iterable[Any],
        *,
        to: Recipient | str,
        purpose: str,
        subject_of: Callable[[Any], Subject] | None = None,
        scope: Scope | Mapping[str, str] | None = None,
        controller: str | None = None,
        fields: Mapping[str, str] | None = None,
        provenance_of: Callable[[Any], Provenance | None] | None = None,
        reference: str | None = None,
    ) -> DisclosureResult:
        """Check, reduce, protect and record a disclosure; see :meth:`Disclosures.disclose`."""
        return self.disclosures.disclose(
            records,
            to=to,
            purpose=purpose,
            subject_of=subject_of,
            scope=scope,
            controller=controller,
            fields=fields,
            provenance_of=provenance_of,
            reference=reference,
        )

    async def adisclose(
        self,
        records: Iterable[Any],
        *,
        to: Recipient | str,
        purpose: str,
        subject_of: Callable[[Any], Subject] | None = None,
        scope: Scope | Mapping[str, str] | None = None,
        controller: str | None = None,
        fields: Mapping[str, str] | None = None,
        provenance_of: Callable[[Any], Provenance | None] | None = None,
        reference: str | None = None,
    ) -> DisclosureResult:
        """:meth:`disclose` off the event loop."""
        return await self.disclosures.adisclose(
            records,
            to=to,
            purpose=purpose,
            subject_of=subject_of,
            scope=scope,
            controller=controller,
            fields=fields,
            provenance_of=provenance_of,
            reference=reference,
        )

    def disclosing(
        self,
        *,
        to: Recipient | str,
        purpose: str,
        scope: Scope | Mapping[str, str] | None = None,
        controller: str | None = None,
        fields: Mapping[str, str] | None = None,
        reference: str | None = None,
    ) -> DisclosureBatch:
        """A batch committed when its ``with`` block ends; see :meth:`Disclosures.disclosing`."""
        return self.disclosures.disclosing(
            to=to,
            purpose=purpose,
            scope=scope,
            controller=controller,
            fields=fields,
            reference=reference,
        )

    def close(self) -> None:
        self.store.close()
