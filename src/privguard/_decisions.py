"""Decisions: may this subject's data be processed for this purpose, now?

A decision needs no I/O but one consent lookup, and only when the rule's basis is consent
or the purpose is one the person can object to. Everything else is answered from the
policy's compiled tables and cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ._consent import ConsentLedger
from ._errors import ConsentRequired, PolicyError, PurposeDenied
from ._policy import Basis, CompiledRule, Policy, Protection
from ._records import ConsentState
from ._subject import EMPTY_SCOPE, Provenance, Scope, Subject
from ._taxonomy import RecipientKind, covers

__all__ = ["Decider", "Decision", "Reason"]


class Reason(StrEnum):
    """Stable reason codes. They appear in errors, problem documents and telemetry."""

    ALLOWED = "allowed"
    NO_RULE = "no_rule"
    FORBIDDEN = "forbidden"
    CATEGORY_NOT_PERMITTED = "category_not_permitted"
    RECIPIENT_NOT_PERMITTED = "recipient_not_permitted"
    SCOPE_REQUIRED = "scope_required"
    CONSENT_MISSING = "consent_missing"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    OBJECTED = "objected"
    FRESH_CONSENT_REQUIRED = "fresh_consent_required"
    PURPOSE_BOUND = "purpose_bound"
    OUT_OF_SCOPE = "out_of_scope"
    PROVENANCE_REQUIRED = "provenance_required"
    CROSS_TENANT = "cross_tenant"


_CONSENT_REASONS: Final = frozenset(
    {Reason.CONSENT_MISSING, Reason.CONSENT_WITHDRAWN, Reason.FRESH_CONSENT_REQUIRED}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a check. Holds no personal data, so it may be logged and cached.

    ``obligations`` are the protections that apply to the audience (e.g. mask card
    numbers unless the recipient is a payment processor).
    """

    allowed: bool
    reason: Reason
    purpose: str
    basis: Basis | None
    policy_version: str
    categories: tuple[str, ...] = ()
    recipient: RecipientKind | None = None
    consent_id: str | None = None
    obligations: tuple[Protection, ...] = ()
    clauses: tuple[str, ...] = ()
    denied_categories: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def needs_consent(self) -> bool:
        return self.reason in _CONSENT_REASONS

    def raise_for_denial(self) -> None:
        """Raise :class:`ConsentRequired` or :class:`PurposeDenied` unless allowed."""
        if self.allowed:
            return
        cls = ConsentRequired if self.needs_consent else PurposeDenied
        raise cls(
            self.purpose,
            self.reason.value,
            categories=self.denied_categories,
            recipient=self.recipient.value if self.recipient else None,
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """The static part of a decision that still needs the consent ledger."""

    compiled: CompiledRule
    basis: Basis
    categories: tuple[str, ...]
    recipient: RecipientKind | None
    scope: Scope
    fresh_rank: int  # consents must be at least this version rank (C34); -1: any
    key: tuple[object, ...]


# Restrictiveness of a basis, for comparing policy versions (C34).
_RANK: Final = {
    Basis.CONTRACT: 0,
    Basis.LEGAL_OBLIGATION: 0,
    Basis.LEGITIMATE_INTEREST: 1,
    Basis.CONSENT: 2,
    Basis.FORBIDDEN: 3,
}
_CACHE_LIMIT: Final = 8192


class Decider:
    """Checks purposes against the policy and the consent ledger.

    >>> decider = Decider(policy, ledger)
    >>> decider.check(subject, Purposes.EXHIBITOR_DISCLOSURE, [Categories.EMAIL],
    ...               recipient="exhibitor", scope=Scope(event="e1", exhibitor="acme"))
    """

    def __init__(self, policy: Policy, ledger: ConsentLedger) -> None:
        self.policy = policy
        self.ledger = ledger
        self._static: dict[tuple[object, ...], Decision | _Pending] = {}
        # Last outcome per pending key, valid while the ledger hands out the same states
        # tuple (it builds a new one whenever consent changes).
        self._last: dict[tuple[object, ...], tuple[tuple[ConsentState, ...], Decision]] = {}
        self._recipients: dict[object, RecipientKind] = {k: k for k in RecipientKind}
        self._recipients.update({k.value: k for k in RecipientKind})

    # -- public API --------------------------------------------------------------------
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
        """Decide. Raises :class:`StoreUnavailable` when consent cannot be read."""
        outcome = self._decide_static(
            subject, purpose, categories, recipient, scope, provenance, controller
        )
        if isinstance(outcome, Decision):
            return outcome
        return self._finish(outcome, self.ledger.states(subject))

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
        """:meth:`check` for the event loop: the consent lookup never blocks it."""
        outcome = self._decide_static(
            subject, purpose, categories, recipient, scope, provenance, controller
        )
        if isinstance(outcome, Decision):
            return outcome
        return self._finish(outcome, await self.ledger.astates(subject))

    def decided_without_io(
        self,
        subject: Subject,
        purpose: str,
        categories: Iterable[str] = (),
        *,
        recipient: RecipientKind | str | None = None,
        scope: Scope | None = None,
    ) -> Decision | None:
        """The decision when it needs no consent lookup (from the compiled tables and
        the cache), else ``None``: then call :meth:`acheck`. Lets async callers skip a
        coroutine on the common path."""
        outcome = self._decide_static(subject, purpose, categories, recipient, scope, None, None)
        return outcome if isinstance(outcome, Decision) else None

    # -- static part ---------------------------------------------------------------------
    def _decide_static(
        self,
        subject: Subject,
        purpose: str,
        categories: Iterable[str],
        recipient: RecipientKind | str | None,
        scope: Scope | None,
        provenance: Provenance | None,
        controller: str | None,
    ) -> Decision | _Pending:
        if type(categories) is tuple:
            cats: tuple[str, ...] = categories
        else:
            cats = (categories,) if isinstance(categories, str) else tuple(categories)
        if recipient is None:
            rkind = None
        else:
            rkind = self._recipients.get(recipient) or self.policy.taxonomy.recipient_kind(
                recipient
            )
        scope = EMPTY_SCOPE if scope is None else scope
        if controller is not None and controller != subject.controller:
            return self._deny(purpose, Reason.CROSS_TENANT, None, cats, rkind)
        key: tuple[object, ...]
        if provenance is None:
            key = (subject.kind, subject.jurisdiction, purpose, cats, rkind, scope)
            cached = self._static.get(key)
            if cached is None:
                cached = self._compute(subject, purpose, cats, rkind, scope, None, key)
                if len(self._static) >= _CACHE_LIMIT:
                    self._static.clear()
                self._static[key] = cached
            return cached
        key = (subject.kind, subject.jurisdiction, purpose, cats, rkind, scope, provenance)
        return self._compute(subject, purpose, cats, rkind, scope, provenance, key)

    def _basis(self, compiled: CompiledRule, jurisdiction: str) -> Basis:
        rule = compiled.rule
        if not rule.jurisdictions:
            return rule.basis
        if not jurisdiction:
            # Unknown jurisdiction: the most restrictive of the choices (fail closed).
            return max((rule.basis, *rule.jurisdictions.values()), key=_RANK.__getitem__)
        for key in self.policy.jurisdiction_keys(jurisdiction):
            if key in rule.jurisdictions:
                return rule.jurisdictions[key]
        return rule.basis

    def _static_rank(
        self,
        policy: Policy,
        subject: Subject,
        purpose: str,
        cats: tuple[str, ...],
        rkind: RecipientKind | None,
    ) -> int:
        """How restrictive ``policy`` is for this request, ignoring consent state."""
        compiled = policy.rule_for(subject.kind, purpose)
        if compiled is None:
            return _RANK[Basis.FORBIDDEN]
        if any(not policy.category_allowed(compiled, c) for c in cats):
            return _RANK[Basis.FORBIDDEN]
        if rkind is not None and rkind not in compiled.recipients:
            return _RANK[Basis.FORBIDDEN]
        return _RANK[self._basis(compiled, subject.jurisdiction)]

    def _compute(
        self,
        subject: Subject,
        purpose: str,
        cats: tuple[str, ...],
        rkind: RecipientKind | None,
        scope: Scope,
        provenance: Provenance | None,
        key: tuple[object, ...],
    ) -> Decision | _Pending:
        policy = self.policy
        compiled = policy.rule_for(subject.kind, purpose)
        if compiled is None:
            policy.taxonomy.purpose(purpose)  # unknown purpose: a programming error
        for category in cats:
            policy.taxonomy.category(category)  # so is an unknown category, whatever the rule
        if compiled is None:
            return self._deny(purpose, Reason.NO_RULE, None, cats, rkind)
        rule = compiled.rule
        basis = self._basis(compiled, subject.jurisdiction)
        if basis is Basis.FORBIDDEN:
            return self._deny(purpose, Reason.FORBIDDEN, basis, cats, rkind, rule.clauses)
        denied = tuple(c for c in cats if not policy.category_allowed(compiled, c))
        if denied:
            return self._deny(
                purpose, Reason.CATEGORY_NOT_PERMITTED, basis, cats, rkind, rule.clauses, denied
            )
        if rkind is not None and rkind not in compiled.recipients:
            return self._deny(
                purpose, Reason.RECIPIENT_NOT_PERMITTED, basis, cats, rkind, rule.clauses
            )
        fresh_rank = -1
        if provenance is not None:
            if provenance.bound and not covers(provenance.purpose, purpose):
                return self._deny(purpose, Reason.PURPOSE_BOUND, basis, cats, rkind, ("C16",))
            for scope_key in rule.bind_scope:
                if provenance.scope.get(scope_key) != scope.get(scope_key) or (
                    scope_key not in scope
                ):
                    return self._deny(
                        purpose, Reason.OUT_OF_SCOPE, basis, cats, rkind, rule.clauses
                    )
            version = provenance.policy_version
            if version is not None and version != policy.version:
                try:
                    old_rank = self._static_rank(policy.at(version), subject, purpose, cats, rkind)
                except PolicyError:  # a version this policy never had: treat as strictest
                    old_rank = _RANK[Basis.FORBIDDEN]
                if old_rank > _RANK[basis]:
                    # The new version is less restrictive than the one the data was
                    # collected under: it applies only with fresh consent (C34).
                    basis = Basis.CONSENT
                    fresh_rank = policy.version_rank(policy.version)
        elif rule.bind_scope:
            return self._deny(purpose, Reason.PROVENANCE_REQUIRED, basis, cats, rkind, rule.clauses)
        if basis is Basis.CONSENT and rule.consent_scope and fresh_rank < 0:
            missing = [k for k in rule.consent_scope if k not in scope]
            if missing:
                return self._deny(purpose, Reason.SCOPE_REQUIRED, basis, cats, rkind, rule.clauses)
        if basis is not Basis.CONSENT and not rule.objectable:
            return Decision(
                allowed=True,
                reason=Reason.ALLOWED,
                purpose=purpose,
                basis=basis,
                policy_version=policy.version,
                categories=cats,
                recipient=rkind,
                obligations=policy.obligations_for(rkind),
                clauses=rule.clauses,
            )
        return _Pending(compiled, basis, cats, rkind, scope, fresh_rank, key)

    def _deny(
        self,
        purpose: str,
        reason: Reason,
        basis: Basis | None,
        cats: tuple[str, ...],
        rkind: RecipientKind | None,
        clauses: tuple[str, ...] = (),
        denied: tuple[str, ...] = (),
    ) -> Decision:
        return Decision(
            allowed=False,
            reason=reason,
            purpose=purpose,
            basis=basis,
            policy_version=self.policy.version,
            categories=cats,
            recipient=rkind,
            clauses=clauses,
            denied_categories=denied,
        )

    # -- the consent part ------------------------------------------------------------------
    def _finish(self, pending: _Pending, states: tuple[ConsentState, ...]) -> Decision:
        last = self._last.get(pending.key)
        if last is not None and last[0] is states:
            return last[1]
        decision = self._match(pending, states)
        if len(self._last) >= _CACHE_LIMIT:
            self._last.clear()
        self._last[pending.key] = (states, decision)
        return decision

    def _match(self, pending: _Pending, states: tuple[ConsentState, ...]) -> Decision:
        compiled = pending.compiled
        purpose = compiled.purpose
        scope = pending.scope
        required = compiled.rule.consent_scope if pending.basis is Basis.CONSENT else ()
        best: ConsentState | None = None
        for state in states:
            if not covers(state.purpose, purpose) or not state.scope.within(scope):
                continue
            if state.granted and (
                any(k not in state.scope for k in required)
                or self.policy.version_rank(state.policy_version) < pending.fresh_rank
            ):
                continue
            if best is None or state.seq > best.seq:
                best = state
        if best is None:
            if pending.basis is Basis.CONSENT:
                reason = (
                    Reason.FRESH_CONSENT_REQUIRED
                    if pending.fresh_rank >= 0
                    else Reason.CONSENT_MISSING
                )
                return self._final_decision(pending, False, reason, None)
            return self._final_decision(pending, True, Reason.ALLOWED, None)
        if best.granted:
            return self._final_decision(pending, True, Reason.ALLOWED, best.consent_id)
        reason = Reason.CONSENT_WITHDRAWN if pending.basis is Basis.CONSENT else Reason.OBJECTED
        return self._final_decision(pending, False, reason, best.consent_id)

    def _final_decision(
        self, pending: _Pending, allowed: bool, reason: Reason, consent_id: str | None
    ) -> Decision:
        rkind = pending.recipient
        return Decision(
            allowed,
            reason,
            pending.compiled.purpose,
            pending.basis,
            self.policy.version,
            pending.categories,
            rkind,
            consent_id,
            self.policy.obligations_for(rkind) if allowed else (),
            pending.compiled.rule.clauses,
        )
