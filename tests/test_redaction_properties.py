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
