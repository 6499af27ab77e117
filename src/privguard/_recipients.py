"""Recipients: who data may be disclosed to, where they are reached, what they may get.

A :class:`Recipient` names one organisation (a payment processor, an e-mail sender, an
exhibitor at one event, an authority, ...), its kind, the hosts and URL prefixes it is
reached at, the purposes and categories it may receive, and the agreement (DPA) it
receives them under. A :class:`RecipientRegistry` holds the recipients of a deployment,
validated against the taxonomy when built; exhibitors change with every event and are
registered at run time (``register_exhibitor``), safely from any thread.

The outbound guard maps a request's URL to a recipient here; disclosures refuse a
recipient that is not registered (C13).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from ._default_policy import EXHIBITOR_CATEGORIES
from ._errors import PolicyError
from ._subject import EMPTY_SCOPE, Scope
from ._taxonomy import Purposes as P
from ._taxonomy import RecipientKind, Taxonomy, covers

__all__ = ["HostPattern", "Recipient", "RecipientRegistry"]

_LABEL: Final = r"[a-z0-9](?:[a-z0-9\-_]{0,61}[a-z0-9])?"
_HOST: Final = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_IPV6: Final = re.compile(r"\[[0-9a-f:.]+\]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HostPattern:
    """Where a recipient is reached: a host, optionally a scheme, a port and a path prefix.

    Written as ``api.stripe.com``, ``*.exhibitors.example`` (any sub-domain, not the bare
    domain), ``crm.example.com/v2/leads`` (that path and below it, on segment boundaries:
    not ``/v2/leadsx``), ``localhost:8001`` or ``https://api.example.com/v1``.
    """

    host: str
    scheme: str | None = None
    port: int | None = None
    path: str = ""

    @classmethod
    def parse(cls, pattern: str) -> HostPattern:
        if not isinstance(pattern, str) or not pattern.strip():
            raise PolicyError("a host pattern must be a non-empty string")
        text = pattern.strip()
        scheme: str | None = None
        if "://" in text:
            scheme, _, text = text.partition("://")
            scheme = scheme.lower()
            if scheme not in _DEFAULT_PORTS:
                raise PolicyError(f"host pattern {pattern!r}: scheme must be http or https")
        hostport, slash, path = text.partition("/")
        path = (slash + path).rstrip("/") if slash else ""
        if any(c in path for c in "?#*") or "//" in path:
            raise PolicyError(f"host pattern {pattern!r}: a path prefix is a plain path")
        host, port = hostport.lower(), None
        if not _IPV6.fullmatch(host) and ":" in host:
            host, _, port_text = host.rpartition(":")
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise PolicyError(f"host pattern {pattern!r}: invalid port")
            port = int(port_text)
        if not (_HOST.fullmatch(host) or _IPV6.fullmatch(host)):
            raise PolicyError(
                f"host pattern {pattern!r}: a host name, '*.' and a domain, or an IP address"
            )
        if host.startswith("*.") and host.count(".") < 2:
            raise PolicyError(f"host pattern {pattern!r}: a wildcard needs a domain below it")
        return cls(host, scheme, port, path)

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def matches(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.wildcard:
            if not host.endswith(self.host[1:]) or host == self.host[2:]:
                return False
        elif host != self.host:
            return False
        if self.port is not None and (port or _DEFAULT_PORTS.get(scheme)) != self.port:
            return False
        if self.path:
            return path == self.path or path.startswith(self.path + "/")
        return True

    def specificity(self) -> tuple[int, int, int, int]:
        """Higher wins: an exact host, then the longer host, path, then scheme and port."""
        return (
            0 if self.wildcard else 1,
            self.host.count("."),
            len(self.path),
            (self.scheme is not None) + (self.port is not None),
        )

    def __str__(self) -> str:
        scheme = f"{self.scheme}://" if self.scheme else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{scheme}{self.host}{port}{self.path}"


def _names(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone data is disclosed to.

    >>> stripe = Recipient(
    ...     "stripe", RecipientKind.PAYMENT_PROCESSOR, hosts=["api.stripe.com"],
    ...     purposes=[Purposes.PAYMENT], categories=[Categories.NAME, Categories.FINANCIAL],
    ...     agreement="DPA-2023-014",
    ... )

    ``purposes`` and ``categories`` are required: a recipient receives nothing it was not
    declared for (a parent covers its children). ``scope`` ties a recipient to a context:
    an exhibitor registered for one event has ``Scope(event=..., exhibitor=name)``, and
    checks of disclosures to it use that scope (consent per exhibitor, C12).
    """

    name: str
    kind: RecipientKind
    hosts: Sequence[str] = ()  # each stored as a tuple
    purposes: Sequence[str] = ()
    categories: Sequence[str] = ()
    agreement: str | None = None
    scope: Scope = EMPTY_SCOPE
    patterns: tuple[HostPattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name or len(self.name) > 200:
            raise PolicyError("a recipient needs a name of 1 to 200 characters")
        if any(not c.isprintable() for c in self.name):
            raise PolicyError("a recipient name must be printable")
        set_(self, "kind", Taxonomy.recipient_kind(self.kind))
        set_(self, "hosts", _names(self.hosts))
        set_(self, "purposes", _names(self.purposes))
        set_(self, "categories", _names(self.categories))
        if not isinstance(self.scope, Scope):
            set_(self, "scope", Scope(self.scope))
        if not self.purposes:
            raise PolicyError(f"recipient {self.name!r} declares no purpose")
        if not self.categories:
            raise PolicyError(f"recipient {self.name!r} declares no data category")
        set_(self, "patterns", tuple(HostPattern.parse(h) for h in self.hosts))

    @property
    def event(self) -> str | None:
        """The event an exhibitor is registered for, or ``None``."""
        return self.scope.get("event")

    def may_receive(self, purpose: str) -> bool:
        """True when ``purpose`` is (below) one this recipient is declared for."""
        return any(covers(p, purpose) for p in self.purposes)

    def receives_category(self, category: str) -> bool:
        return any(covers(c, category) for c in self.categories)


_Entry = tuple[HostPattern, Recipient]


class RecipientRegistry:
    """The recipients of a deployment: immutable ones given when built, plus exhibitors.

    Building validates every recipient against the taxonomy (unknown purpose, category or
    recipient kind: :class:`PolicyError`) and refuses two recipients with the same name or
    the same host pattern. :meth:`register_exhibitor` adds an exhibitor for one event at
    run time; it is thread-safe, and lookups never wait for it (copy on write).
    """

    def __init__(
        self, recipients: Iterable[Recipient] = (), *, taxonomy: Taxonomy | None = None
    ) -> None:
        self.taxonomy = taxonomy or Taxonomy.default()
        static: dict[str, Recipient] = {}
        for recipient in recipients:
            if not isinstance(recipient, Recipient):
                raise PolicyError("a RecipientRegistry holds Recipient objects")
            self._validate(recipient)
            if recipient.name in static:
                raise PolicyError(f"two recipients named {recipient.name!r}")
            static[recipient.name] = recipient
        self._static: Mapping[str, Recipient] = MappingProxyType(static)
        self._lock = threading.Lock()
        self._exhibitors: Mapping[tuple[str, str], Recipient] = MappingProxyType({})
        self._index = self._build_index()

    # -- validation --------------------------------------------------------------------
    def _validate(self, recipient: Recipient) -> None:
        for purpose in recipient.purposes:
            self.taxonomy.purpose(purpose)
        for category in recipient.categories:
            self.taxonomy.category(category)

    def _build_index(self) -> tuple[Mapping[str, tuple[_Entry, ...]], tuple[_Entry, ...]]:
        """Exact hosts in a dict; wildcard patterns in a list. Refuses duplicate patterns."""
        exact: dict[str, list[_Entry]] = {}
        wild: list[_Entry] = []
        seen: dict[tuple[HostPattern, str | None], Recipient] = {}
        for recipient in (*self._static.values(), *self._exhibitors.values()):
            for pattern in recipient.patterns:
                key = (pattern, recipient.event)
                other = seen.get(key)
                if other is not None and other is not recipient:
                    raise PolicyError(
                        f"recipients {other.name!r} and {recipient.name!r} share the host"
                        f" pattern {str(pattern)!r}"
                    )
                seen[key] = recipient
                if pattern.wildcard:
                    wild.append((pattern, recipient))
                else:
                    exact.setdefault(pattern.host, []).append((pattern, recipient))
        return MappingProxyType({h: tuple(e) for h, e in exact.items()}), tuple(wild)

    # -- exhibitors (change every event) -------------------------------------------------
    def register_exhibitor(
        self,
        *,
        event: str,
        name: str,
        hosts: Iterable[str] | str = (),
        categories: Iterable[str] = EXHIBITOR_CATEGORIES,  # what the default policy allows
        agreement: str | None = None,
    ) -> Recipient:
        """Register (or replace) the exhibitor ``name`` at ``event``; returns its recipient.

        Its purpose is exhibitor disclosure (C12) and its scope ``Scope(event=event,
        exhibitor=name)``, so a disclosure to it needs the contact's consent for that
        exhibitor at that event.
        """
        recipient = Recipient(
            name,
            RecipientKind.EXHIBITOR,
            hosts=_names(hosts),
            purposes=(P.EXHIBITOR_DISCLOSURE,),
            categories=tuple(categories),
            agreement=agreement,
            scope=Scope(event=event, exhibitor=name),
        )
        self._validate(recipient)
        if name in self._static:
            raise PolicyError(f"recipient {name!r} is already registered")
        with self._lock:
            previous = self._exhibitors
            self._exhibitors = MappingProxyType({**previous, (event, name): recipient})
            try:
                self._index = self._build_index()
            except PolicyError:
                self._exhibitors = previous
                raise
        return recipient

    def unregister_exhibitor(self, *, event: str, name: str) -> None:
        """Forget an exhibitor's registration at ``event`` (no error if there is none)."""
        with self._lock:
            remaining = {k: v for k, v in self._exhibitors.items() if k != (event, name)}
            self._exhibitors = MappingProxyType(remaining)
            self._index = self._build_index()

    def exhibitor(self, event: str, name: str) -> Recipient:
        """The exhibitor ``name`` registered at ``event``; :class:`PolicyError` if none."""
        found = self._exhibitors.get((event, name))
        if found is None:
            raise PolicyError(f"no exhibitor {name!r} is registered for that event")
        return found

    def exhibitors(self, event: str | None = None) -> tuple[Recipient, ...]:
        return tuple(r for (e, _), r in self._exhibitors.items() if event is None or e == event)

    # -- lookups -------------------------------------------------------------------------
    def get(self, name: str) -> Recipient:
        """The recipient registered under ``name`` when built; :class:`PolicyError` if none."""
        found = self._static.get(name)
        if found is None:
            raise PolicyError(f"no recipient named {name!r} is registered")
        return found

    def is_registered(self, recipient: Recipient) -> bool:
        """True when this very recipient (not just its name) is registered here now."""
        if recipient.event is not None and recipient.kind is RecipientKind.EXHIBITOR:
            return self._exhibitors.get((recipient.event, recipient.name)) == recipient
        return self._static.get(recipient.name) == recipient

    def match(
        self,
        scheme: str,
        host: str,
        port: int | None = None,
        path: str = "/",
        *,
        event: str | None = None,
    ) -> tuple[Recipient, ...]:
        """The recipients whose most specific pattern matches this address.

        One recipient is the answer; none means an unregistered host; several (exhibitors
        of different events at one host, when ``event`` does not tell them apart) is
        ambiguous, and the outbound guard refuses to guess.
        """
        scheme, host = scheme.lower(), host.lower().rstrip(".")
        exact, wild = self._index
        best: tuple[int, int, int, int] | None = None
        found: list[Recipient] = []
        for pattern, recipient in (*exact.get(host, ()), *wild):
            if not pattern.matches(scheme, host, port, path):
                continue
            if event is not None and recipient.event not in (None, event):
                continue
            rank = pattern.specificity()
            if best is None or rank > best:
                best, found = rank, [recipient]
            elif rank == best and recipient not in found:
                found.append(recipient)
        return tuple(found)

    def match_url(self, url: str, *, event: str | None = None) -> tuple[Recipient, ...]:
        parts = urlsplit(url)
        return self.match(
            parts.scheme, parts.hostname or "", parts.port, parts.path or "/", event=event
        )

    def __iter__(self) -> Iterator[Recipient]:
        yield from self._static.values()
        yield from self._exhibitors.values()

    def __len__(self) -> int:
        return len(self._static) + len(self._exhibitors)

    def __repr__(self) -> str:
        return (
            f"<RecipientRegistry recipients={len(self._static)} exhibitors={len(self._exhibitors)}>"
        )
