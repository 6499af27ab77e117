"""Helpers for a host app's own test suite.

>>> from privguard.testing import as_subject, assert_no_personal_data
>>> with as_subject(app, Subject.customer("u-1", tenant="acme"),
...                 consents=[Purposes.MARKETING_EMAIL]):
...     response = client.get("/newsletter/preview")
>>> assert_no_personal_data(response, categories=[Categories.CARD])

:func:`as_subject` makes the app's :class:`~privguard.PrivacyMiddleware` treat every
request as coming from one subject, with the consents given recorded in the guard's
store: nothing a client sends can do that, only test code that holds the app.
:func:`assert_no_personal_data` looks for personal data the way the redactor does: by
key name and with the free-text detectors.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from ._errors import PolicyError
from ._middleware import PrivacyMiddleware
from ._records import ConsentMethod, Evidence
from ._redaction import _INT_SCAN_MAX, _INT_SCAN_MIN, Redactor
from ._subject import Scope, Subject
from ._taxonomy import covers

if TYPE_CHECKING:
    from ._detection import Finding, TextScanner
    from ._guard import Privguard

__all__ = [
    "TEST_EVIDENCE",
    "as_subject",
    "assert_no_personal_data",
    "find_personal_data",
]

#: The evidence recorded for consents :func:`as_subject` grants.
TEST_EVIDENCE: Final = Evidence(
    method=ConsentMethod.ADMIN, actor="privguard.testing", notice_version="test"
)

_LABEL: Final = re.compile(r"\[[a-z0-9_.]+\]")


# -- finding personal data -----------------------------------------------------------------
def _looks_redacted(value: str) -> bool:
    if not value or "*" in value or _LABEL.fullmatch(value):
        return True
    try:
        from ._crypto._format import is_protected
    except ImportError:  # pragma: no cover - crypto is part of the package
        return value.startswith("pg1.")
    return is_protected(value)


def _as_data(obj: object) -> tuple[object, Mapping[str, str]]:
    """Turn a response, bytes or text into data to walk, plus headers to check."""
    headers: dict[str, str] = {}
    raw_headers = getattr(obj, "headers", None)
    body: object = obj
    if raw_headers is not None and hasattr(raw_headers, "items"):
        headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
        if hasattr(obj, "content"):  # httpx.Response
            body = obj.content
        elif hasattr(obj, "body"):  # starlette.responses.Response
            body = obj.body
    if isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        stripped = body.lstrip()
        if stripped[:1] in ("{", "[", '"'):
            try:
                return json.loads(body), headers
            except ValueError:
                pass
        if "\n" in body and stripped[:1] == "{":  # NDJSON
            try:
                return [json.loads(line) for line in body.splitlines() if line.strip()], headers
            except ValueError:
                pass
        return body, headers
    if dataclasses.is_dataclass(body) and not isinstance(body, type):
        return dataclasses.asdict(body), headers
    dump = getattr(body, "model_dump", None)
    if callable(dump):
        return dump(), headers
    return body, headers


_HEADERS_NOT_CHECKED: Final = frozenset({"date", "content-length", "etag", "server"})


def find_personal_data(
    obj: object,
    categories: Iterable[str] | None = None,
    *,
    guard: Privguard | None = None,
    scanner: TextScanner | None = None,
) -> list[tuple[str, str]]:
    """Where personal data is in ``obj``: ``[(path, category), ...]``, never the values.

    ``obj`` may be an httpx or Starlette response, bytes, text, JSON-like data, a
    dataclass or a Pydantic model. Values under a personal key (``email``,
    ``card_number``, ... as the redactor knows them, with ``guard``'s extra key names)
    count unless they look redacted (masked, labelled, encrypted); every other string,
    and every other int of 13 to 16 digits, is scanned with the detectors (card numbers,
    e-mail addresses, phone numbers, IBANs).
    ``categories`` limits the search to those categories and their children. Keys are
    scanned too: a finding in a key is reported as ``$.path.[category] (key)``, and the
    paths below it name the key with its findings as labels, never the value.
    """
    wanted = None if categories is None else tuple(categories)
    redactor = guard.redactor if guard is not None else _default_redactor()
    if scanner is None:
        from ._detection import DEFAULT_SCANNER

        scanner = redactor.scanner or DEFAULT_SCANNER
    found: list[tuple[str, str]] = []

    def keep(category: str) -> bool:
        return wanted is None or any(covers(c, category) for c in wanted)

    def scan(text: str, path: str) -> None:
        for finding in scanner.scan(text):
            if keep(finding.category):
                found.append((path, finding.category))

    data, headers = _as_data(obj)
    for name, header in headers.items():
        if name not in _HEADERS_NOT_CHECKED:
            scan(header, f"header {name}")

    def label(finding: Finding, matched: str) -> str:
        return f"[{finding.category}]"

    stack: list[tuple[object, str, str | None]] = [(data, "$", None)]
    while stack:
        value, path, category = stack.pop()
        if isinstance(value, _KeyFindings):
            found.extend((path, c) for c in value.categories if keep(c))
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):  # the stack pops in order
                cat = category
                if cat is None and isinstance(key, str):
                    cat = redactor.category_of_key(key)
                # A key can hold personal data too (an e-mail address, a card number):
                # it is reported, and named in paths with its findings as labels.
                text = key if isinstance(key, str) else str(key)
                findings = _key_findings(scanner, key, text)
                segment = scanner.redact(text, label) if findings else text
                stack.append((item, f"{path}.{segment}", cat))
                if findings:
                    stack.append((_KeyFindings(findings), f"{path}.{segment} (key)", None))
        elif isinstance(value, list | tuple | set | frozenset):
            for i, item in reversed(list(enumerate(value))):
                stack.append((item, f"{path}[{i}]", category))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, str):
            if category is not None and not _looks_redacted(value):
                if keep(category):
                    found.append((path, category))
            else:
                scan(value, path)
        elif isinstance(value, int | float) and category is not None:
            if keep(category):
                found.append((path, category))
        elif type(value) is int and _INT_SCAN_MIN <= value < _INT_SCAN_MAX:
            scan(str(value), path)  # a card number sent as a JSON number
    return found


class _KeyFindings:
    """On the walk's stack: the categories found in a key, reported where it pops."""

    __slots__ = ("categories",)

    def __init__(self, findings: list[Finding]) -> None:
        self.categories = [f.category for f in findings]


def _key_findings(scanner: TextScanner, key: object, text: str) -> list[Finding]:
    if isinstance(key, str) or (type(key) is int and _INT_SCAN_MIN <= key < _INT_SCAN_MAX):
        return scanner.scan(text)
    return []


_REDACTORS: list[Redactor] = []


def _default_redactor() -> Redactor:
    if not _REDACTORS:
        _REDACTORS.append(Redactor())
    return _REDACTORS[0]


def assert_no_personal_data(
    obj: object,
    categories: Iterable[str] | None = None,
    *,
    guard: Privguard | None = None,
    scanner: TextScanner | None = None,
) -> None:
    """Fail (``AssertionError``) if ``obj`` holds personal data; see :func:`find_personal_data`.

    The message names where and which category, never the value.
    """
    found = find_personal_data(obj, categories, guard=guard, scanner=scanner)
    if found:
        where = ", ".join(f"{path} ({category})" for path, category in found[:20])
        more = f" and {len(found) - 20} more" if len(found) > 20 else ""
        raise AssertionError(f"personal data found: {where}{more}")


# -- running requests as a subject ---------------------------------------------------------
def _middlewares(app: object) -> list[PrivacyMiddleware]:
    found: list[PrivacyMiddleware] = []
    seen: set[int] = set()
    stack: list[Any] = [app]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, PrivacyMiddleware):
            found.append(obj)
        if hasattr(obj, "build_middleware_stack") and hasattr(obj, "middleware_stack"):
            # A Starlette or FastAPI app builds its stack on the first request; build it
            # now, as that first request would, so the middleware instance exists.
            if obj.middleware_stack is None:
                obj.middleware_stack = obj.build_middleware_stack()
            stack.append(obj.middleware_stack)
        stack.append(getattr(obj, "app", None))
        for route in getattr(obj, "routes", None) or ():
            if hasattr(route, "routes"):  # a mount: its app may have its own middleware
                stack.append(getattr(route, "app", None))
    return found


@contextmanager
def as_subject(
    app: object,
    subject: Subject | None,
    *,
    consents: Iterable[str | tuple[str, Scope | Mapping[str, str] | None]] = (),
    guard: Privguard | None = None,
) -> Iterator[Privguard]:
    """Run requests to ``app`` as ``subject`` (``None``: anonymous), with ``consents``.

    ``app`` is the ASGI app (Starlette, FastAPI, or a :class:`PrivacyMiddleware`);
    every :class:`PrivacyMiddleware` in it uses ``subject`` instead of its resolver until
    the block ends. ``consents`` are purposes, or ``(purpose, scope)`` pairs, granted in
    the guard's store (``guard``, else the middleware's) with :data:`TEST_EVIDENCE`;
    they stay recorded, so give each test a fresh store. Yields the guard.

    The override is per middleware, not per task: do not run requests as different
    subjects concurrently against one app.
    """
    middlewares = _middlewares(app)
    if not middlewares:
        raise PolicyError("as_subject: no PrivacyMiddleware found in the app")
    used = guard if guard is not None else middlewares[0].guard
    granted = list(consents)
    if granted:
        if subject is None:
            raise PolicyError("as_subject: consents need a subject")
        for consent in granted:
            purpose, scope = (consent, None) if isinstance(consent, str) else consent
            if scope is not None and not isinstance(scope, Scope):
                scope = Scope(scope)
            used.ledger.grant(subject, purpose, evidence=TEST_EVIDENCE, scope=scope)
    previous = [m._subject_override for m in middlewares]
    for m in middlewares:
        m._subject_override = subject
    try:
        yield used
    finally:
        for m, before in zip(middlewares, previous, strict=True):
            m._subject_override = before
