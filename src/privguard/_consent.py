"""The consent ledger: append-only history, derived current state, a validated cache."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ._errors import PolicyError, PurposeDenied
from ._policy import Policy
from ._records import (
    CollectionRecord,
    ConsentAction,
    ConsentEvent,
    ConsentState,
    Evidence,
)
from ._stores import Store
from ._subject import EMPTY_SCOPE, Provenance, Scope, Subject
from ._taxonomy import covers

__all__ = ["ConsentLedger", "ConsentRecord"]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """What :meth:`ConsentLedger.grant` and ``withdraw`` return: the events written."""

    consent_id: str
    action: ConsentAction
    purpose: str
    scope: Scope
    policy_version: str
    at: datetime
    events: int = 1


def _same_tenant(subject: Subject, controller: str | None) -> None:
    if controller is not None and controller != subject.controller:
        raise PurposeDenied("read", "cross_tenant")


def _now() -> datetime:
    return datetime.now(UTC)


class ConsentLedger:
    """Grant and withdraw consent per subject, purpose and scope, with evidence (C07).

    History is append-only; the current state is derived from it by the store in the same
    transaction. A withdrawal takes effect for the very next check in this process: every
    write invalidates the cache. Writes made by other processes are seen through the
    store's ``change_token``, checked before a cached state is trusted; ``cache_ttl``
    (seconds, default 0) lets a deployment trade that check for a stated staleness bound.

    Consent to a purpose covers its sub-purposes; consent for a scope covers narrower
    scopes (``{event: E1}`` covers ``{event: E1, exhibitor: acme}``).
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        cache_ttl: float = 0.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if cache_ttl < 0:
            raise PolicyError("cache_ttl must be >= 0")
        self.store = store
        self.policy = policy
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[ConsentState, ...]] = {}
        self._token: Hashable = object()
        self._token_checked = 0.0

    # -- writes ------------------------------------------------------------------------
    def _events(
        self,
        subject: Subject,
        purpose: str,
        scope: Scope | None,
        action: ConsentAction,
        evidence: Evidence,
        states: Iterable[ConsentState],
    ) -> tuple[ConsentRecord, list[ConsentEvent]]:
        self.policy.taxonomy.purpose(purpose)
        if not isinstance(evidence, Evidence):
            raise PolicyError("consent needs Evidence (how, by whom, which notice)")
        scope = scope if scope is not None else EMPTY_SCOPE
        if not isinstance(scope, Scope):
            scope = Scope(scope)
        at = self._clock()
        consent_id = str(uuid.uuid4())
        controller, kind, sid = subject.key

        def event(p: str, s: Scope, cid: str) -> ConsentEvent:
            return ConsentEvent(
                event_id=str(uuid.uuid4()),
                consent_id=cid,
                controller=controller,
                subject_kind=kind,
                subject_id=sid,
                purpose=p,
                scope=s,
                action=action,
                policy_version=self.policy.version,
                at=at,
                evidence=evidence,
            )

        events = [event(purpose, scope, consent_id)]
        if action is ConsentAction.WITHDRAW:
            # A withdrawal also ends every narrower grant it covers, so the state says
            # plainly what holds (withdrawing "exhibitor disclosure at E1" ends the
            # consent for each exhibitor at E1).
            for state in states:
                if (
                    state.granted
                    and covers(purpose, state.purpose)
                    and scope.within(state.scope)
                    and (state.purpose, state.scope) != (purpose, scope)
                ):
                    events.append(event(state.purpose, state.scope, state.consent_id))
        record = ConsentRecord(
            consent_id=consent_id,
            action=action,
            purpose=purpose,
            scope=scope,
            policy_version=self.policy.version,
            at=at,
            events=len(events),
        )
        return record, events

    def grant(
        self, subject: Subject, purpose: str, *, evidence: Evidence, scope: Scope | None = None
    ) -> ConsentRecord:
        """Record explicit consent. Returns the record with its ``consent_id``."""
        record, events = self._events(subject, purpose, scope, ConsentAction.GRANT, evidence, ())
        self._write(subject, events)
        return record

    def withdraw(
        self, subject: Subject, purpose: str, *, evidence: Evidence, scope: Scope | None = None
    ) -> ConsentRecord:
        """Withdraw consent (or object, for an opt-out purpose). Effective at once."""
        states = self.store.consent_states(subject.key)
        record, events = self._events(
            subject, purpose, scope, ConsentAction.WITHDRAW, evidence, states
        )
        self._write(subject, events)
        return record

    async def agrant(
        self, subject: Subject, purpose: str, *, evidence: Evidence, scope: Scope | None = None
    ) -> ConsentRecord:
        record, events = self._events(subject, purpose, scope, ConsentAction.GRANT, evidence, ())
        await self._awrite(subject, events)
        return record

    async def awithdraw(
        self, subject: Subject, purpose: str, *, evidence: Evidence, scope: Scope | None = None
    ) -> ConsentRecord:
        states = await self.store.aconsent_states(subject.key)
        record, events = self._events(
            subject, purpose, scope, ConsentAction.WITHDRAW, evidence, states
        )
        await self._awrite(subject, events)
        return record

    def _forget(self, subject: Subject) -> None:
        self._cache.pop(subject.key, None)
        self._token = object()
        self._token_checked = 0.0

    def _write(self, subject: Subject, events: list[ConsentEvent]) -> None:
        self._cache.pop(subject.key, None)
        try:
            self.store.append_consent_events(events)
        finally:
            self._forget(subject)

    async def _awrite(self, subject: Subject, events: list[ConsentEvent]) -> None:
        self._cache.pop(subject.key, None)
        try:
            await self.store.aappend_consent_events(events)
        finally:
            self._forget(subject)

    # -- reads ---------------------------------------------------------------------------
    def _within_ttl(self) -> bool:
        return bool(self.cache_ttl) and time.monotonic() - self._token_checked < self.cache_ttl

    def _accept_token(self, token: Hashable) -> None:
        """Record a freshly read change token; a new one empties the cache."""
        self._token_checked = time.monotonic()
        if token != self._token:
            self._cache.clear()
            self._token = token

    # The token is read before any state, so a write that lands between the two changes
    # the token and the next check discards what is cached now.
    def _validate_sync(self) -> None:
        if not self._within_ttl():
            self._accept_token(self.store.change_token())

    async def _validate_async(self) -> None:
        if not self._within_ttl():
            self._accept_token(await self.store.achange_token())

    def states(self, subject: Subject) -> tuple[ConsentState, ...]:
        """The subject's current consent states (cached, validated against the store)."""
        key = subject.key
        if key in self._cache:
            self._validate_sync()
            states = self._cache.get(key)
            if states is not None:
                return states
        # A miss reads the token with the states (one round trip where the store can).
        token, states = self.store.consent_snapshot(key)
        self._remember(key, token, states)
        return states

    async def astates(self, subject: Subject) -> tuple[ConsentState, ...]:
        key = subject.key
        if key in self._cache:
            await self._validate_async()
            states = self._cache.get(key)
            if states is not None:
                return states
        token, states = await self.store.aconsent_snapshot(key)
        self._remember(key, token, states)
        return states

    def _remember(
        self, key: tuple[str, str, str], token: Hashable, states: tuple[ConsentState, ...]
    ) -> None:
        self._accept_token(token)
        self._cache[key] = states

    def history(
        self, subject: Subject, *, controller: str | None = None
    ) -> tuple[ConsentEvent, ...]:
        """Every consent event of the subject, oldest first (for access requests).

        ``controller`` is the tenant asking: another tenant's subject is refused with
        :class:`PurposeDenied` (reason ``cross_tenant``, C05).
        """
        _same_tenant(subject, controller)
        return self.store.consent_history(subject.key)

    async def ahistory(
        self, subject: Subject, *, controller: str | None = None
    ) -> tuple[ConsentEvent, ...]:
        _same_tenant(subject, controller)
        return await self.store.aconsent_history(subject.key)

    # -- provenance (C16, C17) -----------------------------------------------------------
    def record_collection(
        self,
        subject: Subject,
        categories: Iterable[str],
        provenance: Provenance,
    ) -> CollectionRecord:
        """Record where data came from and what it was collected for."""
        cats = tuple(self.policy.taxonomy.category(c) for c in categories)
        self.policy.taxonomy.purpose(provenance.purpose)
        controller, kind, sid = subject.key
        record = CollectionRecord(
            record_id=str(uuid.uuid4()),
            controller=controller,
            subject_kind=kind,
            subject_id=sid,
            categories=cats,
            purpose=provenance.purpose,
            source=provenance.source,
            scope=provenance.scope,
            policy_version=provenance.policy_version or self.policy.version,
            bound=provenance.bound,
            at=provenance.collected_at or self._clock(),
        )
        self.store.append_collections([record])
        return record

    def collections(
        self, subject: Subject, *, controller: str | None = None
    ) -> tuple[CollectionRecord, ...]:
        """Where the subject's data came from (C17); ``controller`` as for :meth:`history`."""
        _same_tenant(subject, controller)
        return self.store.collections(subject.key)

    def invalidate(self) -> None:
        """Forget every cached state (e.g. after restoring a backup)."""
        self._cache.clear()
        self._token = object()
        self._token_checked = 0.0
