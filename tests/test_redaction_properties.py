"""Property tests for structured redaction: random nested JSON with Luhn-valid card
numbers and e-mail addresses anywhere (values under any key, inside free text, as list
items, as dict keys' values at any depth) never survive for a non-payment audience."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_detection_properties import card_numbers

from privguard import Redactor

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REDACTOR = Redactor()

emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z][a-z0-9._%+-]{0,20}[a-z0-9]", fullmatch=True).filter(
        lambda local: ".." not in local
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,15}[a-z0-9]", fullmatch=True),
    st.sampled_from(["com", "de", "co.uk", "io", "org", "xn--p1ai"]),
)
filler = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="@"),
    max_size=12,
).map(lambda s: re.sub(r"\d", "", s))
keys = st.one_of(
    st.sampled_from(["notes", "comment", "data", "value", "message", "meta", "x", "items"]),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
)


@st.composite
def secret_in_text(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """A string holding a card number or an e-mail, and the secrets it holds."""
    before, after = draw(filler), draw(filler)
    if draw(st.booleans()):
        printed, digits = draw(card_numbers())
        return f"{before} {printed} {after}", [digits], []
    address = draw(emails)
    return f"{before} {address} {after}", [], [address]


@st.composite
def documents(draw: st.DrawFn) -> tuple[Any, list[str], list[str]]:
    """Nested JSON with secrets in random places; returns (doc, card digits, e-mails)."""
    cards: list[str] = []
    mails: list[str] = []

    def node(depth: int) -> Any:
        choice = draw(st.integers(0, 5 if depth < 4 else 2))
        if choice <= 1:
            text, c, m = draw(secret_in_text())
            cards.extend(c)
            mails.extend(m)
            return text
        if choice == 2:
            return draw(st.one_of(st.integers(), st.booleans(), st.none(), filler))
        if choice == 3:
            return [node(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        return {draw(keys): node(depth + 1) for _ in range(draw(st.integers(1, 3)))}

    doc = {draw(keys): node(0) for _ in range(draw(st.integers(1, 4)))}
    return doc, cards, mails


def _digits_only(text: str) -> str:
    return re.sub(r"\D", "", text)


@SETTINGS
@given(documents(), st.sampled_from([None, "exhibitor", "processor", "analytics_provider"]))
def test_no_card_or_email_survives_structured_redaction(
    case: tuple[Any, list[str], list[str]], audience: str | None
) -> None:
    doc, cards, mails = case
    out = json.dumps(REDACTOR.redact(doc, audience=audience), ensure_ascii=False)
    flat = _digits_only(out)
    for digits in cards:
        assert digits not in flat
    for address in mails:
        assert address not in out


@SETTINGS
@given(documents())
def test_redact_json_bytes_matches_object_redaction(case: tuple[Any, list[str], list[str]]) -> None:
    doc, cards, mails = case
    body = json.dumps(doc).encode()
    out = REDACTOR.redact_json(body).decode()
    assert json.loads(out) == REDACTOR.redact(doc)
    for digits in cards:
        assert digits not in _digits_only(out)
    for address in mails:
        assert address not in out


@SETTINGS
@given(documents())
def test_input_is_never_mutated(case: tuple[Any, list[str], list[str]]) -> None:
    doc, _, _ = case
    before = json.dumps(doc, sort_keys=True)
    REDACTOR.redact(doc)
    assert json.dumps(doc, sort_keys=True) == before


# -- lists of records: the function generated per key set ------------------------------------
# A key set seen three times gets its own generated function; these tests redact lists of
# records sharing one key set, so most records go through it, and compare the result with
# a fresh Redactor's, which sees each record once and walks it with the general loop.
record_keys = st.lists(
    st.one_of(
        st.sampled_from(
            ["email", "phone", "card_number", "first_name", "cvv", "iban", "notes", "id"]
        ),
        keys,
    ),
    min_size=1,
    max_size=9,
    unique=True,
)


IDENTIFIERS = st.sampled_from(
    [
        "3f2b8c1e-9d4a-4e6b-8a7c-1d2e3f4a5b6c",
        "2026-11-26T10:00:00Z",
        "2026-11-26",
        "507f1f77bcf86cd799439011",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ]
)


@st.composite
def records(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """4 to 8 dicts with the same keys, values of any kind; (records, cards, e-mails)."""
    names = draw(record_keys)
    cards: list[str] = []
    mails: list[str] = []

    def value() -> Any:
        choice = draw(st.integers(0, 7))
        if choice == 7:  # the function generated for a key that held one checks it first
            return draw(IDENTIFIERS)
        if choice <= 2:
            text, c, m = draw(secret_in_text())
            cards.extend(c)
            mails.extend(m)
            return text
        if choice == 3:
            printed, digits = draw(card_numbers())
            cards.append(digits)
            return printed
        if choice == 4:
            return draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()))
        if choice == 5:
            return draw(st.one_of(st.none(), filler, st.lists(st.integers(), max_size=3)))
        text, c, m = draw(secret_in_text())
        cards.extend(c)
        mails.extend(m)
        return draw(st.sampled_from([[text], {"inner": text}, [1, text, None]]))

    rows = [{name: value() for name in names} for _ in range(draw(st.integers(4, 8)))]
    return rows, cards, mails


@SETTINGS
@given(records(), st.sampled_from([None, "exhibitor", "payment_processor", "analytics_provider"]))
def test_generated_record_functions_redact_like_the_general_walk(
    case: tuple[list[dict[str, Any]], list[str], list[str]], audience: str | None
) -> None:
    rows, cards, mails = case
    before = json.dumps(rows, sort_keys=True)
    warm = Redactor()
    for _ in range(3):
        out = warm.redact({"rows": rows}, audience=audience)["rows"]
    expected = [Redactor().redact(row, audience=audience) for row in rows]
    assert out == expected
    assert warm._compiled[warm.taxonomy.recipient_kind(audience) if audience else None]
    assert json.dumps(rows, sort_keys=True) == before  # input untouched
    if audience != "payment_processor":
        text = json.dumps(out, ensure_ascii=False)
        for digits in cards:
            assert digits not in _digits_only(text)
        for address in mails:
            assert address not in text
