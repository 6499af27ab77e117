"""Property tests: inserted card numbers and e-mail addresses never survive redaction,
one-shot or streamed in any chunking, and streaming equals one-shot redaction; long runs
of digit groups, planned group by group, give what planning the whole run gives."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from privguard import _detection
from privguard._detection import (
    _CARD_SEPS,
    DEFAULT_SCANNER,
    Finding,
    TextScanner,
    _card_boundary,
    _card_candidates,
    _group_plan,
    _groups,
    _long_run_groups,
    luhn_valid,
)
from privguard._redaction import _NOTHING_TO_FIND
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


# "@", the fullwidth and the small at-sign; "." and the dots UTS 46 maps to it.
AT_SIGNS = ["@", "@", "＠", "﹫"]
DOTS = [".", ".", ".", "．", "。", "｡"]
AT_SIGN = re.compile("[@＠﹫]")


@st.composite
def email_addresses(draw: st.DrawFn) -> str:
    local = draw(st.lists(LOCAL, min_size=1, max_size=3).map(".".join))
    local += draw(st.sampled_from(["", "+events", "_x", "-y", "＋ｘ"]))
    labels = draw(st.lists(LABEL, min_size=1, max_size=3))
    dot = draw(st.sampled_from(DOTS))
    # after a wide dot, a Latin (either width) or punycode top-level domain
    tlds = ["com", "de", "io", "co.uk", "xn--p1ai"] + (["рф", "广告"] if dot == "." else ["ｃｏｍ"])
    tld = draw(st.sampled_from(tlds)).replace(".", dot)
    if draw(st.booleans()):
        local = draw(st.sampled_from(["用户", "josé", "ünal", "ｊａｎｅ．"])) + local
    return f"{local}{draw(st.sampled_from(AT_SIGNS))}{dot.join(labels)}{dot}{tld}"


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
        at = AT_SIGN.search(address)
        assert at is not None
        assert address not in out
        assert address[: at.end()] not in out  # the local part and its at-sign


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


# Letters, digits, at-signs and dots of every width, CJK and the boundaries of CJK text.
AT_FILLER = st.text(st.sampled_from(list("ab xz.-_0@＠﹫．。｡ａｃｏｍ用户李明，")), max_size=40)


@SETTINGS
@given(AT_FILLER, st.lists(st.integers(0, 10_000), max_size=8))
@example("jane＠example．co", [11, 12, 13, 14])
@example("李明＠用户。com。李", [2, 3, 5, 7])
def test_stream_equals_one_shot_on_text_with_at_signs(filler: str, cuts: list[int]) -> None:
    text = filler * 3
    assert stream(text, cuts) == DEFAULT_SCANNER.redact(text, label)
    assert stream(text, list(range(len(text)))) == DEFAULT_SCANNER.redact(text, label)


@SETTINGS
@given(card_numbers())
def test_generated_cards_are_found_whole(card: tuple[str, str]) -> None:
    printed, _ = card
    [finding] = DEFAULT_SCANNER.scan(f"card {printed}.")
    assert (finding.kind, finding.start, finding.end) == ("card", 5, 5 + len(printed))


# --- long runs: planned group by group, as if planned whole -----------------------------

# What may join two digit groups inside a run (_SEP in privguard._detection).
RUN_SEPARATORS = [" ", " ", " ", "-", "-", ".", "/", ")", ") ", ")-", ").", "(", " (", "-(", ".("]
GROUP_SIZES = st.one_of(st.integers(1, 5), st.sampled_from([6, 7, 8, 10, 13, 15, 16, 19, 20, 23]))


@st.composite
def run_shapes(draw: st.DrawFn) -> str:
    """The shape of a run of digit groups (every digit written as 0)."""
    sizes = draw(st.lists(GROUP_SIZES, min_size=1, max_size=40))
    seps = [draw(st.sampled_from(RUN_SEPARATORS)) for _ in sizes[1:]]
    tail = zip(seps, sizes[1:], strict=True)
    return "0" * sizes[0] + "".join(sep + "0" * size for sep, size in tail)


@settings(max_examples=400, deadline=None)
@given(run_shapes(), st.booleans(), st.booleans())
# a seven-group window whose verdict reads the separator two groups past it
@example("-".join(["0000"] * 16) + "-00 0 00 00 00 00 0 0 00 00", True, False)
@example("0 " * 30 + "0000 0000 0000 0000 000", True, False)
# the fewest digits a phone number after a space may have, in seven groups
@example("-".join(["0000"] * 14) + " 00-0-0-0-0-0 0", True, False)
def test_long_run_groups_equal_whole_run_plan(
    shape: str, right_ok: bool, tail_blocked: bool
) -> None:
    starts, ends, seps = _groups(shape)
    whole = [
        _group_plan(shape, starts, ends, seps, i, right_ok, tail_blocked)
        for i in range(len(starts))
    ]
    assert _long_run_groups(shape, starts, ends, seps, right_ok, tail_blocked) == whole


def reference_layout_ok(groups: tuple[int, ...]) -> bool:
    """Contiguous, groups of four and a last one of one to four, or 4-6-5, 4-6-4, 4-5-6."""
    if len(groups) == 1 or groups in ((4, 6, 5), (4, 6, 4), (4, 5, 6)):
        return True
    return len(groups) >= 4 and all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


def reference_card_candidates(
    starts: Sequence[int], ends: Sequence[int], seps: Sequence[str], i: int, right_ok: bool
) -> tuple[int, ...]:
    """Every window of at most 19 digits joined by spaces or hyphens, longest first,
    whose boundaries and layout fit (counted from group ``i``)."""
    last = len(starts) - 1
    reach: list[tuple[int, int]] = []
    total = 0
    for j in range(i, last + 1):
        if j > i and seps[j - 1] not in _CARD_SEPS:
            break
        total += ends[j] - starts[j]
        if total > 19:
            break
        reach.append((j, total))
    return tuple(
        j - i
        for j, total in reversed(reach)
        if total >= 13
        and (right_ok if j == last else _card_boundary(seps[j]))
        and reference_layout_ok(tuple(ends[k] - starts[k] for k in range(i, j + 1)))
    )


@settings(max_examples=400, deadline=None)
@given(run_shapes(), st.booleans())
@example("0000 000000 00000 0000-0000-0000-0000-000", True)
def test_card_candidates_match_the_reference(shape: str, right_ok: bool) -> None:
    starts, ends, seps = _groups(shape)
    for i in range(len(starts)):
        expected = reference_card_candidates(starts, ends, seps, i, right_ok)
        assert _card_candidates(starts, ends, seps, i, right_ok) == expected


PHONES = ["+49 30 12345678", "(415) 555-0132", "020 7946 0958", "+1 415 555 0132", "01732 623122"]


@st.composite
def number_tables(draw: st.DrawFn) -> str:
    """A long run of digit groups, with cards and phone numbers in it."""
    shape = draw(run_shapes().filter(lambda shape: len(shape) > 40))
    digits = iter(draw(st.text("0123456789", min_size=shape.count("0"), max_size=shape.count("0"))))
    table = "".join(next(digits) if c == "0" else c for c in shape)
    pieces = re.split("( )", table)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(pieces)))
        inserted = draw(
            st.one_of(card_numbers().map(lambda card: card[0]), st.sampled_from(PHONES))
        )
        pieces[at:at] = [inserted, " "]
    return draw(BOUNDARY) + "".join(pieces) + draw(BOUNDARY)


@settings(max_examples=200, deadline=None)
@given(number_tables())
def test_long_runs_scan_as_if_planned_whole(text: str) -> None:
    scanner = TextScanner()
    found = scanner.scan(text)
    # Every run planned whole, as runs up to _SHAPE_CACHE_LEN characters are.
    with mock.patch.object(_detection, "_SHAPE_CACHE_LEN", 1 << 30):
        try:
            whole = TextScanner().scan(text)
        finally:
            _detection._RUN_PLANS.clear()
            _detection._STRETCH_RUNS.clear()
    assert found == whole


# --- the shortcuts in front of the detectors never hide what they would find --------------
IBANS = st.tuples(
    st.sampled_from(
        [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "NL91ABNA0417164300",
            "FR14 2004 1010 0505 0001 3M02 606",
            "BE68 5390 0754 7034",
            "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
        ]
    ),
    st.booleans(),
).map(lambda pair: pair[0].lower() if pair[1] else pair[0])


@st.composite
def personal_values(draw: st.DrawFn) -> str:
    which = draw(st.sampled_from(["card", "email", "iban", "phone"]))
    if which == "card":
        return draw(card_numbers())[0]
    if which == "email":
        return draw(email_addresses())
    if which == "iban":
        return draw(IBANS)
    return draw(st.sampled_from(PHONES))


IDENTIFIER_SHAPES = st.sampled_from(
    [
        "hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh",
        "hhhhhhhh-hhhh-hhhh-hhhh-dddddddddddd",
        "dddd-dd-dd",
        "dddd-dd-ddTdd:dd:ddZ",
        "dddd-dd-dd dd:dd",
        "dddd-dd-dd dd:dd:dd.ddd+dd:dd",
        "dddd-dd-ddTdd:dd:dd,dddddd-dddd",
        "hhhhhhhhhhhhhhhhhhhhhhhh",
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh",
    ]
)


@st.composite
def identifier_like(draw: st.DrawFn) -> str:
    """Strings of identifier and timestamp shapes with any digits: many are not valid."""
    out = []
    for c in draw(IDENTIFIER_SHAPES):
        if c == "d":
            out.append(draw(st.sampled_from("0123456789")))
        elif c == "h":
            out.append(draw(st.sampled_from("0123456789abcdef0123456789")))
        else:
            out.append(c)
    return "".join(out)


@SETTINGS
@given(st.one_of(identifier_like(), personal_values()))
def test_the_identifier_shortcut_never_hides_a_finding(value: str) -> None:
    # scan() skips a value the identifier pattern takes; the stream redactors do not, so
    # the shortcut must agree with the detectors for every such value.
    if _detection._IDENTIFIER(value) is not None:
        assert DEFAULT_SCANNER._candidates(value, 0) == []


@SETTINGS
@given(texts_with_personal_data())
def test_the_redactor_prefilter_lets_every_finding_through(
    case: tuple[str, list[str], list[str]],
) -> None:
    text = case[0]
    assert DEFAULT_SCANNER.scan(text)
    assert _NOTHING_TO_FIND(text) is not None


@SETTINGS
@given(st.text(st.sampled_from(list("0123456789 -./()+@aBxZ＠﹫．。｡ｃ用")), max_size=40))
def test_the_prefilter_is_a_superset_of_the_scanner(text: str) -> None:
    if DEFAULT_SCANNER.scan(text):
        assert _NOTHING_TO_FIND(text) is not None
