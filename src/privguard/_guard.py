"""``Privguard``: one object that holds a host's policy, store, ledger, decider, redactor,
recipients and disclosures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ._consent import ConsentLedger
from ._decisions import Decider, Decision
from ._errors import PolicyError
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

__all__ = ["Privguard", "store_from_url"]

_URL_HELP = "use memory:, sqlite:///PATH or postgresql://USER@HOST/DBNAME"


def store_from_url(url: str, *, migrate: bool = True, **options: Any) -> Store:
    """The store a URL names (see :meth:`Privguard.from_url`). Never echoes the URL."""
    if not isinstance(url, str):
        raise PolicyError(f"a store URL must be a string: {_URL_HELP}")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.strip().lower()
    if colon and scheme == "memory" and rest in ("", "//"):
        if options:
            raise PolicyError("the memory store takes no options")
        return MemoryStore()
    if colon and scheme == "sqlite":
        if not rest.startswith("///") or len(rest) == 3:
            raise PolicyError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        from ._stores import SQLiteStore

        return SQLiteStore(unquote(rest[3:]), migrate=migrate, **options)
    if colon and (scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")):
        from ._stores import PostgresStore

        # "postgresql+psycopg://" (SQLAlchemy style) names the driver: libpq wants the bare
        # scheme.
        return PostgresStore("postgresql:" + rest, migrate=migrate, **options)
    raise PolicyError(f"unsupported store URL: {_URL_HELP}")


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

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        migrate: bool = True,
        store_options: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
        redactor: Redactor | None = None,
        keyring: Keyring | None = None,
        cache_ttl: float = 0.0,
        recipients: RecipientRegistry | Iterable[Recipient] | None = None,
        telemetry: Telemetry | None = None,
    ) -> Privguard:
        """Privguard on the store one URL names, so one setting picks the store.

        >>> guard = Privguard.from_url(os.environ["PRIVGUARD_STORE_URL"])  # doctest: +SKIP

        ``memory:``; ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``;
        ``postgresql://user@host:5432/dbname`` (any libpq URL; also ``postgres://``).
        ``migrate`` brings the schema up to date first (safe with many processes; pass
        ``False`` when a deploy step runs ``python -m privguard migrate``).
        ``store_options`` go to the store (``schema``, pool sizes, timeouts...).
        """
        store = store_from_url(url, migrate=migrate, **dict(store_options or {}))
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
