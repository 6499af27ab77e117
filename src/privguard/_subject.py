"""Subjects: the people data is about, and the scopes and provenance of their data."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from ._errors import PolicyError
from ._taxonomy import SubjectKind

__all__ = ["PLATFORM", "Provenance", "Scope", "Source", "Subject"]

#: The controller of visitor data: the platform itself, never a customer tenant (C01).
PLATFORM: Final = "platform"


# ISO 3166-1 alpha-2, optionally with an ISO 3166-2 subdivision: "DE", "US-CA".
_JURISDICTION: Final = re.compile(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?")


def _check_jurisdiction(value: str) -> str:
    code = value.upper() if isinstance(value, str) else value
    if code != "" and not (isinstance(code, str) and _JURISDICTION.fullmatch(code)):
        # A malformed code ("Germany", "de_DE") would match no group and get the most
        # permissive basis: refuse it rather than guess. "" means unknown (strictest).
        raise PolicyError(
            "jurisdiction must be an ISO 3166 code such as 'DE' or 'US-CA', or '' if unknown"
        )
    return code


def _check_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or "\x00" in value:
        raise PolicyError(f"{what} must be a non-empty string of at most 256 characters")
    return value


@dataclass(frozen=True, slots=True)
class Subject:
    """A person, by the host's own (pseudonymous) id, never by name or e-mail.

    Every subject has a kind, a controller (the customer tenant that owns a business
    contact's data, C05; :data:`PLATFORM` for visitors, C01) and a jurisdiction
    (ISO 3166 code such as ``"DE"`` or ``"US-CA"``; empty when unknown).
    """

    id: str
    kind: SubjectKind
    controller: str
    jurisdiction: str = ""
    key: tuple[str, str, str] = field(init=False, repr=False, compare=False)
    """The store key: (controller, kind, id). Tenants never share a key space."""

    def __post_init__(self) -> None:
        _check_id("subject id", self.id)
        _check_id("controller", self.controller)
        try:
            kind = SubjectKind(self.kind)
        except ValueError:
            raise PolicyError(f"unknown subject kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "jurisdiction", _check_jurisdiction(self.jurisdiction))
        if kind is SubjectKind.VISITOR and self.controller != PLATFORM:
            raise PolicyError("visitor data is controlled by the platform, not a tenant (C01)")
        if kind is not SubjectKind.VISITOR and self.controller == PLATFORM:
            raise PolicyError(f"a {kind.value} subject needs a customer tenant as controller")
        object.__setattr__(self, "key", (self.controller, kind.value, self.id))

    @classmethod
    def customer(cls, id: str, *, tenant: str, jurisdiction: str = "") -> Subject:
        return cls(id, SubjectKind.CUSTOMER, tenant, jurisdiction)

    @classmethod
    def business_contact(cls, id: str, *, tenant: str, jurisdiction: str = "") -> Subject:
        return cls(id, SubjectKind.BUSINESS_CONTACT, tenant, jurisdiction)

    @classmethod
    def visitor(cls, id: str, *, jurisdiction: str = "") -> Subject:
        return cls(id, SubjectKind.VISITOR, PLATFORM, jurisdiction)


class Scope(Mapping[str, str]):
    """An immutable scope such as ``Scope(event="E1", exhibitor="acme")``.

    A consent given for a scope covers checks whose scope contains it: consent for
    ``{event: E1}`` covers ``{event: E1, exhibitor: acme}``, not ``{event: E2}``.
    """

    __slots__ = ("_dict", "_hash", "_items", "key")

    def __init__(self, items: Mapping[str, str] | None = None, /, **kwargs: str) -> None:
        merged = {**(items or {}), **kwargs}
        for k, v in merged.items():
            if not k or not isinstance(v, str) or not v or any(c in k + v for c in ";=\x00"):
                raise PolicyError(f"invalid scope entry for {k!r}: keys and values are ids")
        self._items: tuple[tuple[str, str], ...] = tuple(sorted(merged.items()))
        self._dict: dict[str, str] = dict(self._items)
        self.key: str = ";".join(f"{k}={v}" for k, v in self._items)
        self._hash = hash(self._items)

    @classmethod
    def parse(cls, key: str) -> Scope:
        if not key:
            return EMPTY_SCOPE
        return cls(dict(part.split("=", 1) for part in key.split(";")))

    def __getitem__(self, k: str) -> str:
        return self._dict[k]

    def __contains__(self, k: object) -> bool:
        return k in self._dict

    def get(self, k: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._dict.get(k, default)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Scope):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Scope({', '.join(f'{k}={v!r}' for k, v in self._items)})"

    def within(self, other: Mapping[str, str]) -> bool:
        """True when every entry of this scope is in ``other`` (this scope is broader)."""
        get = other._dict.get if isinstance(other, Scope) else other.get
        for k, v in self._items:  # noqa: SIM110 - a loop: on every consent match, all() is slower
            if get(k) != v:
                return False
        return True


EMPTY_SCOPE: Final = Scope()


class Source(StrEnum):
    """Where data came from (C17)."""

    FORM = "form"
    API = "api"
    IMPORT = "import"
    REFERRAL = "referral"
    PARTNER = "partner"
    PUBLIC_DATABASE = "public_database"
    SOCIAL_PLATFORM = "social_platform"
    OBSERVED = "observed"


@dataclass(frozen=True, slots=True)
class Provenance:
    """What data was collected for, from where, under which policy version (C16, C17, C34).

    ``bound=True`` means the data may be used only for ``purpose`` (and its sub-purposes),
    as the policy promises for referral contacts (C16).
    """

    purpose: str
    source: Source
    scope: Scope = field(default=EMPTY_SCOPE)
    policy_version: str | None = None
    bound: bool = False
    collected_at: datetime | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "source", Source(self.source))
        except ValueError:
            raise PolicyError(f"unknown provenance source {self.source!r}") from None
        if not isinstance(self.scope, Scope):
            object.__setattr__(self, "scope", Scope(self.scope))
