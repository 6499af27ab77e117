"""Free-text detectors: every case of shared/cases/detection.md, plus decoys from event
platform text and true positives in context."""

from __future__ import annotations

import itertools
import random
import sys

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat

from privguard import Categories, PolicyError, Redactor
from privguard._detection import (
    _GROUP_PLANS,
    _PHONE_FORMS,
    _RUN_PLANS,
    _STRETCH_RUNS,
    DEFAULT_PHONE_REGIONS,
    DEFAULT_SCANNER,
    KINDS,
    Finding,
    TextScanner,
    _RegionRule,
    luhn_valid,
)
from privguard._streams import TextStreamRedactor

SCANNER = DEFAULT_SCANNER


def found(text: str, scanner: TextScanner = SCANNER) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in scanner.scan(text)]


def label(finding: Finding, matched: str) -> str:
    return f"[{finding.kind.upper()}]"


# --- detection.md: should be detected -----------------------------------------------------

CARD_ROWS = [
    "4111111111111111",  # 1
    "4012888888881881",  # 2
    "4012-8888-8888-1881",  # 3
    "4012 8888 8888 1881",  # 4
    "4242424242424242",  # 5
    "4000056655665556",  # 6
    "4917300800000000",  # 7
    "4484070000000000",  # 8
    "4539 1488 0343 6467",  # 9
    "4917610000000000003",  # 10 Visa 19
    "5555555555554444",  # 11
    "5105105105105100",  # 12
    "5105 1051 0510 5100",  # 13
    "5200828282828210",  # 14
    "2223003122003222",  # 15 Mastercard 2-series
    "2367 8901 2345 6789",  # 16
    "378282246310005",  # 17 Amex
    "371449635398431",  # 18
    "378734493671000",  # 19
    "3782 822463 10005",  # 20 Amex 4-6-5
    "3714 496353 98431",  # 21
    "6011111111111117",  # 22 Discover
    "6011000990139424",  # 23
    "6011000400000000",  # 24
    "6011-5776-3171-1174",  # 25
    "3530111333300000",  # 26 JCB
    "3566002020360505",  # 27
    "3528000700000000",  # 28
    "30569309025904",  # 29 Diners 14
    "38520000023237",  # 30
    "36227206271667",  # 31
    "3056930009020004",  # 32 Diners 16
    "6200000000000005",  # 33 UnionPay
    "6200000000000047",  # 34
    "6205500000000000004",  # 35 UnionPay 19
    "6759649826438453",  # 36 Maestro UK
    "5019717010103742",  # 37 Dankort
    "5078601870000127985",  # 38 Aura 19
    "4109 9069 5848 3040 118",  # 39 Visa 19, 4-4-4-4-3
    "6555900000604105",  # 40 BC card / DinaCard
    "122000000000003",  # 41 UATP (in scope, see docs/detectors.md)
]


@pytest.mark.parametrize("number", CARD_ROWS)
def test_detection_md_cards_are_found_whole(number: str) -> None:
    assert SCANNER.scan(number) == [Finding("card", Categories.CARD, 0, len(number))]


@pytest.mark.parametrize("number", CARD_ROWS)
@pytest.mark.parametrize("before,after", [("my card is ", ", exp 12/27"), ("(", ")"), ("'", "'")])
def test_detection_md_cards_in_context(number: str, before: str, after: str) -> None:
    assert found(before + number + after) == [("card", number)]


def test_rows_2_to_4_in_one_string_give_three_findings() -> None:
    text = "4012888888881881 4012-8888-8888-1881 4012 8888 8888 1881"
    assert found(text) == [
        ("card", "4012888888881881"),
        ("card", "4012-8888-8888-1881"),
        ("card", "4012 8888 8888 1881"),
    ]


def test_row_25_gives_exactly_one_result() -> None:
    assert len(SCANNER.scan("6011-5776-3171-1174")) == 1


def test_row_41_uatp_span() -> None:
    [finding] = SCANNER.scan("my credit card: 122000000000003")
    assert (finding.start, finding.end) == (16, 31)


# --- detection.md: should NOT be detected -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4012-8888-8888-1882",  # N1
        "my credit card number is 4012-8888-8888-1882",  # N2
        "36168002586008",  # N3
        "4242424242424241",  # N4
        '{"time_processed":"1647725122146"}',  # N7
        '"150428427078522"',  # N11
        "4539 1488 0343 6",  # N12
        "4539148803436",  # N13
        "4539148803436467234",  # N13
        "2720 1051 0510 5100",  # N14
        "3487 344936 71000",  # N15
        "371",  # N16
        "37810005",  # N17
        "Order number 123456789 shipped.",  # N18
    ],
)
def test_detection_md_lookalikes_are_not_found(text: str) -> None:
    assert SCANNER.scan(text) == []


# --- detection.md appendix: contact fields ------------------------------------------------


@pytest.mark.parametrize(
    "text,address",
    [
        ("info@presidio.site", "info@presidio.site"),
        ("my email address is info@presidio.site", "info@presidio.site"),
        ("user@xn--80ak6aa92e.com", "user@xn--80ak6aa92e.com"),
        ("a@xn--d1acufc.xn--p1ai", "a@xn--d1acufc.xn--p1ai"),
        ("Contact jane.doe@example.com", "jane.doe@example.com"),
    ],
)
def test_appendix_emails(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize("text", ["my email is info@presidio.", "hello-world here"])
def test_appendix_not_emails(text: str) -> None:
    assert SCANNER.scan(text) == []


@pytest.mark.parametrize(
    "number",
    [
        "(415) 555-0132",
        "+1 415 555 0132",
        "(415)555-0132",
        "415-555-0132",
        "09-7625400",
        "+55 11 98456 5666",
        "090-1234-5678",
        "13812345678",
    ],
)
def test_appendix_phones(number: str) -> None:
    assert found(number) == [("phone", number)]
    assert found(f"call me on {number} tomorrow") == [("phone", number)]


@pytest.mark.parametrize(
    "text",
    [
        "110bcd25-a55d-453a-8046-1297901ea002",
        "05.10.1986",
        "03.07 - 17.07.15",
        "OMB No. 1545-0008",
        "0190074442",
        "106.0512973",
        "1700000000",
        "1732623122",
        "ts 1647725122",
    ],
)
def test_appendix_not_phones(text: str) -> None:
    assert SCANNER.scan(text) == []


# --- cards: more --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,card",
    [
        ("my card is 4111 1111 1111 1111, exp 12/27", "4111 1111 1111 1111"),
        ("card:4111-1111-1111-1111.", "4111-1111-1111-1111"),
        ("pay with 5555 5555 5555 4444 cvc 123", "5555 5555 5555 4444"),
        ("amex 3782 822463 10005 thanks", "3782 822463 10005"),
        ("4111111111111111,4012888888881881", "4111111111111111"),
        ("order_4111111111111111", "4111111111111111"),
        ("visa 4222222222222 (13 digits)", "4222222222222"),
        ("row 12 4111 1111 1111 1111", "4111 1111 1111 1111"),
        ("４１１１１１１１１１１１１１１１", "４１１１１１１１１１１１１１１１"),
    ],
)
def test_cards_in_context(text: str, card: str) -> None:
    assert found(text)[0] == ("card", card)


@pytest.mark.parametrize(
    "text",
    [
        "id a4111111111111111",  # glued to letters: part of a longer token
        "x41111111111111110",  # 17 digits starting in a word
        "94111111111111111",  # a longer digit run
        "3.4111111111111111",  # a decimal
        "4111111111111111.5",
        "0x4111111111111111",  # hex
        "+4111111111111111",  # a phone number's "+"
        "4111 1111 1111 111",  # 15 digits: no Visa length
        "4111 11111 111 1111",  # no printed layout
        "4111  1111  1111  1111",  # double spaces
        "4111.1111.1111.1111",  # dots are not a card separator
        "v4111-1111-1111-1111x",
    ],
)
def test_card_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "card"] == []


def test_card_finding_is_categorised() -> None:
    [finding] = SCANNER.scan("4111111111111111")
    assert finding.kind == "card"
    assert finding.category == Categories.CARD == "user.financial.credit_card"


# --- decoys typical of event-platform text ------------------------------------------------

DECOYS = [
    "order #48213977 confirmed",
    "Order 2026-11-0042 shipped",
    "ticket 73920184, seat 14",
    "booking ref X7719253",
    "invoice INV-2026-000183",
    "created 2026-11-26T14:03:55Z",
    "created 2026-11-26T14:03:55.123+01:00",
    "at 2026-11-26 14:03:55",
    '{"ts": 1764165835123}',
    "epoch 1764165835",
    "epoch ms 1764165835123",
    "id 3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c",
    "request 550e8400-e29b-41d4-a716-446655440000",
    "upgrade to 2.31.0 or 10.4.12-rc.1",
    "ISBN 978-3-16-148410-0",
    "ISBN 9783161484100",
    "only €1,299.00 or $ 2 499,50",
    "12 500 000 visitors in 2026",
    "from 192.168.100.200 and 10.0.0.1",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "hex 0x7ffee4b2c3a0 and deadbeef00112233",
    "on 26.11.2026, 11/26/2026, 26/11/2026, 2026/11/26, 26-11-2026",
    "from 03.07 - 17.07.15",
    "build 10.0.19045.2965",
    "at 48.8566140 2.3522219",
    "room 204, seat 17, hall 3",
    "session 14:00-15:30 in room B12",
    "Order number 123456789 shipped.",
    "tracking number 1Z999AA10123456784",
    "UPC 036000291452",
    "EAN 4006381333931",
    "sentry event 150428427078522",
    "version 4.111.1111",
    "call @anna thanks",
    "image logo@2x.png and icon@3x.svg",
    "npm i lodash@4.17.21",
]


@pytest.mark.parametrize("text", DECOYS)
def test_decoys_are_not_personal_data(text: str) -> None:
    assert SCANNER.scan(text) == []


# --- e-mail: more -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,address",
    [
        (
            "mail me at jane.o'brien+events@sub.example.co.uk.",
            "jane.o'brien+events@sub.example.co.uk",
        ),
        ("<jane_doe@example.com>", "jane_doe@example.com"),
        ("'jane@example.com'", "jane@example.com"),
        ('"jane@example.com"', "jane@example.com"),
        ("mailto:jane@example.com?subject=hi", "jane@example.com"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("josé@bücher.de", "josé@bücher.de"),
        ("jane@example.com-x", "jane@example.com"),
        ("jane@EXAMPLE.COM", "jane@EXAMPLE.COM"),
        ("first.last@xn--bcher-kva.de", "first.last@xn--bcher-kva.de"),
        ("..jane@example.com", "jane@example.com"),
    ],
)
def test_emails_in_context(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize(
    "text",
    ["@anna see you", "me @ 5pm", "jane@localhost", "a@b.c", "user@192.168.0.1", "x@ y.com"],
)
def test_email_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "email"] == []


def test_local_part_is_bounded_to_64_characters() -> None:
    local = "a" * 100
    [finding] = SCANNER.scan(f"{local}@example.com")
    assert finding.start == 36  # the last 64 characters before "@"


# Domains up to DNS's limits: labels of up to 63 characters, 253 characters in all. The
# pattern allowed ten labels and a top-level domain, so a longer domain was found only
# up to its eleventh label, and the rest of it stayed in the clear after the finding.
LONG_DOMAINS = [
    "sub." * 40 + "example.com",
    ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "com"]),  # 253 characters
    "1." * 20 + "example.com",
    "mail.eu-west-1.customer-relations.northern-region.internal.corp.example.co.uk",
    # longer than DNS allows: still found whole, as cutting it at 253 characters would
    # leave its end in the clear and rejecting it the local part
    "sub." * 100 + "example.com",
]


@pytest.mark.parametrize("domain", LONG_DOMAINS)
def test_long_domains_are_found_whole(domain: str) -> None:
    text = f"mail jane.doe@{domain} now"
    assert found(text) == [("email", f"jane.doe@{domain}")]
    assert SCANNER.redact(text, label) == "mail [EMAIL] now"
    redactor = Redactor(operators={Categories.EMAIL: "label"})
    assert redactor.redact({"notes": text}) == {"notes": "mail [user.contact.email] now"}
    assert redactor.redact_text(text) == "mail [user.contact.email] now"


@pytest.mark.parametrize("domain", LONG_DOMAINS)
def test_long_domains_are_found_whole_in_streams(domain: str) -> None:
    """With a look-behind the address fits in, any chunking finds it whole (a shorter
    one fails closed: tests/test_streams.py)."""
    text = f"mail jane.doe@{domain}. Thanks"
    expected = "mail [EMAIL]. Thanks"
    assert SCANNER.redact(text, label) == expected
    for cut in range(0, len(text) + 1, 7):
        redactor = TextStreamRedactor(SCANNER, label, lookbehind=len(text) + 64)
        out = redactor.feed(text[:cut]) + redactor.feed(text[cut:]) + redactor.finish()
        assert out == expected, cut


@pytest.mark.parametrize(
    "text",
    [
        "a@" + "x" * 64 + ".com",  # a label longer than 63 characters
        "a@" + "x" * 30 + "-.example.com",  # a label ending in a hyphen
        "a@" + "x" * 30 + "_.example.com",
        "a@" + "1." * 40 + "2",  # no top-level domain
        "a@" + "sub." * 40 + "png",  # a file extension
    ],
)
def test_long_domain_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "email"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a top-level domain needs two letters: every label is tried as one, in turn
        ("a@" + "a." * 5000 + "!", []),
        ("a@" + "1a." * 5000 + "!", []),
        # no dot: a label longer than 63 characters never matches
        ("a@" + "a-" * 5000, []),
        ("a@" + "a" * 10000, []),
        ("a@" + "ab." * 5000 + "!", [("email", "a@" + "ab." * 4999 + "ab")]),
        ("x＠" + "a．" * 5000 + "!", []),
        ("x＠" + "ab．" * 5000 + "!", [("email", "x＠" + "ab．" * 4999 + "ab")]),
        # many at-signs: each domain ends at the next one
        (("a@" + "1." * 60) * 200, []),
        ((" a@b" + ".c-d" * 60) * 200, []),
    ],
)
def test_pathological_domains_take_linear_work(text: str, expected: list[tuple[str, str]]) -> None:
    """Inputs that make a backtracking domain pattern try every way to split the text
    into labels: each label is matched whole or not at all (possessively), so a failed
    match costs one try of a top-level domain per label, and these finish at once. A
    pattern that backtracked into labels would not finish on them."""
    assert found(text) == expected


# --- e-mail: fullwidth and small at-signs, wide dots ---------------------------------------

WIDE_ADDRESSES = [
    "jane＠example.com",  # fullwidth at, U+FF20
    "jane﹫example.com",  # small at, U+FE6B
    "jane.doe+events＠sub.example.co.uk",
    "josé﹫bücher.de",
    "user＠xn--80ak6aa92e.com",
    "jane＠example．com",  # fullwidth full stop, U+FF0E
    "jane＠example。com",  # ideographic full stop, U+3002
    "jane@example。com",  # the input-method artefact: "@" typed, "." turned into "。"
    "jane﹫mail｡example｡org",  # halfwidth ideographic full stop, U+FF61
    "用户＠例子。cn",
    "jane＠example．xn--p1ai",
    "ｊａｎｅ．ｄｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # typed in fullwidth mode
    "ｊａｎｅ＋ｘ＠ｅｘ－ａｍｐｌｅ．ｃｏｍ",
]


# A top-level domain in CJK runs on into CJK text after it, as with "@": tested alone.
@pytest.mark.parametrize("address", [*WIDE_ADDRESSES, "用户＠例子.广告", "ユーザー﹫例え.テスト"])
def test_wide_at_signs_and_dots_are_found(address: str) -> None:
    assert found(address) == [("email", address)]


@pytest.mark.parametrize("address", WIDE_ADDRESSES)
@pytest.mark.parametrize(
    "before,after",
    [
        ("mail me at ", " please"),
        ("请联系", "，谢谢"),
        ("メールは", "までお願いします"),
        ("<", ">"),
        ("(", ")."),
        ("", " ok"),
        ("hi ", ""),
    ],
)
def test_wide_addresses_in_text_keep_the_text_around_them(
    address: str, before: str, after: str
) -> None:
    text = before + address + after
    # "请联系" and "メールは" are letters: glued on, they join the local part, as before "@".
    glued = before if before[-1:].isalnum() else ""
    assert found(text) == [("email", glued + address)]
    assert SCANNER.redact(text, label) == before[: len(before) - len(glued)] + "[EMAIL]" + after


@pytest.mark.parametrize(
    "text,addresses",
    [
        (
            "jane@example.com, bob＠example.org and 李﹫例子.中国",
            ["jane@example.com", "bob＠example.org", "李﹫例子.中国"],
        ),
        ("a＠example．com;b@example。com", ["a＠example．com", "b@example。com"]),
        # glued on, it extends the address as with "@"
        ("a＠example.comfoo﹫bar.com", ["a＠example.comfoo﹫bar.com"]),
        # one kind of wide dot throughout: where the dots change, the address ends
        ("x＠mail.example。com", ["x＠mail.example"]),
        ("x＠example．co｡uk", ["x＠example．co"]),
        # a sentence goes on after the address
        ("写信给jane＠example。com。谢谢", ["写信给jane＠example。com"]),
        ("mail jane@example.com。Thanks", ["jane@example.com"]),
        ("mail jane＠example.com．Thanks", ["jane＠example.com"]),
        ("ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍまで", ["ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"]),
        # a Latin top-level domain ends where kana, CJK or Hangul begin, after "@" too
        ("メールはjane@example.comまで", ["メールはjane@example.com"]),
        ("jane@example.co.kr로 보내세요", ["jane@example.co.kr"]),
        ("用户@例子.广告 ok", ["用户@例子.广告"]),
        # leading dots and quotes, either width, are not part of the address
        ("．＇jane＠example．com", ["jane＠example．com"]),
    ],
)
def test_mixed_at_signs_and_dots(text: str, addresses: list[str]) -> None:
    assert found(text) == [("email", a) for a in addresses]


@pytest.mark.parametrize(
    "text",
    [
        "＠jane see you",  # a mention without a local part
        "ping ＠jane",
        "cc ﹫jane, thanks",
        "meet＠ 10am",
        "lunch ＠ 12:30",
        "jane＠localhost",
        "jane＠example．",
        "info＠presidio。",
        "x＠ y．com",
        "logo＠2x．png",
        "logo＠2x．ｐｎｇ",
        "lodash＠4．17．21",
        "请联系＠李明。他会回复",  # a mention, then a sentence: "。" ends it
        "用户＠例子。中国",  # so no CJK top-level domain after a wide dot
        "田中＠営業部．よろしく",
        "＠＠＠",
        "a＠．com",
    ],
)
def test_wide_at_sign_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "email"] == []


def test_wide_local_part_is_bounded_to_64_characters() -> None:
    [finding] = SCANNER.scan("ａ" * 100 + "＠example.com")
    assert finding.start == 36


@pytest.mark.parametrize(
    "text",
    [
        "Contact jane.doe＠example.com now",
        "Contact jane.doe﹫example．com now",
        "请联系jane＠example。com，谢谢",
        "ｊａｎｅ．ｄｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "a@example.com b＠example.org c﹫example｡net",
        "请联系＠李明。他会回复",
    ],
)
def test_wide_addresses_split_across_stream_chunks(text: str) -> None:
    expected = SCANNER.redact(text, label)
    for cut in range(len(text) + 1):
        redactor = TextStreamRedactor(SCANNER, label)
        first = redactor.feed(text[:cut])
        assert redactor.feed(text[cut:]) + redactor.finish() == expected[len(first) :]
        assert expected.startswith(first)
    one_at_a_time = TextStreamRedactor(SCANNER, label)
    out = "".join(one_at_a_time.feed(c) for c in text) + one_at_a_time.finish()
    assert out == expected


@pytest.mark.parametrize("at", ["＠", "﹫"])
def test_a_wide_at_sign_at_the_end_of_a_chunk_holds_the_address(at: str) -> None:
    redactor = TextStreamRedactor(SCANNER, label)
    out = ""
    for piece in ("x " * 70, "mail jane", at, "example", "．", "co", "m"):
        out += redactor.feed(piece)
        assert "jane" not in out
    out += redactor.feed(" thanks") + redactor.finish()
    assert out == "x " * 70 + "mail [EMAIL] thanks"


# --- phones: more -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "+44 20 7946 0958",
        "020 7946 0958",
        "+49 (0)30 12345678",
        "030 12345678",
        "+1 (415) 555-0132",
        "1-800-555-0199",
        "1 415 555 0132",
        "415.555.0132",
        "06 12 34 56 78",
        "01.23.45.67.89",
        "+33 6 12 34 56 78",
        "0049 30 1234567",
        "+14155550132",
        "+972-3-123-4567",
        "+91 98765 43210",
        "98765 43210",
        "+61 2 9876 5432",
        "+34 612 34 56 78",
        "4155550132",
        "0612345678",
    ],
)
def test_phones(number: str) -> None:
    assert found(f"tel: {number}.") == [("phone", number)]


@pytest.mark.parametrize(
    "text",
    [
        "order #4155550132",
        "ticket no. 4155550132",
        "ts=1677834945",
        "2026-11-26",
        "20261126",
        "1 2 3 4 5 6 7 8",
        "555-0132",
        "12345678",
        "2720 1051 0510 5100",
        "192.168.100.200",
        "v10.0.19045.2965",
        "4000-4423",
        "+0 123 456 7890",
        "+999 123 456 7890",
    ],
)
def test_phone_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "phone"] == []


def test_phone_after_a_date_is_found() -> None:
    text = "2026-11-26 415-555-0132"
    assert found(text) == [("phone", "415-555-0132")]


def test_phone_regions_decide_national_numbers() -> None:
    us_only = TextScanner(["phone"], phone_regions=["US"])
    assert found("(415) 555-0132", us_only) == [("phone", "(415) 555-0132")]
    assert found("090-1234-5678", us_only) == []  # Japanese, written the Japanese way
    assert found("+81 90-1234-5678", us_only) == [("phone", "+81 90-1234-5678")]


def test_phone_validation_agrees_with_phonenumbers() -> None:
    """The metadata-based check gives phonenumbers' answer: valid in the region and
    written as the national format writes it (optionally with the national prefix)."""
    rng = random.Random(7)
    regions = DEFAULT_PHONE_REGIONS
    rules = {r: _RegionRule(r) for r in regions}
    samples = []
    for region in regions:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            assert example is not None
            nsn = str(example.national_number)
            for _ in range(25):
                digits = nsn[:3] + "".join(rng.choice("0123456789") for _ in nsn[3:])
                number = phonenumbers.parse(f"+{example.country_code}{digits}", None)
                national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
                samples.append("".join(c for c in national if c.isdigit()))
    for _ in range(1500):
        samples.append(
            rng.choice(["0", "1", ""])
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 12)))
        )
    agree = total = 0
    for digits in samples:
        for region in regions:
            total += 1
            agree += (rules[region].home_number_type(digits) is not None) == _reference(
                digits, region
            )
    assert agree / total > 0.995


def _reference(digits: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    national = "".join(c for c in national if c.isdigit())
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    if len(digits) < 9 and metadata.national_prefix and digits == national:
        return False  # privguard's own rule: short numbers need their trunk prefix
    return digits in (national, (metadata.national_prefix or "") + national)


# --- IBAN ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "NL91ABNA0417164300",
        "FR14 2004 1010 0505 0001 3M02 606",
        "fr14 2004 1010 0505 0001 3m02 606",
        "BE68 5390 0754 7034",
        "NO93 8601 1117 947",
        "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
        "CH93 0076 2011 6238 5295 7",
    ],
)
def test_ibans(iban: str) -> None:
    assert found(f"IBAN: {iban}, thanks") == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # checksum
        "DE89 3704 0044 0532 0130",  # too short for DE
        "DE89370400440532013000123",  # too long, one token
        "XX89370400440532013000",  # no such country
        "ABDE89370400440532013000",  # glued to letters
        "GB82 WEST 1234 5698 7654 33",
    ],
)
def test_iban_lookalikes(text: str) -> None:
    assert [k for k, _ in found(text) if k == "iban"] == []


# --- API ----------------------------------------------------------------------------------


def test_finding_repr_holds_no_personal_value() -> None:
    [finding] = SCANNER.scan("4111111111111111")
    assert "4111" not in repr(finding)
    assert repr(finding) == (
        "Finding(kind='card', category='user.financial.credit_card', start=0, end=16)"
    )


def test_findings_are_sorted_and_do_not_overlap() -> None:
    text = (
        "jane@example.com 4111 1111 1111 1111 +1 415 555 0132 DE89 3704 0044 0532 0130 00 "
        "4155550132@vtext.com"
    )
    findings = SCANNER.scan(text)
    assert [f.kind for f in findings] == ["email", "card", "phone", "iban", "email"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_redact_calls_replace_with_finding_and_text() -> None:
    seen: list[tuple[str, str]] = []

    def replace(finding: Finding, matched: str) -> str:
        seen.append((finding.kind, matched))
        return f"<{finding.category}>"

    out = SCANNER.redact("card 4111111111111111 or jane@example.com.", replace)
    assert out == "card <user.financial.credit_card> or <user.contact.email>."
    assert seen == [("card", "4111111111111111"), ("email", "jane@example.com")]


def test_redact_without_findings_returns_the_text() -> None:
    text = "nothing personal here, room 12 at 10:30"
    assert SCANNER.redact(text, label) is text


@pytest.mark.parametrize(
    "text,expected",
    [
        ("hello", False),
        ("a@b.com", True),
        ("4111111111111111", True),
        ("call 415-555-0132", True),
        ("DE89370400440532013000", True),
        ("order 123456789", False),
    ],
)
def test_contains(text: str, expected: bool) -> None:
    assert SCANNER.contains(text) is expected


def test_kinds_select_detectors() -> None:
    text = "jane@example.com 4111111111111111 +1 415 555 0132 DE89370400440532013000"
    for kind in KINDS:
        assert [f.kind for f in TextScanner([kind]).scan(text)] == [kind]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kinds": ["card", "ssn"]},
        {"kinds": "card"},
        {"phone_regions": ["XX"]},
        {"phone_regions": []},
    ],
)
def test_bad_configuration_is_a_policy_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        TextScanner(**kwargs)  # type: ignore[arg-type]


def test_phone_regions_may_be_empty_without_phone_detection() -> None:
    assert TextScanner(["card"], phone_regions=[]).scan("4111111111111111")


def test_scanner_repr() -> None:
    assert repr(TextScanner(["email", "card"], phone_regions=["us"])) == (
        "TextScanner(kinds=(card, email), phone_regions=('US',))"
    )


@pytest.mark.parametrize(
    "digits,expected",
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("0", False),
        ("", False),
        ("4111-1111", False),
        ("４１１１１１１１１１１１１１１１", False),
    ],
)
def test_luhn_valid(digits: str, expected: bool) -> None:
    assert luhn_valid(digits) is expected


# --- work grows linearly with the text --------------------------------------------------
# A long run of digit groups (a table of numbers) once cost a whole-run plan worked out
# group by group at tens of microseconds each; the scanner runs on response bodies and
# streams, so its work must stay linear in the text with a small constant. Speed is
# measured in benchmarks/bench_detection.py; these tests count work instead of timing it.

TABLES = {
    "4-digit groups": ((4,), (" ",)),
    "2-digit groups": ((2,), (" ",)),
    "single digits": ((1,), (" ",)),
    "spaces and hyphens": ((1, 2, 3, 4), (" ", "-")),
    "mixed separators": ((1, 2, 3, 4, 6), (" ", " ", "-", ".", "/", " (", ") ")),
}


def number_table(groups: int, sizes: tuple[int, ...], seps: tuple[str, ...]) -> str:
    rng = random.Random(20261126)
    parts = ["totals: "]
    for _ in range(groups):
        parts.append("".join(rng.choice("0123456789") for _ in range(rng.choice(sizes))))
        parts.append(rng.choice(seps))
    parts[-1] = " end"
    return "".join(parts)


def scan_work(text: str) -> int:
    """Python and C function calls one scan of ``text`` makes with cold caches: a
    deterministic measure of the work, unlike a clock."""
    for cache in (_GROUP_PLANS, _RUN_PLANS, _STRETCH_RUNS, _PHONE_FORMS):
        cache.clear()
    scanner = TextScanner()
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += 1

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        scanner.scan(text)
    finally:
        sys.setprofile(previous)
    return calls


@pytest.mark.parametrize("layout", TABLES)
def test_work_on_a_table_of_numbers_grows_linearly(layout: str) -> None:
    sizes, seps = TABLES[layout]
    small, big = number_table(150, sizes, seps), number_table(600, sizes, seps)
    TextScanner().scan(big)  # phone metadata is read on first use
    small_work, big_work = scan_work(small), scan_work(big)
    # four times the groups, at most about four times the work
    assert big_work <= 4.4 * small_work + 1000
    # and a small constant (the whole-run plans took 70-250 calls a character here)
    assert big_work <= 40 * len(big)


# --- whole values that are identifiers or timestamps -------------------------------------
IDENTIFIERS = [
    "3f2b8c1e-9d4a-4e6b-8a7c-1d2e3f4a5b6c",
    "3F2B8C1E-9D4A-4E6B-8A7C-1D2E3F4A5B6C",
    "00000000-0000-4000-8000-41411111111a",  # a UUID's digits are the UUID's
    "2026-11-26",
    "2026-11-26T10:00:00Z",
    "2026-11-26 10:00:00",
    "2026-11-26T10:00:00.123456+01:00",
    "2026-11-26t23:59:59-0530",
    "507f1f77bcf86cd799439011",  # a MongoDB ObjectId
    "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",  # SHA-256
    "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",  # SHA-1, upper case
]


@pytest.mark.parametrize("value", IDENTIFIERS)
def test_a_whole_identifier_or_timestamp_is_not_scanned(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # These fill JSON APIs; their digit runs would send each one through every detector.
    scanner = TextScanner()
    calls: list[str] = []
    monkeypatch.setattr(scanner, "_candidates", lambda text, *a, **k: calls.append(text) or [])
    assert scanner.scan(value) == []
    assert not scanner.contains(value)
    assert calls == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("de89370400440532013000", "iban"),  # lower case, unbroken: all hex digits
        ("DE89370400440532013000", "iban"),
        ("4111111111111111", "card"),
        ("4111-1111-1111-1111", "card"),
        ("2026-11-26 call +49 30 12345678", "phone"),  # a date inside text: scanned
        ("2026-11-26T10:00:00Z jane@example.com", "email"),
        ("3f2b8c1e-9d4a-4e6b-8a7c-1d2e3f4a5b6c 4111 1111 1111 1111", "card"),
    ],
)
def test_personal_data_is_never_taken_for_an_identifier(text: str, kind: str) -> None:
    assert kind in [k for k, _ in found(text)]


def test_a_hex_string_holding_a_long_digit_run_is_still_scanned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanner = TextScanner()
    calls: list[str] = []
    real = scanner._candidates
    monkeypatch.setattr(
        scanner, "_candidates", lambda text, *a, **k: calls.append(text) or real(text, *a, **k)
    )
    for value in ["abc4111111111111111cdef0123456789abcdef", "ab12cdef0123456789abcdef01"]:
        scanner.scan(value)
    assert len(calls) == 2  # 13 digits in a row; an IBAN's start at an IBAN's length
