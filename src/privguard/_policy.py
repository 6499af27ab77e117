"""The policy as code: immutable rules, validated when built, compiled to lookup tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ._errors import PolicyError
from ._taxonomy import RecipientKind, SubjectKind, Taxonomy

__all__ = [
    "ANY_PURPOSE",
    "Basis",
    "Operator",
    "Policy",
    "Protection",
    "Rule",
]

#: A rule on ``ANY_PURPOSE`` applies to every purpose no more specific rule names.
ANY_PURPOSE: Final = "*"


class Basis(StrEnum):
    """The lawful basis a rule grants processing on."""

    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONSENT = "consent"
    LEGAL_OBLIGATION = "legal_obligation"
    FORBIDDEN = "forbidden"


class Operator(StrEnum):
    """What redaction does to a value."""

    REMOVE = "remove"
    MASK = "mask"
    LABEL = "label"
    PSEUDONYMIZE = "pseudonymize"
    ENCRYPT = "encrypt"
    TOKENIZE = "tokenize"
    KEEP = "keep"


_ALL_KINDS: Final = tuple(SubjectKind)


@dataclass(frozen=True, slots=True)
class Rule:
    """What the policy allows for one purpose (and its sub-purposes).

    ``basis``: the lawful basis. ``CONSENT`` needs a recorded consent; ``FORBIDDEN``
    denies whatever consent says (C08).

    ``categories``: the data categories the purpose may touch (a parent covers its
    children). ``recipients``: the recipient kinds data may go to for this purpose.

    ``consent_scope``: scope keys a consent must name, e.g. ``("event", "exhibitor")``
    for consent per exhibitor (C12). A check must then give those keys in its scope.

    ``objectable``: a legitimate-interest purpose the person can object to (opt out):
    a recorded withdrawal denies it (C20, C22, C27).

    ``jurisdictions``: basis overrides by jurisdiction key: a country code (``"DE"``,
    ``"US-CA"``) or a group of the taxonomy (``"EEA"``), most specific first (C18).

    ``bind_scope``: scope keys whose value must equal the scope the data was collected
    in: the registration e-mail is used for *that* event only (C09).
    """

    purpose: str
    basis: Basis
    subject_kinds: tuple[SubjectKind, ...] = _ALL_KINDS
    categories: tuple[str, ...] = ("user",)
    recipients: tuple[RecipientKind, ...] = ()
    consent_scope: tuple[str, ...] = ()
    objectable: bool = False
    jurisdictions: Mapping[str, Basis] = field(default_factory=dict)
    bind_scope: tuple[str, ...] = ()
    clauses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "basis", Basis(self.basis))
            set_(self, "subject_kinds", tuple(SubjectKind(k) for k in _seq(self.subject_kinds)))
            set_(
                self,
                "jurisdictions",
                MappingProxyType({k.upper(): Basis(v) for k, v in self.jurisdictions.items()}),
            )
        except ValueError as exc:
            raise PolicyError(f"rule for purpose {self.purpose!r}: {exc}") from None
        recipients = tuple(Taxonomy.recipient_kind(r) for r in _seq(self.recipients))
        set_(self, "recipients", recipients)
        set_(self, "categories", tuple(_seq(self.categories)))
        set_(self, "consent_scope", tuple(_seq(self.consent_scope)))
        set_(self, "bind_scope", tuple(_seq(self.bind_scope)))
        set_(self, "clauses", tuple(_seq(self.clauses)))
        if not self.subject_kinds:
            raise PolicyError(f"rule for purpose {self.purpose!r} names no subject kind")
        if (
            self.consent_scope
            and self.basis is not Basis.CONSENT
            and not any(b is Basis.CONSENT for b in self.jurisdictions.values())
        ):
            raise PolicyError(f"rule for purpose {self.purpose!r}: consent_scope needs consent")


def _seq(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class Protection:
    """A category that is redacted with ``operator`` for every audience but ``readable_by``.

    The default policy keeps card number and expiry readable only for a
    ``payment_processor`` (C03, C10).
    """

    category: str
    operator: Operator = Operator.MASK
    readable_by: tuple[RecipientKind, ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "operator", Operator(self.operator))
        except ValueError:
            raise PolicyError(
                f"protection of {self.category!r}: unknown operator {self.operator!r}"
            ) from None
        kinds = tuple(Taxonomy.recipient_kind(r) for r in _seq(self.readable_by))
        object.__setattr__(self, "readable_by", kinds)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    purpose: str  # the purpose being looked up (rule.purpose may be a parent)
    allowed_categories: frozenset[str]
    recipients: frozenset[RecipientKind]
    needs_ledger: bool  # consent somewhere, or objectable


class Policy:
    """An immutable, validated policy.

    Building one checks every purpose, category, recipient kind and subject kind against
    the taxonomy and raises :class:`PolicyError` on the first problem, so a bad policy
    fails at start-up, never at request time.

    ``previous`` chains policy versions (C34): ``policy.revise(...)`` builds the next
    version and keeps this one, so data collected under an older version can be judged
    by it.
    """

    __slots__ = (
        "_compiled",
        "_index",
        "_jurisdiction_keys",
        "_obligations",
        "name",
        "previous",
        "protections",
        "rules",
        "taxonomy",
        "version",
    )

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        version: str,
        taxonomy: Taxonomy | None = None,
        protections: Iterable[Protection] = (),
        previous: Policy | None = None,
        name: str = "",
    ) -> None:
        if not isinstance(version, str) or not version:
            raise PolicyError("a policy needs a non-empty version string")
        # Set once here; __setattr__ refuses every later change (the default policy is
        # one shared instance).
        set_ = object.__setattr__
        self.taxonomy: Taxonomy
        self.version: str
        self.name: str
        self.previous: Policy | None
        self.rules: tuple[Rule, ...]
        self.protections: tuple[Protection, ...]
        set_(self, "taxonomy", taxonomy or Taxonomy.default())
        set_(self, "version", version)
        set_(self, "name", name)
        set_(self, "previous", previous)
        set_(self, "rules", tuple(rules))
        set_(self, "protections", tuple(protections))
        if previous is not None and version in previous.versions():
            raise PolicyError(f"policy version {version!r} already exists in its history")
        self._validate()
        self._compiled: dict[tuple[SubjectKind, str], CompiledRule]
        self._obligations: dict[RecipientKind | None, tuple[Protection, ...]]
        self._index: dict[str, int]
        set_(self, "_compiled", self._compile())
        set_(
            self,
            "_obligations",
            {
                kind: tuple(p for p in self.protections if kind not in p.readable_by)
                for kind in (*RecipientKind, None)
            },
        )
        set_(self, "_index", {v: i for i, v in enumerate(reversed(self.versions()))})
        self._jurisdiction_keys: dict[str, tuple[str, ...]]
        set_(self, "_jurisdiction_keys", {})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Policy is immutable: use revise() to make a new version")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Policy is immutable")

    # -- construction ----------------------------------------------------------------
    def _validate(self) -> None:
        seen: set[tuple[SubjectKind, str]] = set()
        for rule in self.rules:
            if rule.purpose != ANY_PURPOSE:
                self.taxonomy.purpose(rule.purpose)
            for category in rule.categories:
                self.taxonomy.category(category)
            for key in (*rule.consent_scope, *rule.bind_scope):
                if not key or not key.isidentifier():
                    raise PolicyError(f"rule for {rule.purpose!r}: bad scope key {key!r}")
            for kind in rule.subject_kinds:
                if (kind, rule.purpose) in seen:
                    raise PolicyError(
                        f"two rules for purpose {rule.purpose!r} and subject kind {kind.value!r}"
                    )
                seen.add((kind, rule.purpose))
        for protection in self.protections:
            self.taxonomy.category(protection.category)

    def _compile(self) -> dict[tuple[SubjectKind, str], CompiledRule]:
        by_key = {(k, r.purpose): r for r in self.rules for k in r.subject_kinds}
        table: dict[tuple[SubjectKind, str], CompiledRule] = {}
        for kind in SubjectKind:
            for purpose in self.taxonomy.purposes:
                rule = next(
                    (
                        by_key[(kind, p)]
                        for p in (*self.taxonomy.ancestors(purpose), ANY_PURPOSE)
                        if (kind, p) in by_key
                    ),
                    None,
                )
                if rule is None:
                    continue
                table[(kind, purpose)] = CompiledRule(
                    rule=rule,
                    purpose=purpose,
                    allowed_categories=frozenset(rule.categories),
                    recipients=frozenset(rule.recipients),
                    needs_ledger=(
                        rule.basis is Basis.CONSENT
                        or rule.objectable
                        or Basis.CONSENT in rule.jurisdictions.values()
                    ),
                )
        return table

    def revise(
        self,
        *,
        version: str,
        rules: Iterable[Rule] | None = None,
        replace: Iterable[Rule] = (),
        protections: Iterable[Protection] | None = None,
    ) -> Policy:
        """The next version of this policy. ``replace`` swaps rules by (purpose, kinds).

        A replaced rule keeps applying to the subject kinds the replacement does not name.
        """
        replacing = list(replace)
        keys = {(r.purpose, k) for r in replacing for k in r.subject_kinds}
        kept: list[Rule] = []
        for r in self.rules if rules is None else rules:
            kinds = tuple(k for k in r.subject_kinds if (r.purpose, k) not in keys)
            if kinds == r.subject_kinds:
                kept.append(r)
            elif kinds:
                kept.append(dataclasses.replace(r, subject_kinds=kinds))
        return Policy(
            [*kept, *replacing],
            version=version,
            taxonomy=self.taxonomy,
            protections=self.protections if protections is None else protections,
            previous=self,
            name=self.name,
        )

    # -- queries ---------------------------------------------------------------------
    def versions(self) -> tuple[str, ...]:
        """Every version in the chain, newest first."""
        out: list[str] = []
        policy: Policy | None = self
        while policy is not None:
            out.append(policy.version)
            policy = policy.previous
        return tuple(out)

    def at(self, version: str) -> Policy:
        """The policy as it was at ``version``."""
        policy: Policy | None = self
        while policy is not None:
            if policy.version == version:
                return policy
            policy = policy.previous
        raise PolicyError(f"unknown policy version {version!r}")

    def version_rank(self, version: str | None) -> int:
        """Position of a version in the chain, oldest = 0; unknown versions rank -1."""
        if version is None:
            return -1
        return self._index.get(version, -1)

    def rule_for(self, kind: SubjectKind, purpose: str) -> CompiledRule | None:
        """The compiled rule that governs ``purpose`` for ``kind``, or None (denied)."""
        return self._compiled.get((kind, purpose))

    def obligations_for(self, recipient: RecipientKind | None) -> tuple[Protection, ...]:
        """The protections that apply when data goes to ``recipient`` (None: any client)."""
        return self._obligations[recipient]

    def jurisdiction_keys(self, jurisdiction: str) -> tuple[str, ...]:
        keys = self._jurisdiction_keys.get(jurisdiction)
        if keys is None:
            keys = self.taxonomy.jurisdiction_keys(jurisdiction) if jurisdiction else ()
            self._jurisdiction_keys[jurisdiction] = keys
        return keys

    def permitted_categories(
        self, kind: SubjectKind, purpose: str, categories: Iterable[str]
    ) -> tuple[str, ...]:
        """The subset of ``categories`` the purpose may touch for this kind of subject."""
        compiled = self.rule_for(kind, self.taxonomy.purpose(purpose))
        if compiled is None or compiled.rule.basis is Basis.FORBIDDEN:
            return ()
        return tuple(c for c in categories if self.category_allowed(compiled, c))

    def category_allowed(self, compiled: CompiledRule, category: str) -> bool:
        allowed = compiled.allowed_categories
        return any(a in allowed for a in self.taxonomy.ancestors(category))

    def __repr__(self) -> str:
        label = f"{self.name} " if self.name else ""
        return f"<Policy {label}version={self.version!r} rules={len(self.rules)}>"

    @classmethod
    def default(cls) -> Policy:
        """The shipped policy, encoding the clauses of the SalesExpert privacy policy."""
        from ._default_policy import default_policy

        return default_policy()
