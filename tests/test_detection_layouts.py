"""Phone numbers are judged by how they are grouped; separators are read in any script.

From the user's side: what ``TextScanner`` finds, what ``Redactor`` and the chunked
stream redactor let through.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privguard import Redactor
from privguard._detection import DEFAULT_SCANNER, Finding, TextScanner
from privguard._streams import TextStreamRedactor

SCANNER = TextScanner()


def phones(text: str) -> list[str]:
    return [text[f.start : f.end] for f in SCANNER.scan(text) if f.kind == "phone"]


# Numbers whose digits make a valid number somewhere, grouped as no one writes one.
@pytest.mark.parametrize(
    "text",
    [
        "order 2026-000001",  # a US number by its digits (202 600 0001), grouped 4-6
        "#2026-000001",
        "invoice 2026-000123",
        "ref 20260-00001",
        "ISBN 0-306-40615-2",  # ISBN-10: the check digit stands alone
        "0-19-852663-6",
        "ISBN 978-3-16-148410-0",
        "version 1.22.333.4444",  # a Brazilian number by its digits, grouped 1-2-3-4
        "06 12 2026",  # a date, a German number by its digits
    ],
)
def test_groupings_no_one_writes_are_not_phone_numbers(text: str) -> None:
    assert phones(text) == []


# Numbers grouped as their country writes them, including common variations.
@pytest.mark.parametrize(
    "number",
    [
        "415-555-0132",
        "(415) 555-0132",
        "415 5550132",  # groups may run together
        "1-415-555-0132",  # the trunk prefix alone
        "030 1234567",
        "030 123 45 67",
        "01732 623122",  # German area codes vary: the first break may be off by two
        "0173 2623122",
        "06 12 34 56 78",
        "01.23.45.67.89",
        "020 7946 0958",
        "0207 946 0958",  # one digit off, as many Londoners write it
        "07700 900123",
        "0161 496 0000",
        "090-1234-5678",
        "03-1234-5678",
        "09-7625400",
        "(11) 98456-5666",
        "98765 43210",  # India: the format's groups, without the trunk 0
        "022 2345 6789",
        "138 1234 5678",
    ],
)
def test_home_groupings_are_phone_numbers(number: str) -> None:
    assert phones(f"call {number} today") == [number]


def test_international_numbers_are_not_judged_by_national_groupings() -> None:
    assert phones("call +1 2026 000001 now") == ["+1 2026 000001"]


def test_the_layout_check_reads_the_region_the_scanner_is_configured_for() -> None:
    us_only = TextScanner(["phone"], phone_regions=["US"])
    assert us_only.scan("2026-000001") == []
    assert [f.kind for f in us_only.scan("202-600-0001")] == ["phone"]


# --- separators in other scripts ---------------------------------------------------------

CARD = "4111111111111111"
SPACES = ["\u00a0", "\u2007", "\u2009", "\u202f", "\u2002", "\u3000"]
DASHES = ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\uff0d"]


def grouped(digits: str, sep: str) -> str:
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


@pytest.mark.parametrize("sep", SPACES + DASHES)
def test_card_numbers_with_unicode_separators_are_found(sep: str) -> None:
    text = f"my card is {grouped(CARD, sep)}, thanks"
    found = SCANNER.scan(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [("card", grouped(CARD, sep))]


def test_phone_numbers_with_unicode_separators_are_found() -> None:
    for text in [
        "+1\u00a0415\u00a0555\u00a00132",
        "(415)\u00a0555\u20110132",
        "＋８１ ９０－１２３４－５６７８",
    ]:
        assert phones(f"tel {text}.") == [text]


def test_a_tab_is_not_read_as_a_space() -> None:
    # Columns of numbers in a table are no card number.
    assert SCANNER.scan(grouped(CARD, "\t")) == []


def test_numbers_in_prose_with_thin_spaces_stay() -> None:
    assert SCANNER.scan("price 1\u202f234\u202f567 EUR") == []


def label(finding: Finding, matched: str) -> str:
    return f"[{finding.kind}]"


@settings(max_examples=60, deadline=None)
@given(
    sep=st.sampled_from(SPACES + DASHES),
    cut=st.integers(min_value=0, max_value=40),
    before=st.text(alphabet="abc .,", max_size=10),
)
def test_streams_find_them_split_anywhere(sep: str, cut: int, before: str) -> None:
    text = f"{before} {grouped(CARD, sep)} end"
    cut = min(cut, len(text))
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    out = redactor.feed(text[:cut]) + redactor.feed(text[cut:]) + redactor.finish()
    assert "[card]" in out
    assert "4111" not in out


@pytest.mark.parametrize(
    "text",
    [
        "order no. 415-555-0132",
        "PO #415-555-0132",
        "ticket number: 415-555-0132",
        "Customer # 415-555-0132",
    ],
)
def test_a_grouped_number_introduced_as_an_id_number_is_not_a_phone(text: str) -> None:
    assert phones(text) == []


@pytest.mark.parametrize(
    "text", ["ticket (11) 2373-7919", "call 415-555-0132", "order questions? 415-555-0132"]
)
def test_an_id_word_without_a_number_marker_does_not_hide_a_phone(text: str) -> None:
    assert len(phones(text)) == 1


@pytest.mark.parametrize("sep", SPACES + DASHES)
def test_structured_redaction_masks_them(sep: str) -> None:
    # The redactor's prefilter lets such values through to the detectors.
    out = Redactor().redact({"notes": f"card {grouped(CARD, sep)}"})
    assert out == {"notes": "card " + grouped("*" * 12 + "1111", sep)}


@pytest.mark.parametrize(
    "text",
    [
        "Winning numbers: 5 12 23 34 45",  # French phone groups, no trunk 0: a row of numbers
        "Seats 4 12 13 14 15",
        "Room 101, 2 12 34 56 78 guests",
        "Prix 13\u202f108\u202f383 €",  # thin spaces group amounts, not phone numbers
        "Montant : 120\u202f363\u202f837,00 €",
        "Total 1\u2009234\u2009567\u2009890",
    ],
)
def test_rows_of_numbers_and_amounts_are_not_phone_numbers(text: str) -> None:
    assert phones(text) == []


def test_a_card_number_may_be_printed_with_thin_spaces() -> None:
    text = grouped(CARD, "\u202f")
    assert [f.kind for f in SCANNER.scan(text)] == ["card"]


@pytest.mark.parametrize("invisible", ["\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_invisible_characters_between_groups_do_not_hide_a_card_number(invisible: str) -> None:
    out = Redactor().redact({"note": grouped(CARD, invisible)})
    assert out == {"note": grouped("*" * 12 + "1111", invisible)}


def test_french_phone_numbers_with_no_break_spaces_are_found() -> None:
    number = "06\u00a012\u00a034\u00a056\u00a078"
    assert phones(f"tel {number}") == [number]


def test_a_trunk_prefix_alone_before_an_ungrouped_number_is_read_without_error() -> None:
    # The only break follows the trunk prefix: nothing is left to judge (found by
    # hypothesis: "0 51000000" raised IndexError).
    for text in ["//0 5100000000000008 ", "0 51000000", "tel 0 301234567"]:
        SCANNER.scan(text)
    assert phones("tel 030 1234567") == ["030 1234567"]
