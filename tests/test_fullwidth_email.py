"""The e-mail mask keeps the at-sign as written: "@", the fullwidth "＠" or the small "﹫".

Detection finds addresses with any of the three, so the mask operator must not fall
back to the fixed mask for two of them, in structured and in free-text redaction alike.
"""

from __future__ import annotations

import pytest

from privguard import Categories, Redactor
from privguard._operators import mask_email
from privguard._streams import TextStreamRedactor

GENERIC = "********"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("jane＠example.com", "j***＠example.com"),
        ("jane﹫example.com", "j***﹫example.com"),
        ("jane＠example．com", "j***＠example．com"),
        ("ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ｊ***＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ],
)
def test_structured_mask_keeps_the_at_sign_as_written(
    redactor: Redactor, value: str, masked: str
) -> None:
    assert redactor.redact({"email": value}) == {"email": masked}
    assert redactor.redact({"email": value}, audience="organizer") == {"email": masked}
    assert redactor.apply(Categories.EMAIL, value) == masked


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("mail jane@example.com now", "mail j***@example.com now"),
        ("mail jane＠example.com now", "mail j***＠example.com now"),
        ("mail jane﹫example.com now", "mail j***﹫example.com now"),
        ("メール: jane＠example．comまで", "メール: j***＠example．comまで"),
        ("mail jane@example。co。uk now", "mail j***@example。co。uk now"),
    ],
)
def test_free_text_mask_keeps_the_at_sign_as_written(
    redactor: Redactor, text: str, redacted: str
) -> None:
    assert redactor.redact_text(text) == redacted
    assert redactor.redact_text(text, audience="organizer") == redacted
    # a string value found by the free-text scan in structured data
    assert redactor.redact({"notes": text}) == {"notes": redacted}


def test_the_last_at_sign_of_any_kind_is_the_one_kept() -> None:
    assert mask_email("a@example.com＠x.org") == "a***＠x.org"
    assert mask_email("a＠example.com@x.org") == "a***@x.org"
    assert mask_email("a﹫b＠c@d.org") == "a***@d.org"


@pytest.mark.parametrize(
    "value", ["jane", "jane.example.com", "", "@example.com", "＠example.com", "﹫x.org"]
)
def test_no_at_sign_or_no_local_part_gets_the_fixed_mask(redactor: Redactor, value: str) -> None:
    assert mask_email(value) == GENERIC
    assert redactor.apply(Categories.EMAIL, value) == GENERIC


def test_a_value_without_an_at_sign_under_an_email_key_gets_the_fixed_mask(
    redactor: Redactor,
) -> None:
    assert redactor.redact({"email": "not an address"}) == {"email": GENERIC}


WIDE_FORMS = [("＠", "．"), ("﹫", "。"), ("@", "｡"), ("＠", ".")]


@pytest.mark.parametrize(("at", "dot"), WIDE_FORMS)
def test_long_domains_are_found_whole_with_any_at_sign_and_dot(at: str, dot: str) -> None:
    """Ten labels were the most a domain had: the rest of a longer one stayed in the
    clear after the label operator's "[user.contact.email]"."""
    domain = dot.join(["sub"] * 40 + ["example", "com"])
    text = f"mail jane{at}{domain} now"
    labelled = Redactor(operators={Categories.EMAIL: "label"})
    assert labelled.redact_text(text) == "mail [user.contact.email] now"
    assert labelled.redact({"notes": text}) == {"notes": "mail [user.contact.email] now"}
    assert Redactor().redact_text(text) == f"mail j***{at}{domain} now"


@pytest.mark.parametrize(("at", "dot"), WIDE_FORMS)
@pytest.mark.parametrize("audience", [None, "organizer", "payment_processor"])
def test_a_whole_address_past_the_stream_lookbehind_keeps_its_at_sign_and_domain(
    redactor: Redactor, at: str, dot: str, audience: str | None
) -> None:
    """An address longer than the stream's look-behind, complete in one chunk, is masked
    as an address (it was masked as an IBAN, which a payment processor reads in the
    clear), and the space after it stays."""
    domain = dot.join(["x" * 50, "y" * 50, "example", "com"])
    assert redactor.scanner is not None
    aud = None if audience is None else redactor.taxonomy.recipient_kind(audience)
    stream = TextStreamRedactor(redactor.scanner, redactor.text_replacer(aud), lookbehind=96)
    out = stream.feed(f"hi jane.doe{at}{domain} ") + stream.feed("bye") + stream.finish()
    assert out == f"hi j***{at}{domain} bye"
