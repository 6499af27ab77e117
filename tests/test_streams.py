"""Stream redactors: chunked text, bytes and lines."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable

import pytest

from privguard import (
    PolicyError,
    RecipientKind,
    RedactionError,
    Redactor,
    UnparseableBody,
)
from privguard._detection import DEFAULT_SCANNER, Finding, TextScanner
from privguard._streams import (
    MIN_LOOKBEHIND,
    ByteStreamRedactor,
    LineStreamRedactor,
    TextRedactor,
    TextStreamRedactor,
)


def label(finding: Finding, matched: str) -> str:
    return f"[{finding.kind.upper()}]"


def stream(chunks: list[str], **kwargs: int) -> tuple[str, list[str]]:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label, **kwargs)
    outputs = [redactor.feed(c) for c in chunks]
    outputs.append(redactor.finish())
    return "".join(outputs), outputs


def every_split(text: str) -> list[list[str]]:
    return [[text[:i], text[i:]] for i in range(len(text) + 1)]


def test_email_split_across_two_chunks_is_one_finding() -> None:
    """BerriAI/litellm#31503: the first chunk must not leak "jane."."""
    out, outputs = stream(["Contact jane.", "doe@example.com"])
    assert out == "Contact [EMAIL]"
    assert "jane" not in outputs[0]


TEXTS = [
    "Contact jane.doe@example.com now",
    "my card is 4111 1111 1111 1111, exp 12/27",
    "call +1 (415) 555-0132 or 415-555-0132 today",
    "IBAN DE89 3704 0044 0532 0130 00 please",
    "4012888888881881 4012-8888-8888-1881 4012 8888 8888 1881",
    "order #4155550132 and ticket 73920184 at 2026-11-26T14:03:55Z",
    "Amex 3782 822463 10005.",
    "用户@例子.广告 and josé@bücher.de",
]


@pytest.mark.parametrize("text", TEXTS)
def test_any_two_chunk_split_gives_the_one_shot_result(text: str) -> None:
    expected = DEFAULT_SCANNER.redact(text, label)
    for chunks in every_split(text):
        assert stream(chunks)[0] == expected, chunks


@pytest.mark.parametrize("text", TEXTS)
def test_one_character_chunks_give_the_one_shot_result(text: str) -> None:
    assert stream(list(text))[0] == DEFAULT_SCANNER.redact(text, label)


@pytest.mark.parametrize("text", TEXTS)
def test_no_released_prefix_holds_a_piece_of_personal_data(text: str) -> None:
    """Whatever was released so far must be a prefix of the final output: nothing
    released is taken back, so nothing unredacted ever went out."""
    final = DEFAULT_SCANNER.redact(text, label)
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    released = ""
    for c in text:
        released += redactor.feed(c)
        assert final.startswith(released)
    assert released + redactor.finish() == final


def test_card_digits_are_held_until_the_number_is_decided() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    assert redactor.feed("pay 4111 1111") == "pay "
    assert redactor.feed(" 1111 1111") == ""
    assert redactor.feed(" thanks") == ""  # too little new text for a scan yet
    assert redactor.feed(", see you") == "[CARD] thanks, see "  # "you" may be a local part
    assert redactor.finish() == "you"


def test_held_text_stays_within_the_lookbehind() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label, lookbehind=MIN_LOOKBEHIND)
    text = ("word " * 50 + "x" * 300 + " 1 2 3 4 5 6 7 8 9 " * 20 + "a@" + "b" * 300) * 2
    for c in text:
        redactor.feed(c)
        assert redactor.held <= MIN_LOOKBEHIND
    redactor.finish()


class CountingScanner(TextScanner):
    """Counts the characters handed to the scans a stream redactor makes."""

    read = 0

    def _candidates(self, text: str, floor: int, *, first_only: bool = False) -> list[Finding]:
        self.read += len(text)
        return super()._candidates(text, floor, first_only=first_only)

    def _hold_start(self, text: str, floor: int) -> int:
        self.read += len(text)
        return super()._hold_start(text, floor)


TABLE = " ".join(f"{n * 7919 % 10000:04d}" for n in range(4000))  # 20 KB of digit groups


@pytest.mark.parametrize("size", [1, 3, 16, 100])
@pytest.mark.parametrize("text", [TABLE, TABLE.replace("0", " "), "hello world, " * 1500])
def test_scans_read_a_bounded_multiple_of_the_text_fed(text: str, size: int) -> None:
    """Small chunks are gathered before a scan, so the context and the held tail that
    every scan rereads are not reread for each chunk: scanning a table of digit groups fed
    a character at a time read 218 characters per character fed, one scan per chunk."""
    scanner = CountingScanner()
    redactor = TextStreamRedactor(scanner, label)
    out = "".join(redactor.feed(text[i : i + size]) for i in range(0, len(text), size))
    out += redactor.finish()
    assert out == DEFAULT_SCANNER.redact(text, label)
    # A scan rereads at most twice the new text: three characters read per character
    # fed, by _candidates and by _hold_start each (a scan per chunk read 109 each).
    assert scanner.read < 2 * 3 * len(text) + 1000


def test_decided_text_waits_for_fewer_than_64_more_characters() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    text = "the quick brown fox jumps over the lazy dog. " * 40
    released = 0
    for i, c in enumerate(text, 1):
        released += len(redactor.feed(c))
        # a scan per chunk held the last word, or the last three characters (an IBAN?)
        assert i - released < 64 + len("jumps") + 3
        assert redactor.held == i - released


def test_64_new_characters_are_scanned_whatever_is_held() -> None:
    """With a long look-behind the held tail can be long; new text is still scanned once
    64 characters of it have gathered."""
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label, lookbehind=1000)
    assert redactor.feed("mail a@" + "b" * 300) == "mail "  # the domain may still grow
    assert redactor.feed(" now" * 15 + "...") == ""  # 63 characters: gathered
    assert redactor.feed(" ") == "a@" + "b" * 300 + " now" * 15 + "."
    assert redactor.held == 3  # as ever: the last three could still open an IBAN


def test_long_local_part_is_held_only_for_64_characters() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    redactor.feed("x" * 500)
    assert redactor.held == 64


def test_an_address_outgrowing_the_lookbehind_fails_closed() -> None:
    """The address is redacted as seen and the rest of its domain is dropped."""
    local = "jane.doe"
    domain = "sub." * 40 + "example.com"
    text = f"hi {local}@{domain} bye"
    out, _outputs = stream([text[:60], text[60:120], text[120:]], lookbehind=MIN_LOOKBEHIND)
    assert local not in out
    assert "example" not in out
    assert out == "hi [EMAIL] bye"


WIDE_DOT_ADDRESSES = [
    # (local part, at-sign, dot, labels): local part and domain outgrow the look-behind
    (
        "jane.doe",
        "@",
        "\u3002",
        [
            "mail",
            "customer-relations-department",
            "northern-region-office",
            "international-headquarters",
            "example",
            "co",
            "uk",
        ],
    ),
    (
        "jane.doe",
        "\uff20",
        "\uff0e",
        [
            "mail",
            "customer-relations-department",
            "northern-region-office",
            "international-headquarters",
            "example",
            "org",
        ],
    ),
    (
        "jane.doe",
        "\ufe6b",
        "\uff61",
        [
            "mail",
            "customer\uff0drelations\uff0ddepartment",
            "northern-region-office",
            "international-headquarters",
            "example\uff0dpost",
            "org",
        ],
    ),
]


@pytest.mark.parametrize(("local", "at", "dot", "labels"), WIDE_DOT_ADDRESSES)
@pytest.mark.parametrize("audience", [None, RecipientKind.ORGANIZER])
def test_an_address_with_wide_dots_outgrowing_the_lookbehind_is_dropped_whole(
    local: str, at: str, dot: str, labels: list[str], audience: RecipientKind | None
) -> None:
    """Failing closed drops the rest of the domain across IDNA dots ("。", "．", "｡") and
    fullwidth hyphens, as across "." and "-": none of it is released after the masked
    part, in any chunking."""
    domain = dot.join(labels)
    text = f"hi {local}{at}{domain} bye"
    redactor = Redactor()
    assert redactor.scanner is not None
    assert redactor.redact_text(text, audience=audience) == f"hi j***{at}{domain} bye"
    # The mask keeps the first letter, the at-sign and the domain; failing closed keeps
    # less of the domain. The whole address is never masked as a tail of another kind
    # ("********", with the " " or "b" after it).
    allowed = re.compile(rf"hi j\*\*\*{re.escape(at)}(?P<kept>\S*) bye")
    truncated = 0
    chunkings = [*every_split(text), list(text)]
    for chunks in chunkings:
        stream_redactor = TextStreamRedactor(
            redactor.scanner, redactor.text_replacer(audience), lookbehind=MIN_LOOKBEHIND
        )
        out = "".join([stream_redactor.feed(c) for c in chunks] + [stream_redactor.finish()])
        m = allowed.fullmatch(out)
        assert m is not None, (chunks, out)
        assert domain.startswith(m["kept"]), (chunks, out)
        truncated += m["kept"] != domain
    assert truncated  # some chunkings did fail closed mid-domain


# Complete addresses longer than the look-behind, followed by more text: the hold for
# what follows must not turn an address into an open tail of a guessed kind (an IBAN,
# which a payment processor may read in the clear).
LONG_ADDRESSES = [
    ("jane.doe", "x" * 50 + "." + "y" * 50 + "." + "z" * 20 + ".example.com"),
    (
        "jane.doe+orders",
        "eu-west-fallback-mailhost.customer-relations-department.northern-region-office"
        ".international-headquarters.example.co.uk",
    ),
]
AUDIENCES = [None, "organizer", "payment_processor"]


def audience_replacer(redactor: Redactor, audience: str | None) -> Callable[[Finding, str], str]:
    aud = None if audience is None else redactor.taxonomy.recipient_kind(audience)
    return redactor.text_replacer(aud)


@pytest.mark.parametrize(("local", "domain"), LONG_ADDRESSES)
@pytest.mark.parametrize("after", [" bye", ", bye", "\nbye", ". Bye", "."])
@pytest.mark.parametrize("lookbehind", [MIN_LOOKBEHIND, 128])
@pytest.mark.parametrize("audience", AUDIENCES)
def test_an_address_outgrowing_the_lookbehind_is_always_an_address(
    local: str, domain: str, after: str, lookbehind: int, audience: str | None
) -> None:
    """In every chunking an address longer than the look-behind is redacted as an e-mail
    address, for every audience (none keeps addresses in the clear): its local part never
    goes out, and the text after it is neither swallowed nor masked: failing closed
    mid-domain drops the rest of the domain, but not the full stop after it."""
    text = f"hi {local}@{domain}{after}"
    redactor = Redactor()
    assert redactor.scanner is not None
    assert redactor.redact_text(text, audience=audience) == f"hi j***@{domain}{after}"
    replace = audience_replacer(redactor, audience)
    kinds: set[str] = set()

    def recording(finding: Finding, matched: str) -> str:
        kinds.add(finding.kind)
        return replace(finding, matched)

    # The mask keeps the first letter, the at-sign and the domain; failing closed
    # mid-domain keeps less of the domain and drops the rest of it as it arrives.
    allowed = re.compile(rf"hi j\*\*\*@(?P<kept>[\w.\-]*){re.escape(after)}")
    truncated = 0
    for chunks in [*every_split(text), list(text)]:
        stream_redactor = TextStreamRedactor(redactor.scanner, recording, lookbehind=lookbehind)
        out = "".join([stream_redactor.feed(c) for c in chunks] + [stream_redactor.finish()])
        assert local not in out, (chunks, out)
        m = allowed.fullmatch(out)
        assert m is not None, (chunks, out)
        assert domain.startswith(m["kept"]), (chunks, out)
        truncated += m["kept"] != domain
    assert kinds == {"email"}
    assert truncated  # some chunkings did fail closed mid-domain


@pytest.mark.parametrize("audience", AUDIENCES)
@pytest.mark.parametrize(("tail", "rest"), [(" ", "bye"), (" b", "ye"), (", ", "bye")])
def test_an_address_complete_in_one_chunk_past_the_lookbehind_is_masked_as_one(
    audience: str | None, tail: str, rest: str
) -> None:
    """The whole address and what follows it in one chunk past the look-behind: it was
    masked as "********" labelled an IBAN, so a payment processor got it in the clear,
    and the space or letter after it went with it."""
    domain = "x" * 50 + "." + "y" * 37 + ".example.com"
    redactor = Redactor()
    assert redactor.scanner is not None
    stream_redactor = TextStreamRedactor(
        redactor.scanner, audience_replacer(redactor, audience), lookbehind=MIN_LOOKBEHIND
    )
    first = stream_redactor.feed(f"hi jane.doe@{domain}{tail}")
    assert first == f"hi j***@{domain}"
    assert first + stream_redactor.feed(rest) + stream_redactor.finish() == (
        f"hi j***@{domain}{tail}{rest}"
    )


def test_offsets_handed_to_replace_are_stream_offsets() -> None:
    text = "a " * 100 + "jane@example.com and 4111111111111111"
    seen: list[tuple[int, int]] = []

    def replace(finding: Finding, matched: str) -> str:
        seen.append((finding.start, finding.end))
        assert text[finding.start : finding.end] == matched
        return "x"

    redactor = TextStreamRedactor(DEFAULT_SCANNER, replace)
    for i in range(0, len(text), 7):
        redactor.feed(text[i : i + 7])
    redactor.finish()
    assert seen == [(f.start, f.end) for f in DEFAULT_SCANNER.scan(text)]


def test_scanner_kinds_limit_what_is_held() -> None:
    cards_only = TextScanner(["card"])
    redactor = TextStreamRedactor(cards_only, label)
    assert redactor.feed("contact jane.doe") == "contact jane.d"  # only 2 held
    assert redactor.feed("@example.com") + redactor.finish() == "oe@example.com"


def test_feeding_after_finish_is_an_error() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    redactor.feed("x")
    assert redactor.finish() == "x"
    assert redactor.finish() == ""
    with pytest.raises(RedactionError):
        redactor.feed("y")


def test_lookbehind_below_minimum_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        TextStreamRedactor(DEFAULT_SCANNER, label, lookbehind=MIN_LOOKBEHIND - 1)


def test_repr_shows_no_text() -> None:
    redactor = TextStreamRedactor(DEFAULT_SCANNER, label)
    redactor.feed("card 4111 1111 1111")
    assert "4111" not in repr(redactor)


def test_redactors_satisfy_the_protocol() -> None:
    redactors: list[TextRedactor] = [
        TextStreamRedactor(DEFAULT_SCANNER, label),
        LineStreamRedactor(str.upper),
    ]
    assert all(r.finish() == "" for r in redactors)


# --- bytes --------------------------------------------------------------------------------


def byte_stream(chunks: list[bytes], encoding: str = "utf-8") -> bytes:
    redactor = ByteStreamRedactor(TextStreamRedactor(DEFAULT_SCANNER, label), encoding)
    return b"".join(redactor.feed(c) for c in chunks) + redactor.finish()


def test_multibyte_characters_split_across_chunks() -> None:
    text = "Grüße an 用户@例子.广告 — 4111 1111 1111 1111 ✓"
    data = text.encode("utf-8")
    expected = DEFAULT_SCANNER.redact(text, label).encode("utf-8")
    assert byte_stream([data[i : i + 1] for i in range(len(data))]) == expected
    for i in range(len(data) + 1):
        assert byte_stream([data[:i], data[i:]]) == expected


def test_other_encodings() -> None:
    text = "Grüße, jane@example.com"
    assert byte_stream([text.encode("latin-1")], "latin-1") == "Grüße, [EMAIL]".encode("latin-1")


def test_undecodable_bytes_are_unparseable() -> None:
    with pytest.raises(UnparseableBody):
        byte_stream(["Grüße".encode("latin-1")])  # not UTF-8: wrong charset


def test_truncated_character_at_the_end_is_unparseable() -> None:
    redactor = ByteStreamRedactor(TextStreamRedactor(DEFAULT_SCANNER, label))
    redactor.feed("ü".encode()[:1])
    with pytest.raises(UnparseableBody):
        redactor.finish()


BOM_CODECS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]
BOMS = {"utf-32": codecs.BOM_UTF32_LE, "utf-8-sig": codecs.BOM_UTF8}
BOM_TEXT = "Grüße: mail jane@example.com, card 4111 1111 1111 1111 ✓ " * 3


@pytest.mark.parametrize("encoding", BOM_CODECS)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_a_byte_order_mark_appears_once_at_the_start(encoding: str, size: int) -> None:
    """str.encode per chunk put a BOM before every chunk of a UTF-16/32 or utf-8-sig
    stream; the output must be what one-shot redaction gives, encoded once."""
    data = BOM_TEXT.encode(encoding)
    out = byte_stream([data[i : i + size] for i in range(0, len(data), size)], encoding)
    expected = DEFAULT_SCANNER.redact(BOM_TEXT, label)
    assert out.decode(encoding) == expected
    assert out == expected.encode(encoding)  # one BOM, at the start, where the codec has one
    if encoding in ("utf-16", "utf-32", "utf-8-sig"):
        assert out.startswith(codecs.BOM_UTF16_LE if encoding == "utf-16" else BOMS[encoding])


def test_a_stream_held_whole_gets_its_byte_order_mark_with_its_text() -> None:
    redactor = ByteStreamRedactor(LineStreamRedactor(str.upper), "utf-16")
    assert redactor.feed("no newline yet".encode("utf-16")) == b""
    assert redactor.finish() == "NO NEWLINE YET".encode("utf-16")
    assert ByteStreamRedactor(LineStreamRedactor(str.upper), "utf-16").finish() == b""


def test_a_stateful_encoding_is_closed_at_the_end() -> None:
    text = "メール jane@example.com 日本"
    data = text.encode("iso-2022-jp")
    out = byte_stream([data[i : i + 5] for i in range(0, len(data), 5)], "iso-2022-jp")
    assert out == DEFAULT_SCANNER.redact(text, label).encode("iso-2022-jp")


def test_unknown_encoding_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        ByteStreamRedactor(TextStreamRedactor(DEFAULT_SCANNER, label), "no-such-codec")


def test_replacement_that_cannot_be_encoded() -> None:
    inner = TextStreamRedactor(DEFAULT_SCANNER, lambda f, s: "✗")
    redactor = ByteStreamRedactor(inner, "ascii")
    redactor.feed(b"jane@example.com ")
    with pytest.raises(RedactionError):
        redactor.finish()


# --- lines --------------------------------------------------------------------------------


def redact_json_line(line: str) -> str:
    record = json.loads(line)
    return json.dumps({k: DEFAULT_SCANNER.redact(v, label) for k, v in record.items()})


def test_ndjson_lines_are_redacted_whole() -> None:
    records = [{"msg": "mail jane@example.com"}, {"msg": "card 4111111111111111"}]
    data = "".join(json.dumps(r) + "\n" for r in records)
    redactor = LineStreamRedactor(redact_json_line)
    out = "".join(redactor.feed(data[i : i + 3]) for i in range(0, len(data), 3))
    out += redactor.finish()
    assert [json.loads(x) for x in out.splitlines()] == [
        {"msg": "mail [EMAIL]"},
        {"msg": "card [CARD]"},
    ]


def test_lines_keep_their_endings() -> None:
    redactor = LineStreamRedactor(str.upper)
    assert redactor.feed("a\r\nb\n\nc") == "A\r\nB\n\n"
    assert redactor.finish() == "C"


def test_line_handed_over_without_newline_or_carriage_return() -> None:
    seen: list[str] = []

    def record(line: str) -> str:
        seen.append(line)
        return line

    redactor = LineStreamRedactor(record)
    redactor.feed('{"a": 1}\r\n{"b"')
    redactor.feed(": 2}\n")
    assert seen == ['{"a": 1}', '{"b": 2}']


def test_overlong_line_is_unparseable() -> None:
    redactor = LineStreamRedactor(str.upper, max_line=10)
    redactor.feed("0123456789")
    with pytest.raises(UnparseableBody):
        redactor.feed("x")


def test_overlong_complete_line_is_unparseable() -> None:
    redactor = LineStreamRedactor(str.upper, max_line=4)
    with pytest.raises(UnparseableBody):
        redactor.feed("12345\n")


def test_line_redactor_over_bytes() -> None:
    redactor = ByteStreamRedactor(LineStreamRedactor(redact_json_line))
    data = '{"msg": "Grüße jane@example.com"}\n'.encode()
    out = b"".join(redactor.feed(data[i : i + 1]) for i in range(len(data)))
    out += redactor.finish()
    assert json.loads(out) == {"msg": "Grüße [EMAIL]"}


def test_line_redactor_configuration_and_finish() -> None:
    with pytest.raises(PolicyError):
        LineStreamRedactor(str.upper, max_line=0)
    redactor = LineStreamRedactor(str.upper)
    assert redactor.finish() == ""
    with pytest.raises(RedactionError):
        redactor.feed("x")


def test_an_undecided_tail_let_go_is_labelled_as_what_every_audience_masks() -> None:
    """A tail forced out undecided is labelled phone (digits) or e-mail (the rest): a
    payment processor, which reads card numbers and IBANs, never gets it in the clear."""
    from privguard._streams import _kind_of_tail

    redactor = Redactor()
    assert redactor.scanner is not None
    processor = redactor.taxonomy.recipient_kind("payment_processor")
    for tail in ["4111 1111 1111 1111 0132 555", "+1 415 555", "DE89 3704 0044", "jane.doe"]:
        kind, category = _kind_of_tail(redactor.scanner, tail)
        assert kind in ("phone", "email")
        assert redactor.operator_for(category, processor).value != "keep"
