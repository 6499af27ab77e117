"""The outbound guard: an httpx transport that checks and records what leaves.

It wraps the host's transport (``httpx`` transports compose), so a client built with it
guards every request it sends::

    client = httpx.Client(transport=GuardedTransport(guard=guard, purpose=Purposes.PAYMENT))

For each request it reads the body and the query string, and when they hold personal
data (a key the redactor knows, or what the detectors find):

1. maps the URL (host, port, path) to a registered recipient: none is
   ``unregistered_recipient``, several ``ambiguous_recipient``;
2. takes the purpose (the request's ``privguard`` extension, else the transport's
   ``purpose=``, a string or a function of the request), the subject (the extension, else
   the privacy context of the running request or job) and the scope;
3. reduces and protects the body for that recipient and checks the subject, exactly as
   :meth:`Privguard.disclose` does (card data only to a payment processor);
4. writes the disclosure record, then sends the rewritten request (``Content-Length``
   fixed). Anything refused raises :class:`DisclosureBlocked` and **nothing is sent**.

A body it must inspect but cannot (broken JSON, a compressed body, an unknown media type
in which the detectors find personal data) is refused: fail closed. A request with no
personal data goes out untouched and unrecorded; with ``strict=True`` only registered
recipients may be reached at all.

Per request, ``request.extensions["privguard"]`` may give ``subject``, ``purpose``,
``scope``, ``controller``, ``reference``, ``provenance``, or ``disclosure``: the result of
a :meth:`Privguard.disclose` whose records the body carries (a bulk export); it is sent
only if every personal value in the body is among that result's records for this very
recipient, and is not recorded twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode

import httpx

from ._context import current_context
from ._disclosures import CHANNEL_HTTP, BlockReason, DisclosureResult
from ._errors import DisclosureBlocked, PolicyError, UnparseableBody
from ._recipients import Recipient, RecipientRegistry
from ._records import DisclosureRecord
from ._redaction import dump_json, parse_json
from ._subject import Provenance, Scope, Subject
from ._telemetry import DisclosureTelemetry

if TYPE_CHECKING:
    from ._decisions import Decision
    from ._disclosures import Disclosures, _Found, _Plan
    from ._guard import Privguard

__all__ = ["EXTENSION", "AsyncGuardedTransport", "GuardedTransport"]

#: The request extension privguard reads: ``request.extensions["privguard"] = {...}``.
EXTENSION: Final = "privguard"
_EXTENSION_KEYS: Final = frozenset(
    {"subject", "purpose", "scope", "controller", "reference", "provenance", "disclosure"}
)
_FORM: Final = "application/x-www-form-urlencoded"
_BRACKETS: Final = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_SEGMENT: Final = re.compile(r"\[([^\[\]]*)\]")

PurposeResolver = Callable[[httpx.Request], "str | None"]


@dataclass(slots=True)
class _Body:
    """A request's parsed parts: what may hold personal data, and how to rebuild it."""

    kind: str  # "empty" | "json" | "form" | "opaque"
    data: Any = None
    query: dict[str, Any] | None = None
    charset: str = "utf-8"


@dataclass(slots=True)
class _Prepared:
    """A request that holds personal data and may go: its record and its new form."""

    plan: _Plan
    subject: Subject
    categories: tuple[str, ...]
    provenance: Provenance | None
    data: Any
    query: dict[str, Any] | None


class _Guard:
    """What the sync and async transports share: everything but the I/O."""

    def __init__(
        self,
        guard: Privguard,
        registry: RecipientRegistry | None,
        purpose: str | PurposeResolver | None,
        strict: bool,
        fields: Mapping[str, str] | None,
    ) -> None:
        self.guard = guard
        self.registry = registry if registry is not None else guard.recipients
        self.purpose = purpose
        self.strict = strict
        self.fields = dict(fields or {})
        if isinstance(purpose, str):
            guard.policy.taxonomy.purpose(purpose)
        self._disclosures: Disclosures | None = None

    @property
    def disclosures(self) -> Disclosures:
        if self._disclosures is None:
            owner = self.guard.disclosures
            if self.registry is not owner.registry:
                from ._disclosures import Disclosures

                owner = Disclosures(
                    policy=owner.policy,
                    decider=owner.decider,
                    store=owner.store,
                    registry=self.registry,
                    key_names=owner.key_names,
                    telemetry=owner.telemetry,
                    keyring=self.guard.keyring,
                )
            self._disclosures = owner
        return self._disclosures

    # -- reading the request ---------------------------------------------------------------
    @staticmethod
    def options(request: httpx.Request) -> Mapping[str, Any]:
        raw = request.extensions.get(EXTENSION)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise PolicyError(f'request.extensions["{EXTENSION}"] must be a mapping')
        unknown = set(raw) - _EXTENSION_KEYS
        if unknown:
            raise PolicyError(f"unknown privguard request options: {', '.join(sorted(unknown))}")
        return raw

    def parse(self, request: httpx.Request, body: bytes) -> _Body:
        """The body and query, parsed; :class:`DisclosureBlocked` when it cannot be."""
        query = None
        if request.url.query:
            query = _form_dict(parse_qsl(request.url.query.decode("ascii", "replace"), True))
        if not body:
            return _Body("empty", query=query)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        media, params = _media_type(request.headers.get("content-type", ""))
        charset = params.get("charset", "utf-8")
        if encoding not in ("", "identity"):
            raise self.unparseable(request, "a compressed body cannot be inspected")
        if media == "application/json" or media.endswith("+json"):
            try:
                return _Body("json", parse_json(body), query, charset)
            except UnparseableBody:
                raise self.unparseable(request, "invalid JSON") from None
        if media == _FORM:
            try:
                text = body.decode(charset)
            except (LookupError, UnicodeDecodeError):
                raise self.unparseable(request, "form body not in its charset") from None
            return _Body(
                "form", _form_dict(parse_qsl(text, keep_blank_values=True)), query, charset
            )
        return _Body("opaque", body, query, charset)

    def unparseable(self, request: httpx.Request, why: str) -> DisclosureBlocked:
        del why  # the reason code says enough; details could echo the body
        return DisclosureBlocked(
            None, BlockReason.UNPARSEABLE_BODY.value, host=request.url.host or None
        )

    def personal(self, parsed: _Body) -> bool:
        """Whether the request carries personal data (key names, or the detectors)."""
        scanner = self.disclosures.scanner
        if parsed.query is not None and self._holds_personal(parsed.query):
            return True
        if parsed.kind == "opaque":
            return scanner.contains(bytes(parsed.data).decode("latin-1"))
        if parsed.kind in ("json", "form"):
            return self._holds_personal(parsed.data)
        return False

    def _holds_personal(self, data: Any) -> bool:
        category_of_key = self.disclosures.key_names.category_of_key
        contains = self.disclosures.scanner.contains
        fields = self.fields
        if isinstance(data, Mapping) and any("[" in str(k) for k in data):
            fields = {**self._bracket_fields(str(k) for k in data), **fields}
        stack: list[tuple[Any, str | None, str]] = [(data, None, "")]
        while stack:
            value, category, path = stack.pop()
            if isinstance(value, Mapping):
                for key, item in value.items():
                    name = str(key)
                    sub = f"{path}.{name}" if path else name
                    cat = category or fields.get(sub) or category_of_key(name)
                    stack.append((item, cat, sub))
            elif isinstance(value, list):
                stack.extend((item, category, path) for item in value)
            elif value is None or isinstance(value, bool):
                continue
            elif category is not None:
                if value != "":
                    return True
            elif isinstance(value, str):
                if contains(value):
                    return True
            elif isinstance(value, int) and abs(value) >= 10**6 and contains(str(value)):
                return True
        return False

    # -- deciding -----------------------------------------------------------------------------
    def resolve(self, request: httpx.Request, options: Mapping[str, Any]) -> Recipient:
        url = request.url
        scope = _scope(options.get("scope"))
        if scope is None:
            ctx = current_context()
            scope = ctx.scope if ctx is not None else None
        event = scope.get("event") if scope is not None else None
        found = self.registry.match(url.scheme, url.host, url.port, url.path or "/", event=event)
        if not found:
            raise DisclosureBlocked(
                self.purpose_of(request, options),
                BlockReason.UNREGISTERED_RECIPIENT.value,
                host=url.host or None,
            )
        if len(found) > 1:
            raise DisclosureBlocked(
                self.purpose_of(request, options),
                BlockReason.AMBIGUOUS_RECIPIENT.value,
                host=url.host or None,
            )
        return found[0]

    def purpose_of(self, request: httpx.Request, options: Mapping[str, Any]) -> str | None:
        purpose = options.get("purpose")
        if purpose is None:
            purpose = self.purpose(request) if callable(self.purpose) else self.purpose
        if purpose is not None and not isinstance(purpose, str):
            raise PolicyError("a purpose is a string")
        return purpose

    def prepare(
        self,
        request: httpx.Request,
        options: Mapping[str, Any],
        parsed: _Body,
        recipient: Recipient,
    ) -> _Prepared:
        """Purpose, subject, plan, reduction: everything before the check."""
        host = request.url.host or None
        purpose = self.purpose_of(request, options)
        kind = recipient.kind

        def blocked(reason: BlockReason, purpose: str | None = purpose) -> DisclosureBlocked:
            return DisclosureBlocked(
                purpose, reason.value, recipient=recipient.name, recipient_kind=kind, host=host
            )

        if purpose is None:
            raise blocked(BlockReason.PURPOSE_REQUIRED)
        if parsed.kind == "opaque":
            # Personal data in a body privguard cannot take apart: it cannot be reduced.
            raise blocked(BlockReason.UNPARSEABLE_BODY)
        ctx = current_context()
        subject = options.get("subject")
        if subject is None and ctx is not None:
            subject = ctx.subject
        if subject is None:
            raise blocked(BlockReason.SUBJECT_REQUIRED)
        if not isinstance(subject, Subject):
            raise PolicyError('extensions["privguard"]["subject"] must be a Subject')
        scope = _scope(options.get("scope"))
        if scope is None and ctx is not None and ctx.scope:
            scope = ctx.scope
        fields = self.fields
        forms = [p for p in (parsed.data if parsed.kind == "form" else None, parsed.query) if p]
        if forms:
            fields = {**self._bracket_fields(k for form in forms for k in form), **fields}
        plan = self.disclosures.plan(
            recipient,
            purpose,
            scope,
            options.get("controller"),
            options.get("reference"),
            fields,
            CHANNEL_HTTP,
        )
        found_all: list[_Found] = []
        data = parsed.data
        if parsed.kind in ("json", "form"):
            data, found = plan.reduce(subject.kind, parsed.data)
            found_all.append(found)
        query = parsed.query
        if query is not None:
            query, found = plan.reduce(subject.kind, query)
            found_all.append(found)
        categories = tuple(sorted(set().union(*(f.kept for f in found_all))))
        provenance = options.get("provenance")
        if provenance is not None and not isinstance(provenance, Provenance):
            raise PolicyError('extensions["privguard"]["provenance"] must be a Provenance')
        return _Prepared(plan, subject, categories, provenance, data, query)

    def _bracket_fields(self, keys: Iterable[str]) -> dict[str, str]:
        """Categories of form keys in bracket notation (Stripe, Rails, PHP):
        ``billing_details[email]`` is an e-mail, ``card[number]`` a card number: the
        innermost segment that names a category wins, else the next one out."""
        category_of_key = self.disclosures.key_names.category_of_key
        found: dict[str, str] = {}
        for key in keys:
            match = _BRACKETS.fullmatch(key)
            if match is None or not match.group(2):
                continue
            names = [match.group(1), *_SEGMENT.findall(match.group(2))]
            for name in reversed(names):
                category = category_of_key(name) if name else None
                if category is not None:
                    found[key] = category
                    break
        return found

    def blocked_by(self, prepared: _Prepared, decision: Decision) -> DisclosureBlocked:
        plan = prepared.plan
        return DisclosureBlocked(
            plan.purpose,
            decision.reason.value,
            recipient=plan.recipient.name,
            recipient_kind=plan.kind,
            categories=decision.denied_categories,
            needs_consent=decision.needs_consent,
        )

    def report(
        self, prepared: _Prepared, record: DisclosureRecord, tel: DisclosureTelemetry
    ) -> None:
        plan = prepared.plan
        tel.disclosed(
            subjects=1,
            dropped={},
            categories=prepared.categories,
            bases=(record.basis,),
            policy_version=record.policy_version,
            controller=plan.controller,
            batch_id=record.batch_id,
        )

    # -- the steps both transports take ---------------------------------------------------------
    def inspect(
        self, request: httpx.Request, options: Mapping[str, Any], body: bytes
    ) -> _Body | None:
        """The parsed request if it holds personal data; ``None`` to send it untouched."""
        try:
            parsed = self.parse(request, body)
            if self.personal(parsed):
                return parsed
            url = request.url
            if self.strict and not self.registry.match(
                url.scheme, url.host, url.port, url.path or "/"
            ):
                raise DisclosureBlocked(
                    self.purpose_of(request, options),
                    BlockReason.UNREGISTERED_RECIPIENT.value,
                    host=url.host or None,
                )
        except DisclosureBlocked as exc:
            with self.disclosures.telemetry.disclosure(
                channel=CHANNEL_HTTP, recipient=None, recipient_kind=None, purpose=exc.purpose
            ) as tel:
                tel.blocked(exc.reason, host=request.url.host or None)
            raise
        return None

    def begin(
        self,
        request: httpx.Request,
        options: Mapping[str, Any],
        parsed: _Body,
        tel: DisclosureTelemetry,
    ) -> _Prepared | httpx.Request:
        """Up to the check: a prepared disclosure, or a request already disclosed."""
        recipient = self.resolve(request, options)
        tel.set_recipient(recipient.name, recipient.kind.value)
        disclosed = options.get("disclosure")
        if disclosed is not None:
            self.check_disclosed(request, parsed, recipient, disclosed)
            request.extensions.pop(EXTENSION, None)
            return request
        prepared = self.prepare(request, options, parsed, recipient)
        tel.set_purpose(prepared.plan.purpose)
        return prepared

    def admit(
        self, prepared: _Prepared, decision: Decision, tel: DisclosureTelemetry
    ) -> DisclosureRecord:
        """The record to write for an allowed decision; :class:`DisclosureBlocked` if not."""
        if not decision.allowed:
            raise self.blocked_by(prepared, decision)
        return prepared.plan.record_one(prepared.subject, decision, prepared.categories, tel.ids())

    def finish(
        self,
        request: httpx.Request,
        parsed: _Body,
        prepared: _Prepared,
        record: DisclosureRecord,
        tel: DisclosureTelemetry,
    ) -> httpx.Request:
        """After the record is written: report it and build the request to send."""
        self.report(prepared, record, tel)
        return self.rebuild(request, parsed, prepared)

    # -- a body already disclosed with Privguard.disclose ----------------------------------
    def check_disclosed(
        self, request: httpx.Request, parsed: _Body, recipient: Recipient, result: object
    ) -> None:
        if not isinstance(result, DisclosureResult):
            raise PolicyError('extensions["privguard"]["disclosure"] must be a DisclosureResult')
        blocked = DisclosureBlocked(
            result.purpose,
            "undisclosed_data",
            recipient=recipient.name,
            recipient_kind=recipient.kind,
            host=request.url.host or None,
        )
        if result.recipient != recipient or parsed.kind == "opaque":
            raise blocked
        allowed = _leaves(result.records)
        for part in (parsed.data, parsed.query):
            if part is not None and not self._personal_leaves(part) <= allowed:
                raise blocked

    def _personal_leaves(self, data: Any) -> set[str]:
        category_of_key = self.disclosures.key_names.category_of_key
        contains = self.disclosures.scanner.contains
        out: set[str] = set()
        stack: list[tuple[Any, bool]] = [(data, False)]
        while stack:
            value, personal = stack.pop()
            if isinstance(value, Mapping):
                for key, item in value.items():
                    stack.append((item, personal or category_of_key(str(key)) is not None))
            elif isinstance(value, list):
                stack.extend((item, personal) for item in value)
            elif value is None or isinstance(value, bool):
                continue
            else:
                text = str(value)
                if personal or contains(text):
                    out.add(text)
        return out

    # -- rebuilding the request ----------------------------------------------------------------
    def rebuild(self, request: httpx.Request, parsed: _Body, prepared: _Prepared) -> httpx.Request:
        url = request.url
        if prepared.query != parsed.query:
            url = url.copy_with(query=_encode_form(prepared.query or {}).encode("ascii") or None)
        content = request.content
        if parsed.kind == "json" and prepared.data != parsed.data:
            content = dump_json(prepared.data)
        elif parsed.kind == "form" and prepared.data != parsed.data:
            content = _encode_form(prepared.data).encode(parsed.charset)
        if url is request.url and content is request.content:
            request.extensions.pop(EXTENSION, None)
            return request
        headers = httpx.Headers(request.headers)
        if content is not request.content:
            headers.pop("transfer-encoding", None)
            headers["content-length"] = str(len(content))
        extensions = {k: v for k, v in request.extensions.items() if k != EXTENSION}
        return httpx.Request(
            request.method, url, headers=headers, content=content, extensions=extensions
        )


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, _, rest = header.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _form_dict(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs as a dict; a repeated key holds the list of its values."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _encode_form(data: Mapping[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                pairs.append((key, str(item)))
    return urlencode(pairs)


def _scope(value: object) -> Scope | None:
    if value is None or isinstance(value, Scope):
        return value
    if isinstance(value, Mapping):
        return Scope(value)
    raise PolicyError('extensions["privguard"]["scope"] must be a Scope or a mapping')


def _leaves(records: object) -> set[str]:
    out: set[str] = set()
    stack: list[Any] = [records]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif value is not None and not isinstance(value, bool):
            out.add(str(value))
    return out


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that checks, reduces, records, and only then sends.

    >>> client = httpx.Client(
    ...     transport=GuardedTransport(guard=guard, purpose=Purposes.PAYMENT)
    ... )

    ``inner`` is the transport that sends (default ``httpx.HTTPTransport()``);
    ``registry`` defaults to ``guard.recipients``; ``purpose`` is a purpose or a function
    of the request returning one; ``strict=True`` refuses every unregistered host, even
    without personal data; ``fields`` declares categories of body keys by path.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        guard: Privguard,
        registry: RecipientRegistry | None = None,
        purpose: str | PurposeResolver | None = None,
        strict: bool = False,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self._core = _Guard(guard, registry, purpose, strict, fields)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        options = core.options(request)
        parsed = core.inspect(request, options, request.read())
        if parsed is None:
            return self.inner.handle_request(request)
        with core.disclosures.telemetry.disclosure(
            channel=CHANNEL_HTTP, recipient=None, recipient_kind=None, purpose=None
        ) as tel:
            try:
                step = core.begin(request, options, parsed, tel)
                if isinstance(step, _Prepared):
                    plan = step.plan
                    decision = plan.check(step.subject, step.categories, step.provenance)
                    record = core.admit(step, decision, tel)
                    core.disclosures.write([record])
                    step = core.finish(request, parsed, step, record, tel)
            except DisclosureBlocked as exc:
                tel.blocked(exc.reason, host=request.url.host or None)
                raise
        return self.inner.handle_request(step)

    def close(self) -> None:
        self.inner.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """:class:`GuardedTransport` for ``httpx.AsyncClient``: the checks never block the loop."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        guard: Privguard,
        registry: RecipientRegistry | None = None,
        purpose: str | PurposeResolver | None = None,
        strict: bool = False,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._core = _Guard(guard, registry, purpose, strict, fields)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        options = core.options(request)
        parsed = core.inspect(request, options, await request.aread())
        if parsed is None:
            return await self.inner.handle_async_request(request)
        with core.disclosures.telemetry.disclosure(
            channel=CHANNEL_HTTP, recipient=None, recipient_kind=None, purpose=None
        ) as tel:
            try:
                step = core.begin(request, options, parsed, tel)
                if isinstance(step, _Prepared):
                    plan = step.plan
                    decision = await plan.acheck(step.subject, step.categories, step.provenance)
                    record = core.admit(step, decision, tel)
                    await core.disclosures.awrite([record])
                    step = core.finish(request, parsed, step, record, tel)
            except DisclosureBlocked as exc:
                tel.blocked(exc.reason, host=request.url.host or None)
                raise
        return await self.inner.handle_async_request(step)

    async def aclose(self) -> None:
        await self.inner.aclose()
