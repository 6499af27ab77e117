"""Disclosures: every time data leaves for a recipient, it is checked and written down.

For each record of a disclosure call, in order:

1. **Reduce** the record to what this recipient may get for this purpose: the categories
   the policy permits for the subject's kind and purpose *and* the recipient declares.
   Keys map to categories by the fields the call declares, by annotations on the host's
   types, then by the redactor's key names; a key with no category whose value the
   detectors find personal data in (an e-mail in ``notes``) is dropped: fail closed.
2. **Protect** what is left for the recipient's kind: the policy's protections, so a card
   number is masked unless the recipient is a payment processor (C03, C10), also inside
   free text of a permitted field.
3. **Check** the subject with the categories that remain, the recipient's kind and the
   scope (an exhibitor's ``Scope(event=..., exhibitor=...)``: consent per exhibitor,
   C12). A subject the decision denies is dropped, with its reason counted.
4. **Record** one :class:`DisclosureRecord` per disclosed subject, all in one atomic
   store write, inside one telemetry span.

Nothing is written when anything fails; the records to send are returned only once they
are written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from ._consent import _same_tenant
from ._errors import DisclosureBlocked, PolicyError
from ._policy import Basis, Operator, Policy
from ._recipients import Recipient, RecipientRegistry
from ._records import DisclosureRecord
from ._redaction import _NOTHING_TO_FIND
from ._subject import Provenance, Scope, Subject
from ._taxonomy import Categories as C
from ._taxonomy import RecipientKind, SubjectKind
from ._telemetry import DisclosureTelemetry, Telemetry

if TYPE_CHECKING:
    from ._crypto import Keyring
    from ._decisions import Decider, Decision
    from ._detection import TextScanner
    from ._redaction import Redactor
    from ._stores import Store

__all__ = [
    "BlockReason",
    "DisclosureBatch",
    "DisclosureResult",
    "Disclosures",
]


class BlockReason(StrEnum):
    """Why a disclosure was refused as a whole (besides a decision's own reason)."""

    UNREGISTERED_RECIPIENT = "unregistered_recipient"
    AMBIGUOUS_RECIPIENT = "ambiguous_recipient"
    PURPOSE_NOT_REGISTERED = "purpose_not_registered"
    PURPOSE_REQUIRED = "purpose_required"
    SUBJECT_REQUIRED = "subject_required"
    UNPARSEABLE_BODY = "unparseable_body"
    CROSS_TENANT = "cross_tenant"
    REFERENCE_REQUIRED = "reference_required"


#: Channels a disclosure record names.
CHANNEL_EXPORT: Final = "export"
CHANNEL_HTTP: Final = "http"

_DROP: Final = object()
# What a card number or an IBAN needs at the least, per the detectors: thirteen digits
# joined by single spaces or hyphens; two letters, two digits and eleven more characters
# (the shortest IBAN has fifteen). Most text has neither - phone numbers and e-mail
# addresses with digits included - and one C-level search rules it out before the
# scanner runs.
_MAY_HOLD_CARD_OR_IBAN: Final = re.compile(
    r"\d(?:[ \-]?\d){12,}|[A-Za-z]{2}\d\d(?: ?[A-Za-z0-9]){11,}"
).search
_BASIS: Final = {basis: basis.value for basis in Basis}
_DETECTED: Final = (C.CARD, C.EMAIL, C.PHONE, C.IBAN)  # what the free-text detectors find
_MANY_DIGITS: Final = 10**6  # an int of seven digits or more may be a phone or card number


def _empty(value: Any) -> bool:
    """No data to speak of: a category with nothing in it is neither sent nor withheld."""
    return value is None or (type(value) in (str, list, dict) and not value)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DisclosureResult:
    """What a disclosure call did. Counts and reason codes only in its repr.

    ``records`` are the reduced, protected records to send, in input order of the
    subjects that were disclosed; ``subjects`` and ``disclosure_ids`` are aligned with
    them. ``dropped`` counts subjects left out, by reason (``consent_missing``,
    ``cross_tenant``, ...); ``withheld`` counts, per category, the disclosed records it was
    removed from (not permitted for this recipient and purpose); ``undeclared`` counts
    values removed because the detectors found personal data under a key with no category.
    """

    recipient: Recipient
    purpose: str
    batch_id: str
    records: tuple[Any, ...] = field(repr=False)
    subjects: tuple[Subject, ...] = field(repr=False)
    disclosure_ids: tuple[str, ...] = field(repr=False)
    categories: tuple[str, ...] = ()
    dropped: Mapping[str, int] = field(default_factory=dict)
    withheld: Mapping[str, int] = field(default_factory=dict)
    undeclared: int = 0

    @property
    def disclosed(self) -> int:
        """How many subjects' data was disclosed (and recorded)."""
        return len(self.records)

    @property
    def dropped_count(self) -> int:
        return sum(self.dropped.values())

    def pairs(self) -> tuple[tuple[Subject, Any], ...]:
        """``(subject, reduced record)`` for every disclosed subject."""
        return tuple(zip(self.subjects, self.records, strict=True))


class _Found:
    """What reducing one record found: categories kept and withheld, undeclared values."""

    __slots__ = ("kept", "undeclared", "withheld")

    def __init__(self) -> None:
        self.kept: set[str] = set()
        self.withheld: set[str] = set()
        self.undeclared = 0


class _Plan:
    """One disclosure call's fixed part: recipient, purpose, scope, what may go."""

    def __init__(
        self,
        owner: Disclosures,
        recipient: Recipient,
        purpose: str,
        scope: Scope,
        controller: str | None,
        reference: str | None,
        fields: Mapping[str, str],
        channel: str,
    ) -> None:
        self.owner = owner
        self.recipient = recipient
        self.kind: RecipientKind = recipient.kind
        self.kind_value: str = recipient.kind.value
        self.purpose = purpose
        self.scope = scope
        self.controller = controller
        self.reference = reference
        self.channel = channel
        self.fields = fields
        self._policy = owner.policy
        self._key_category = owner.key_names.category_of_key
        self._protect_op = owner.protector.operator_for
        self._protect_apply = owner.protector.apply
        self._scanner = owner.scanner
        self._allowed: dict[tuple[SubjectKind, str], bool] = {}
        self._ops: dict[str, Operator] = {}
        self._plans: dict[tuple[SubjectKind, tuple[Any, ...]], tuple[tuple[str | None, bool], ...]]
        self._plans = {}
        # Detected kinds this recipient may not read as they are (cards, IBANs for all but
        # a payment processor): looked for even inside the text of a permitted field.
        self._protected_text = frozenset(
            c for c in _DETECTED if self._protect_op(c, self.kind) is not Operator.KEEP
        )

    # -- categories ----------------------------------------------------------------------
    def allowed(self, kind: SubjectKind, category: str) -> bool:
        key = (kind, category)
        ok = self._allowed.get(key)
        if ok is None:
            policy = self._policy
            compiled = policy.rule_for(kind, self.purpose)
            ok = (
                compiled is not None
                and compiled.rule.basis is not Basis.FORBIDDEN
                and policy.category_allowed(compiled, category)
                and self.recipient.receives_category(category)
            )
            self._allowed[key] = ok
        return ok

    def _op(self, category: str) -> Operator:
        op = self._ops.get(category)
        if op is None:
            op = self._ops[category] = self._protect_op(category, self.kind)
        return op

    # -- reducing one record ---------------------------------------------------------------
    def reduce(self, kind: SubjectKind, record: Any) -> tuple[Any, _Found]:
        found = _Found()
        if type(record) is dict:
            return self._record(record, kind, found), found
        out = self._value(record, None, kind, "", found)
        if out is _DROP:
            out = None
        return out, found

    def _plan_keys(
        self, kind: SubjectKind, keys: tuple[Any, ...]
    ) -> tuple[tuple[str | None, bool], ...]:
        """Per top-level key: its category, and whether this recipient may get it."""
        plan: list[tuple[str | None, bool]] = []
        for k in keys:
            c = None
            if type(k) is str:
                c = self.fields.get(k) or self._key_category(k)
            plan.append((c, c is not None and self.allowed(kind, c)))
        planned = tuple(plan)
        if len(self._plans) < 4096:
            self._plans[(kind, keys)] = planned
        return planned

    def _record(self, record: dict[Any, Any], kind: SubjectKind, f: _Found) -> dict[Any, Any]:
        """The common case, a flat-ish dict: its keys are planned once per key set."""
        keys = tuple(record)
        plan = self._plans.get((kind, keys))
        if plan is None:
            plan = self._plan_keys(kind, keys)
        out: dict[Any, Any] = {}
        contains = self._scanner.contains
        for (k, v), (c, ok) in zip(record.items(), plan, strict=True):
            t = type(v)
            if c is None:
                if t is str:
                    if _NOTHING_TO_FIND(v) is not None and contains(v):
                        f.undeclared += 1
                        continue
                    out[k] = v
                    continue
                reduced = self._value(v, None, kind, k if type(k) is str else str(k), f)
            elif not ok:
                if not _empty(v):
                    f.withheld.add(c)
                continue
            else:
                if t is str:
                    reduced = self._protect(v, c)
                else:
                    reduced = self._value(v, c, kind, k if type(k) is str else str(k), f)
                if reduced is not _DROP and not _empty(reduced):
                    f.kept.add(c)
            if reduced is not _DROP:
                out[k] = reduced
        return out

    def _value(self, value: Any, cat: str | None, kind: SubjectKind, path: str, f: _Found) -> Any:
        t = type(value)
        if t is str:
            if cat is None:
                if _NOTHING_TO_FIND(value) is not None and self._scanner.contains(value):
                    f.undeclared += 1
                    return _DROP
                return value
            return self._protect(value, cat)
        if t is dict or isinstance(value, Mapping):
            return self._mapping(value.items(), None, cat, kind, path, f)
        if t is list or t is tuple or isinstance(value, list | tuple | set | frozenset):
            out = []
            for item in value:
                reduced = self._value(item, cat, kind, path, f)
                if reduced is not _DROP:
                    out.append(reduced)
            return out
        if value is None or t is bool:
            return value
        if t is int or t is float:
            if cat is None:
                if t is int and abs(value) >= _MANY_DIGITS and self._scanner.contains(str(value)):
                    f.undeclared += 1
                    return _DROP
                return value
            if self._op(cat) is Operator.KEEP:
                return value
            return self._protect(str(value), cat)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._fields_of(value, cat, kind, path, f)
        if hasattr(t, "model_fields") and hasattr(value, "model_copy"):
            return self._fields_of(value, cat, kind, path, f)
        if isinstance(value, bytes | bytearray | memoryview):
            # Opaque bytes cannot be inspected: they go only under a category the recipient
            # may read as it is.
            if cat is not None and self._op(cat) is Operator.KEEP:
                return value
            f.undeclared += cat is None
            return _DROP
        if isinstance(value, str):  # a str subclass
            return self._value(str(value), cat, kind, path, f)
        if cat is None or self._op(cat) is Operator.KEEP:
            return value  # dates, decimals, UUIDs, enums: kept as they are
        return self._protect(str(value), cat)

    def _fields_of(
        self, value: Any, cat: str | None, kind: SubjectKind, path: str, f: _Found
    ) -> dict[str, Any]:
        declared = self.owner.declared_fields(type(value))
        items = [(name, getattr(value, name)) for name, _ in declared]
        return self._mapping(items, dict(declared), cat, kind, path, f)

    def _mapping(
        self,
        items: Iterable[tuple[Any, Any]],
        declared: Mapping[str, str | None] | None,
        cat: str | None,
        kind: SubjectKind,
        path: str,
        f: _Found,
    ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        fields = self.fields
        key_category = self._key_category
        for k, v in items:
            name = k if type(k) is str else str(k)
            sub = f"{path}.{name}" if path else name
            c = fields.get(sub) if fields else None
            if c is None and declared is not None:
                c = declared.get(name)
            if c is None:
                named = key_category(name)
                if cat is None:
                    c = named
                elif named is not None and named.startswith(cat + "."):
                    c = named  # a more precise key below a categorised one refines it
                else:
                    c = cat
            if c is not None and c != cat and not self.allowed(kind, c):
                if not _empty(v):
                    f.withheld.add(c)
                continue
            reduced = self._value(v, c, kind, sub, f)
            if reduced is _DROP:
                continue
            if c is not None and not _empty(reduced):
                f.kept.add(c)
            out[k] = reduced
        return out

    def _protect(self, text: str, cat: str) -> str | None:
        op = self._op(cat)
        if op is not Operator.KEEP:
            return self._protect_apply(cat, text, audience=self.kind)
        if not self._protected_text or _MAY_HOLD_CARD_OR_IBAN(text) is None:
            return text
        findings = [x for x in self._scanner.scan(text) if x.category in self._protected_text]
        if not findings:
            return text
        parts: list[str] = []
        pos = 0
        for finding in findings:
            parts.append(text[pos : finding.start])
            masked = self._protect_apply(
                finding.category, text[finding.start : finding.end], audience=self.kind
            )
            parts.append(masked if masked is not None else f"[{finding.kind.upper()}]")
            pos = finding.end
        parts.append(text[pos:])
        return "".join(parts)

    # -- checking and recording --------------------------------------------------------------
    def check(
        self, subject: Subject, categories: tuple[str, ...], provenance: Provenance | None
    ) -> Decision:
        return self.owner.decider.check(
            subject,
            self.purpose,
            categories,
            recipient=self.kind,
            scope=self.scope,
            provenance=provenance,
            controller=self.controller,
        )

    async def acheck(
        self, subject: Subject, categories: tuple[str, ...], provenance: Provenance | None
    ) -> Decision:
        return await self.owner.decider.acheck(
            subject,
            self.purpose,
            categories,
            recipient=self.kind,
            scope=self.scope,
            provenance=provenance,
            controller=self.controller,
        )

    def record(
        self,
        disclosure_id: str,
        batch_id: str,
        subject: Subject,
        decision: Decision,
        categories: tuple[str, ...],
        at: datetime,
        ids: tuple[str | None, str | None],
    ) -> DisclosureRecord:
        controller, kind, sid = subject.key
        return DisclosureRecord(
            disclosure_id=disclosure_id,
            batch_id=batch_id,
            controller=controller,
            subject_kind=kind,
            subject_id=sid,
            recipient=self.recipient.name,
            recipient_kind=self.kind_value,
            purpose=self.purpose,
            categories=categories,
            basis=_BASIS.get(decision.basis, "") if decision.basis is not None else "",
            policy_version=decision.policy_version,
            at=at,
            channel=self.channel,
            scope=self.scope,
            consent_id=decision.consent_id,
            reference=self.reference,
            agreement=self.recipient.agreement,
            trace_id=ids[0],
            span_id=ids[1],
        )

    def record_one(
        self,
        subject: Subject,
        decision: Decision,
        categories: tuple[str, ...],
        ids: tuple[str | None, str | None],
    ) -> DisclosureRecord:
        """The record of a one-subject disclosure (a guarded HTTP request)."""
        batch_id = uuid.uuid4().hex
        return self.record(
            f"{batch_id}-0", batch_id, subject, decision, categories, self.owner.now(), ids
        )


class Disclosures:
    """Discloses records to registered recipients: checked, reduced, protected, recorded.

    Built by :class:`Privguard`; use ``guard.disclose(...)`` or ``guard.disclosures``.

    >>> result = guard.disclose(
    ...     [(contact, lead)], to=registry.exhibitor("E1", "acme"),
    ...     purpose=Purposes.EXHIBITOR_DISCLOSURE, controller="acme-events",
    ... )
    >>> result.records, result.dropped          # what to send; who was left out and why
    """

    def __init__(
        self,
        *,
        policy: Policy,
        decider: Decider,
        store: Store,
        registry: RecipientRegistry,
        key_names: Redactor,
        telemetry: Telemetry | None = None,
        keyring: Keyring | None = None,
        scanner: TextScanner | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        from ._redaction import Redactor

        self.policy = policy
        self.decider = decider
        self.store = store
        self.registry = registry
        self.key_names = key_names
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.clock = clock  # a seam for tests: when records say they were written
        # Recipients get their permitted categories as they are, apart from the policy's
        # protections (card numbers masked unless payment processor): every operator is
        # KEEP, which a protection tightens and configuration cannot loosen.
        self.protector = Redactor(
            policy, operators={C.USER: Operator.KEEP}, detect_text=False, keyring=keyring
        )
        if scanner is None:
            scanner = key_names.scanner
        if scanner is None:
            # The host turned free-text detection off for redaction; disclosures still
            # look for personal data under unknown keys (fail closed).
            from ._detection import DEFAULT_SCANNER

            scanner = DEFAULT_SCANNER
        self.scanner: TextScanner = scanner
        self._declared: dict[type, tuple[tuple[str, str | None], ...]] = {}

    # -- the public calls ------------------------------------------------------------------
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
        """Disclose ``records`` to ``to`` for ``purpose``; returns what to send.

        ``records`` are ``(subject, record)`` pairs, or records with ``subject_of``
        giving each one's subject. ``controller`` names the tenant whose export this is:
        other tenants' subjects are dropped (``cross_tenant``); without it, subjects of
        more than one tenant refuse the whole call (:class:`DisclosureBlocked`). ``fields``
        declares categories of keys by path (``"contact.email"``); ``provenance_of`` gives
        a record's provenance for its check (C16, C34); ``reference`` is the request a
        legal disclosure answers (required for an authority, C15). It must hold no
        personal data. A store failure raises :class:`StoreUnavailable` and nothing is
        written.
        """
        pairs = _pairs(records, subject_of)
        recipient = self._recipient(to)
        with self.telemetry.disclosure(
            channel=CHANNEL_EXPORT,
            recipient=recipient.name,
            recipient_kind=recipient.kind.value,
            purpose=purpose,
        ) as tel:
            plan = self._plan_or_block(
                tel, recipient, purpose, scope, controller, reference, fields, CHANNEL_EXPORT
            )
            if controller is None:
                self._one_controller(tel, plan, pairs)
            accepted: list[tuple[Subject, Any, Decision, tuple[str, ...]]] = []
            dropped: Counter[str] = Counter()
            withheld: Counter[str] = Counter()
            undeclared = 0
            for subject, data in pairs:
                reduced, found = plan.reduce(subject.kind, data)
                categories = tuple(sorted(found.kept))
                provenance = provenance_of(data) if provenance_of is not None else None
                decision = plan.check(subject, categories, provenance)
                if not decision.allowed:
                    dropped[decision.reason.value] += 1
                    continue
                accepted.append((subject, reduced, decision, categories))
                withheld.update(found.withheld)
                undeclared += found.undeclared
            result, written = self._records(tel, plan, accepted, dropped, withheld, undeclared)
            if written:
                self.store.append_disclosures(written)
            self._report(tel, plan, result, written)
            return result

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
        """:meth:`disclose` for the event loop: all of it runs in a worker thread.

        One thread hop for the whole call, not one per subject: a 100 000-subject export
        never blocks the loop and does not pay for 100 000 hops. The current context (the
        OpenTelemetry span, the privacy context) goes with it.
        """
        items = list(records)
        return await asyncio.to_thread(
            self.disclose,
            items,
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
        """A batch to fill in a ``with`` (or ``async with``) block; committed on exit.

        >>> with guard.disclosing(to=acme, purpose=Purposes.EXHIBITOR_DISCLOSURE) as batch:
        ...     for contact, lead in leads:
        ...         batch.add(contact, lead)
        >>> send(batch.result.records)

        Nothing is checked or written if the block raises.
        """
        return DisclosureBatch(
            self,
            {
                "to": to,
                "purpose": purpose,
                "scope": scope,
                "controller": controller,
                "fields": fields,
                "reference": reference,
            },
        )

    # -- the disclosure log ------------------------------------------------------------------
    def for_subject(
        self, subject: Subject, *, controller: str | None = None
    ) -> tuple[DisclosureRecord, ...]:
        """Who got this person's data, oldest first (for access requests, C24).

        ``controller`` is the tenant asking: another tenant's subject is refused with
        :class:`PurposeDenied` (reason ``cross_tenant``, C05).
        """
        _same_tenant(subject, controller)
        return self.store.disclosures_for_subject(subject.key)

    async def afor_subject(
        self, subject: Subject, *, controller: str | None = None
    ) -> tuple[DisclosureRecord, ...]:
        _same_tenant(subject, controller)
        return await self.store.adisclosures_for_subject(subject.key)

    def for_recipient(
        self,
        recipient: Recipient | str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        """What went to a recipient (by name) in ``[since, until)``, oldest first."""
        name = recipient.name if isinstance(recipient, Recipient) else recipient
        return self.store.disclosures_for_recipient(name, since=since, until=until)

    async def afor_recipient(
        self,
        recipient: Recipient | str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[DisclosureRecord, ...]:
        name = recipient.name if isinstance(recipient, Recipient) else recipient
        return await self.store.adisclosures_for_recipient(name, since=since, until=until)

    # -- parts shared with the outbound guard ------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def declared_fields(self, cls: type) -> tuple[tuple[str, str | None], ...]:
        """(field name, declared category or None) for a dataclass or Pydantic model."""
        plan = self._declared.get(cls)
        if plan is None:
            # The redactor reads Personal(...) annotations and field metadata; one reading
            # of the host's types for both redaction and disclosure.
            plan = self._declared[cls] = self.key_names._plan(cls)
        return plan

    def _recipient(self, to: Recipient | str) -> Recipient:
        if isinstance(to, str):
            return self.registry.get(to)
        if not isinstance(to, Recipient):
            raise PolicyError("to= takes a Recipient or the name of a registered one")
        return to

    def plan(
        self,
        recipient: Recipient,
        purpose: str,
        scope: Scope | Mapping[str, str] | None,
        controller: str | None,
        reference: str | None,
        fields: Mapping[str, str] | None,
        channel: str,
    ) -> _Plan:
        """Validate a call's fixed part; :class:`DisclosureBlocked` when it may not go."""
        self.policy.taxonomy.purpose(purpose)  # unknown purpose: a programming error
        checked_fields = {
            path: self.policy.taxonomy.category(cat) for path, cat in (fields or {}).items()
        }

        def blocked(reason: BlockReason) -> DisclosureBlocked:
            return DisclosureBlocked(
                purpose, reason.value, recipient=recipient.name, recipient_kind=recipient.kind
            )

        if not self.registry.is_registered(recipient):
            raise blocked(BlockReason.UNREGISTERED_RECIPIENT)
        if not recipient.may_receive(purpose):
            raise blocked(BlockReason.PURPOSE_NOT_REGISTERED)
        if recipient.kind is RecipientKind.AUTHORITY and not reference:
            raise blocked(BlockReason.REFERENCE_REQUIRED)
        merged = dict(recipient.scope)
        for key, value in (scope or {}).items():
            if merged.get(key, value) != value:
                raise PolicyError(
                    f"scope key {key!r} differs from recipient {recipient.name!r}'s own scope"
                )
            merged[key] = value
        return _Plan(
            self,
            recipient,
            purpose,
            Scope(merged),
            controller,
            reference,
            checked_fields,
            channel,
        )

    def _plan_or_block(
        self,
        tel: DisclosureTelemetry,
        recipient: Recipient,
        purpose: str,
        scope: Scope | Mapping[str, str] | None,
        controller: str | None,
        reference: str | None,
        fields: Mapping[str, str] | None,
        channel: str,
    ) -> _Plan:
        try:
            return self.plan(recipient, purpose, scope, controller, reference, fields, channel)
        except DisclosureBlocked as exc:
            tel.blocked(exc.reason)
            raise

    def _one_controller(
        self, tel: DisclosureTelemetry, plan: _Plan, pairs: Sequence[tuple[Subject, Any]]
    ) -> None:
        controllers = {subject.controller for subject, _ in pairs}
        if len(controllers) > 1:
            tel.blocked(BlockReason.CROSS_TENANT.value)
            raise DisclosureBlocked(
                plan.purpose,
                BlockReason.CROSS_TENANT.value,
                recipient=plan.recipient.name,
                recipient_kind=plan.kind,
            )

    def _records(
        self,
        tel: DisclosureTelemetry,
        plan: _Plan,
        accepted: Sequence[tuple[Subject, Any, Decision, tuple[str, ...]]],
        dropped: Mapping[str, int],
        withheld: Mapping[str, int],
        undeclared: int,
    ) -> tuple[DisclosureResult, list[DisclosureRecord]]:
        batch_id = uuid.uuid4().hex
        at = self.now()
        ids = tel.ids()
        written: list[DisclosureRecord] = []
        disclosure_ids: list[str] = []
        kept: set[str] = set()
        record = plan.record
        for i, (subject, _, decision, categories) in enumerate(accepted):
            disclosure_id = f"{batch_id}-{i}"
            disclosure_ids.append(disclosure_id)
            written.append(record(disclosure_id, batch_id, subject, decision, categories, at, ids))
            kept.update(categories)
        result = DisclosureResult(
            recipient=plan.recipient,
            purpose=plan.purpose,
            batch_id=batch_id,
            records=tuple(a[1] for a in accepted),
            subjects=tuple(a[0] for a in accepted),
            disclosure_ids=tuple(disclosure_ids),
            categories=tuple(sorted(kept)),
            dropped=MappingProxyType(dict(dropped)),
            withheld=MappingProxyType(dict(withheld)),
            undeclared=undeclared,
        )
        return result, written

    def _report(
        self,
        tel: DisclosureTelemetry,
        plan: _Plan,
        result: DisclosureResult,
        written: Sequence[DisclosureRecord],
    ) -> None:
        tel.disclosed(
            subjects=result.disclosed,
            dropped=result.dropped,
            categories=result.categories,
            bases={r.basis for r in written},
            policy_version=self.policy.version,
            controller=plan.controller,
            batch_id=result.batch_id,
        )

    def write(self, records: Sequence[DisclosureRecord]) -> None:
        self.store.append_disclosures(records)

    async def awrite(self, records: Sequence[DisclosureRecord]) -> None:
        await self.store.aappend_disclosures(records)


def _pairs(
    records: Iterable[Any], subject_of: Callable[[Any], Subject] | None
) -> list[tuple[Subject, Any]]:
    if subject_of is not None:
        return [(subject_of(record), record) for record in records]
    pairs: list[tuple[Subject, Any]] = []
    for item in records:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Subject)):
            raise PolicyError(
                "disclose() takes (subject, record) pairs, or records with subject_of="
            )
        pairs.append(item)
    return pairs


class DisclosureBatch:
    """Collects ``(subject, record)`` pairs in a ``with`` block; discloses them on exit.

    On a clean exit the whole batch is checked, reduced and recorded in one call
    (``result`` holds what to send). If the block raises, nothing is checked or written.
    Works with ``with`` (sync store calls) and ``async with`` (off the event loop).
    """

    __slots__ = ("_items", "_kwargs", "_owner", "_result")

    def __init__(self, owner: Disclosures, kwargs: dict[str, Any]) -> None:
        self._owner = owner
        self._kwargs = kwargs
        self._items: list[tuple[Subject, Any]] = []
        self._result: DisclosureResult | None = None

    def add(self, subject: Subject, record: Any) -> None:
        if self._result is not None:
            raise PolicyError("this disclosure batch is already committed")
        if not isinstance(subject, Subject):
            raise PolicyError("add() takes a Subject and its record")
        self._items.append((subject, record))

    def __len__(self) -> int:
        return len(self._items)

    @property
    def result(self) -> DisclosureResult:
        """What the batch disclosed; available after a clean exit."""
        if self._result is None:
            raise PolicyError("the disclosure batch has not been committed")
        return self._result

    def __enter__(self) -> DisclosureBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._result = self._owner.disclose(self._items, **self._kwargs)
        self._items = []

    async def __aenter__(self) -> DisclosureBatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._result = await self._owner.adisclose(self._items, **self._kwargs)
        self._items = []
