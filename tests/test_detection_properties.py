"""Property tests: inserted card numbers and e-mail addresses never survive redaction,
one-shot or streamed in any chunking, and streaming equals one-shot redaction."""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from privguard._detection import DEFAULT_SCANNER, Finding, luhn_valid
from privguard._streams import TextStreamRedactor

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# (issuer prefix, lengths) for real issuer ranges
ISSUERS = [
    ("4", (13, 16, 19)),
    ("51", (16,)),
    ("55", (16,)),
    ("2221", (16,)),
    ("2720", (16,)),
    ("34", (15,)),
    ("37", (15,)),
    ("6011", (16, 19)),
    ("644", (16,)),
    ("65", (16,)),
    ("3528", (16, 19)),
    ("3589", (16,)),
    ("300", (14, 16)),
    ("36", (14,)),
    ("38", (16,)),
    ("62", (16, 19)),
    ("81", (16,)),
    ("6759", (16, 18)),
    ("5019", (16,)),
    ("50", (19,)),
    ("2200", (16,)),
    ("122", (15,)),
]


def complete_luhn(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def layouts(length: int) -> list[tuple[int, ...]]:
    fours = (4,) * (length // 4) + ((length % 4,) if length % 4 else ())
    out = [(length,), fours]
    if length == 15:
        out += [(4, 6, 5), (4, 5, 6)]
    if length == 14:
        out.append((4, 6, 4))
    return out


@st.composite
def card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A printed card number and its digits."""
    prefix, lengths = draw(st.sampled_from(ISSUERS))
    length = draw(st.sampled_from(lengths))
    body = prefix + draw(
        st.text("0123456789", min_size=length - len(prefix) - 1)
        .map(lambda s: s[: length - len(prefix) - 1])
        .filter(lambda s: len(s) == length - len(prefix) - 1)
    )
    digits = complete_luhn(body)
    layout = draw(st.sampled_from(layouts(length)))
    sep = draw(st.sampled_from([" ", "-"]))
    groups, pos = [], 0
    for size in layout:
        groups.append(digits[pos : pos + size])
        pos += size
    return sep.join(groups), digits


LOCAL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)


@st.composite
def email_addresses(draw: st.DrawFn) -> str:
    local = draw(st.lists(LOCAL, min_size=1, max_size=3).map(".".join))
    local += draw(st.sampled_from(["", "+events", "_x", "-y"]))
    labels = draw(st.lists(LABEL, min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "de", "io", "co.uk", "xn--p1ai", "рф", "广告"]))
    if draw(st.booleans()):
        local = draw(st.sampled_from(["用户", "josé", "ünal"])) + local
    return f"{local}@{'.'.join(labels)}.{tld}"


FILLER = st.text(
    st.sampled_from(list("abcdefghij klmnop XYZ.,:;!?()[]#+-_/=0123456789\n")), max_size=30
)
BOUNDARY = st.sampled_from([" ", "\n", ", ", " (", ") ", ": ", " <", "> ", " '", "' ", '"'])


@st.composite
def texts_with_personal_data(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """Free text with card numbers and addresses inserted anywhere, always between
    boundary characters (a card glued to letters is, by design, not a card)."""
    parts = [draw(FILLER)]
    cards: list[str] = []
    emails: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            printed, digits = draw(card_numbers())
            parts.append(draw(BOUNDARY) + printed + draw(BOUNDARY))
            cards.append(digits)
        else:
            address = draw(email_addresses())
            parts.append(draw(BOUNDARY) + address + draw(BOUNDARY))
            emails.append(address)
        parts.append(draw(FILLER))
    return "".join(parts), cards, emails


def label(finding: Finding, matched: str) -> str:
    return f"[{finding.kind.upper()}]"


def assert_nothing_survives(out: str, cards: list[str], emails: list[str]) -> None:
    # Only the separators cards are printed with go: a placeholder still splits digits,
    # or filler digits on both sides of a redacted card could spell it out again
    # (" [CARD] 4 [CARD] 263333388924" after "4263333388924").
    out_digits = re.sub(r"[ \-]", "", out)
    for digits in cards:
        assert digits not in out_digits
    for address in emails:
        local = address.split("@")[0]
        assert address not in out
        assert local + "@" not in out


def stream(text: str, cuts: list[int]) -> str:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    out = [redactor.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return "".join(out) + redactor.finish()


@SETTINGS
@given(texts_with_personal_data())
@example((" 4000000000006 4 4263333388924 263333388924", ["4000000000006", "4263333388924"], []))
def test_redaction_leaves_no_card_and_no_address(case: tuple[str, list[str], list[str]]) -> None:
    text, cards, emails = case
    out = DEFAULT_SCANNER.redact(text, label)
    assert_nothing_survives(out, cards, emails)


@SETTINGS
@given(texts_with_personal_data(), st.lists(st.integers(0, 10_000), max_size=12))
def test_stream_equals_one_shot_in_any_chunking(
    case: tuple[str, list[str], list[str]], cuts: list[int]
) -> None:
    text, cards, emails = case
    out = stream(text, cuts)
    assert out == DEFAULT_SCANNER.redact(text, label)
    assert_nothing_survives(out, cards, emails)


@settings(max_examples=40, deadline=None)
@given(texts_with_personal_data())
def test_stream_one_character_at_a_time(case: tuple[str, list[str], list[str]]) -> None:
    text, cards, emails = case
    out = stream(text, list(range(len(text))))
    assert out == DEFAULT_SCANNER.redact(text, label)
    assert_nothing_survives(out, cards, emails)


@SETTINGS
@given(FILLER, st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_equals_one_shot_on_arbitrary_text(filler: str, cuts: list[int]) -> None:
    text = filler * 3
    assert stream(text, cuts) == DEFAULT_SCANNER.redact(text, label)


@SETTINGS
@given(card_numbers())
def test_generated_cards_are_found_whole(card: tuple[str, str]) -> None:
    printed, _ = card
    [finding] = DEFAULT_SCANNER.scan(f"card {printed}.")
    assert (finding.kind, finding.start, finding.end) == ("card", 5, 5 + len(printed))
