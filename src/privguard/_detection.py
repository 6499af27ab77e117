"""Free-text detectors: card numbers, e-mail addresses, phone numbers and IBANs.

``docs/detectors.md`` says what each detector finds, what it misses and why.

Speed comes from never looking at most of the text in Python: three scans run in C
(``str.find`` for ``@`` and its wide forms, one regex for runs of at least seven digits,
one regex for the two letters and two digits that open an IBAN) and only their few hits
reach the per-kind checks. Every decision depends on a bounded neighbourhood of the hit,
which is what lets :mod:`privguard._streams` redact a stream chunk by chunk with a small
look-behind and still give the one-shot result.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberType

from ._errors import PolicyError
from ._taxonomy import Categories

__all__ = [
    "DEFAULT_PHONE_REGIONS",
    "DEFAULT_SCANNER",
    "KINDS",
    "Finding",
    "TextScanner",
    "luhn_valid",
]

KINDS: Final = ("card", "email", "phone", "iban")
DEFAULT_PHONE_REGIONS: Final = ("US", "GB", "DE", "FR", "IL", "JP", "CN", "BR", "IN")

_CATEGORY: Final = {
    "card": Categories.CARD,
    "email": Categories.EMAIL,
    "phone": Categories.PHONE,
    "iban": Categories.IBAN,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """Where a piece of personal data sits in a text: ``text[start:end]``.

    It holds offsets only, so its repr never shows the value.
    """

    kind: str
    category: str
    start: int
    end: int


# --- Luhn ----------------------------------------------------------------------------

_LUHN_DOUBLE: Final = str.maketrans("0123456789", "0246813579")


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check.

    >>> luhn_valid("4111111111111111")
    True
    """
    if len(digits) < 2 or not (digits.isascii() and digits.isdigit()):
        return False
    odd = sum(map(int, digits[-1::-2]))
    even = sum(map(int, digits[-2::-2].translate(_LUHN_DOUBLE)))
    return (odd + even) % 10 == 0


def _ascii_digits(s: str) -> str:
    """Map any Unicode decimal digits (fullwidth, Arabic-Indic …) to ASCII."""
    if s.isascii():
        return s
    return "".join(str(unicodedata.decimal(c)) for c in s)


# --- cards ---------------------------------------------------------------------------

# (first prefix, last prefix, allowed lengths). Prefixes compare on their own length.
_CARD_RANGES: Final[tuple[tuple[str, str, tuple[int, ...]], ...]] = (
    ("1", "1", (15,)),  # UATP: in scope, see docs/detectors.md
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club International
    ("3095", "3095", (14, 15, 16, 17, 18, 19)),
    ("34", "34", (15,)),  # American Express
    ("36", "36", (14, 15, 16, 17, 18, 19)),  # Diners
    ("37", "37", (15,)),  # American Express
    ("38", "39", (14, 15, 16, 17, 18, 19)),  # Diners, Hipercard 3841
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("4", "4", (13, 16, 19)),  # Visa, Visa Electron, Elo 4x
    # Maestro issues 12 to 19 digits, but only 16 and more are in use in numbers: a
    # 13-15 digit run starting with 5 or 6 is far likelier an id that passed Luhn by luck.
    ("50", "50", (16, 17, 18, 19)),  # Maestro, Dankort 5019, Aura, Verve
    ("51", "55", (16,)),  # Mastercard
    ("56", "59", (16, 17, 18, 19)),  # Maestro
    # Discover 6011/644-649/65, UnionPay 62, Maestro 6x, RuPay 60, BC card and DinaCard 65
    ("60", "69", (16, 17, 18, 19)),
    ("81", "82", (16, 17, 18, 19)),  # UnionPay 81, RuPay 82
    ("9792", "9792", (16,)),  # Troy
    ("9891", "9891", (16,)),  # DinaCard
)


def _build_card_prefix_table() -> dict[str, frozenset[int]]:
    table: dict[str, set[int]] = {}
    for lo, hi, lengths in _CARD_RANGES:
        width = len(lo)
        for prefix in range(int(lo), int(hi) + 1):
            head = str(prefix).zfill(width)
            for tail in range(10 ** (4 - width)):
                key = head + (str(tail).zfill(4 - width) if width < 4 else "")
                table.setdefault(key, set()).update(lengths)
    return {key: frozenset(lengths) for key, lengths in table.items()}


_CARD_LENGTHS_BY_PREFIX: Final = _build_card_prefix_table()
_CARD_SEPS: Final = frozenset((" ", "-"))  # inside a printed card number


def _card_boundary(sep: str) -> bool:
    """Whether a separator between digit groups may end one number and begin the next:
    anything but a decimal point or a slash (decimals, versions, dates, paths)."""
    return "." not in sep and "/" not in sep


# Card layouts: contiguous, the printed 4-4-4-1 .. 4-4-4-4-3 family (_card_candidates),
# or Amex/Diners/UATP 4-6-5, 4-6-4, 4-5-6.
_CARD_SPECIAL_LAYOUTS: Final = frozenset(((4, 6, 5), (4, 6, 4), (4, 5, 6)))


def _card_number_ok(digits: str) -> bool:
    lengths = _CARD_LENGTHS_BY_PREFIX.get(digits[:4])
    return lengths is not None and len(digits) in lengths and luhn_valid(digits)


# --- numeric runs (cards and phones) ---------------------------------------------------

# Separators that may join two digit groups of one card or phone number.
_SEP: Final = r"(?:[ \-./]|\)[ \-.]?|[ \-.]?\()"
# The one scan over the whole text. It starts with \d, so the regex engine skips
# everything else in C, and finds: stretches of digits and separators of at least seven
# characters (cards, phones), and two digits right after two letters that open a token
# (IBAN check digits; not the inside of a hex id, which no IBAN can be).
_DIGIT_SCAN: Final = re.compile(
    r"\d(?:[\d \-./()]{5,}\d|(?<![A-Za-z0-9][A-Za-z]{2}\d)(?<=[A-Za-z]{2}\d)\d)"
)
# Within a stretch: a run of at least seven digit groups joined by single separators.
_NUM_RUN: Final = re.compile(rf"\d(?:{_SEP}?\d){{6,}}")
_DIGIT_GROUP: Final = re.compile(r"\d+")
# The trailing numeric run of a buffer (streams): digits and separators up to the end.
_NUM_TAIL: Final = re.compile(rf"[+(]?\d+(?:{_SEP}\d+)*[ \-./()]{{0,2}}\Z")

# Separators as typists and word processors write them, read as their ASCII forms (one
# character for one, so offsets hold): no-break, thin and other spaces, the ideographic
# space; hyphens and dashes; the fullwidth "＋ （ ） ． ／" of CJK input. "4111\u202f1111…"
# (a French thousands space) is a card number; a tab is not read as a space (columns of
# numbers in a table are no card).
_SPACE_SEPARATORS: Final = (
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
)
# Invisible: a soft hyphen, zero-width spaces and joiners, the word joiner, a stray BOM.
# A reader sees "4111\u200b1111…" as one number.
_INVISIBLE_SEPARATORS: Final = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_AS_ASCII_SEPARATORS: Final = str.maketrans(
    {
        **dict.fromkeys(_SPACE_SEPARATORS, " "),
        **dict.fromkeys(_INVISIBLE_SEPARATORS, " "),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"),
        "\uff0b": "+",
        "\uff08": "(",
        "\uff09": ")",
        "\uff0e": ".",
        "\uff0f": "/",
    }
)
# Spaces that group the digits of amounts (SI and French typography): read as spaces in
# card numbers, never in phone numbers.
_THOUSANDS_SPACES: Final = "\u202f\u2009\u2007"
# Every character the table above reads as a separator (the redaction prefilter's too).
_UNICODE_SEPARATORS: Final = "".join(sorted(chr(c) for c in _AS_ASCII_SEPARATORS))


def _ascii_separators(text: str) -> str:
    """``text`` with the separators above in their ASCII forms, one for one.

    One ``str.replace`` per separator present: ``in`` answers at once for a character
    wider than the text's own (most separators in Latin text) and scans fast otherwise,
    where ``str.translate`` with a table would look up every character (about 40 ms for
    800 KB of French text, against 4 ms).
    """
    for char in _UNICODE_SEPARATORS:
        if char in text:
            text = text.replace(char, _AS_ASCII_SEPARATORS[ord(char)])
    return text


_MAX_CARD_SPAN: Final = 19 + 18  # 19 digits and 18 single separators
_MAX_PHONE_GROUPS: Final = 7

# The shape of one phone number as written. Groups after the country code or area code
# are checked for consistent separators afterwards.
_PHONE_SHAPE: Final = re.compile(
    r"""
    (?:
        (?P<cc>\+\d{1,3})(?:[ \-.]?\((?P<area1>\d{1,5})\)[ \-.]?|[ \-.])
      | (?P<plus>\+)
      | \((?P<area2>\d{1,5})\)[ \-.]?
    )?
    (?P<rest>\d+(?:[ \-./]\d+)*)
    """,
    re.VERBOSE,
)
_DATE_SHAPES: Final = re.compile(
    r"""
      \d{4}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])
    | (?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|[12]\d|3[01])[-./](?:\d{2}|\d{4})
    """,
    re.VERBOSE,
)
# A national number never opens with a year and a month, or a day, a month and a year.
_DATE_OPENING: Final = re.compile(
    r"""
      (?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])(?!\d)
    | (?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)?\d\d(?!\d)
    """,
    re.VERBOSE,
)
_NON_DIGITS: Final = re.compile(r"\D")
_DROP_DIGITS: Final = str.maketrans("", "", "0123456789")
_DROP_PHONE_SEPARATORS: Final = str.maketrans("", "", " -./()+")
# Words right before a bare digit run that make it an identifier, not a phone number.
_ID_CONTEXT: Final = re.compile(
    r"""
    (?:
        \b(?:order|ticket|invoice|booking|reservation|ref|reference|confirmation|tracking
            |account|acct|transaction|txn|receipt|sku|serial|id|pin|code|case|item|upc|ean
            |gtin|isbn|issn|ts|time|timestamp|epoch|date|created|updated|expires|exp|iat|nbf)\b
        [^\w\n]{0,3}(?:(?:no|nr|num|number|id)\b[^\w\n]{0,3})?
      | \#\s?
    )\Z
    """,
    re.VERBOSE | re.IGNORECASE,
)
# The same for a number written in groups, which looks more like a phone number: the word
# must say "number" ("order no. 415-555-0132", "PO #987-654-3210", "ticket number: …");
# "ticket (11) 2373-7919" in a chat is as likely a phone number.
_ID_NUMBER_CONTEXT: Final = re.compile(
    r"""
    \b(?:order|ticket|invoice|booking|reservation|ref|reference|confirmation|tracking
        |account|acct|transaction|txn|receipt|sku|serial|item|po|purchase\ order|member
        |membership|customer|policy|claim|parcel|shipment|case|isbn|issn)\b
    [^\w\n]{0,3}(?:(?:no|nr|num|number|id)\b[^\w\n]{0,3}|\#\s?)
    \Z
    """,
    re.VERBOSE | re.IGNORECASE,
)
_ID_CONTEXT_REACH: Final = 40
_BARE_PHONE_TYPES: Final = frozenset((PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE))

# --- e-mail --------------------------------------------------------------------------

_LOCAL_MAX: Final = 64
# The at-signs: "@", the fullwidth "＠" (U+FF20, what CJK input methods type) and the
# small "﹫" (U+FE6B). NFKC makes both "@", and a reader sees an address either way. A
# text without them (``str.isascii`` answers at no cost for most) pays one ``str.find``
# for "@", as before.
_WIDE_ATS: Final = ("\uff20", "\ufe6b")
# Matched on the reversed text before the at-sign: local parts run leftwards from it.
# The fullwidth ". + - _ '" (U+FF0E, FF0B, FF0D, FF3F, FF07; NFKC makes them ASCII) count
# as their ASCII forms, so an address typed in fullwidth mode is found whole.
_LOCAL_REV: Final = re.compile(r"[\w.+'\-" "\uff0e\uff0b\uff0d\uff3f\uff07" r"]{1,64}")
_LOCAL_EDGE: Final = ".'\uff0e\uff07"  # dots and quotes never lead a local part
# A label: up to 63 letters, digits and hyphens, not starting or ending with a hyphen.
# It is matched possessively (and its last character checked behind), so it is taken
# whole or not at all: backing off, the domain pattern below gives up whole labels, one
# at a time, and a failed match costs one try of a top-level domain per label. Domains
# may then have any number of labels (DNS allows 127, and 253 characters in all): a
# longer one is no DNS name, but redacting it whole leaves none of it in the clear, where
# stopping at 253 characters would leave its end and rejecting it the local part.
_LABEL: Final = r"[^\W_][\w\-" "\uff0d" r"]{0,62}+(?<![_\-" "\uff0d" r"])"
# The top-level domain ends where its letters end: "jane@example.com-x" still holds an
# address, and rejecting the whole would let it through. A Latin one also ends where
# kana, CJK or Hangul begin: text in those scripts runs on without a space
# ("メールはjane＠example.comまで"), and no top-level domain mixes scripts.
#
# Labels may also be separated by the dots UTS 46 maps to "." (RFC 3490's list: the
# fullwidth "．" U+FF0E, the ideographic "。" U+3002, the halfwidth "｡" U+FF61):
# "jane＠example．com" and the input-method artefact "jane@example。com" are addresses.
# Such a domain is tried only where the "." form matches nothing, must use one such dot
# throughout, and its top-level domain must be Latin letters (either width) or punycode:
# "。" also ends a CJK sentence, so a mention followed by a sentence ("请联系＠李明。他会回复")
# is no address, and "jane@example.com。Thanks" stays "jane@example.com".
_WIDE_DOTS: Final = "\uff0e\u3002\uff61"
_LATIN: Final = r"A-Za-z\uff21-\uff3a\uff41-\uff5a"  # either width
_CJK: Final = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"  # kana, CJK, Hangul
_DOMAIN: Final = re.compile(
    rf"(?:{_LABEL}\.)+(?P<tld>[Xx][Nn]--[A-Za-z0-9\-]{{1,59}}"
    rf"|[{_LATIN}]{{2,63}}+(?=[{_CJK}])|[^\W\d_]{{2,63}})"
    rf"|{_LABEL}(?P<dot>[{_WIDE_DOTS}])(?:{_LABEL}(?P=dot))*"
    rf"(?P<wide_tld>[Xx][Nn]--[A-Za-z0-9\-]{{1,59}}|[{_LATIN}]{{2,63}})"
)
_DOMAIN_TAIL: Final = re.compile(rf"[\w.\-\uff0d{_WIDE_DOTS}]*+\Z")
# File extensions that are not top-level domains: "logo@2x.png" is a file name.
_FILE_EXTENSIONS: Final = (
    "png jpg jpeg gif svg webp bmp tif tiff ico heic txt csv tsv json yaml yml xml js mjs ts "
    "tsx jsx css scss less html htm php jsp asp aspx pdf doc docx xls xlsx ppt pptx odt rtf "
    "log ini cfg conf toml lock tar gz tgz bz xz rar dmg exe dll so jar war md rst"
)
_NOT_TLDS: Final = frozenset(_FILE_EXTENSIONS.split())


def _tld_ok(tld: str) -> bool:
    if not tld.isascii():
        tld = unicodedata.normalize("NFKC", tld)  # "ｐｎｇ" is "png"
    return tld.lower() not in _NOT_TLDS


def _last_at(text: str, floor: int) -> int:
    """Where the last at-sign at or after ``floor`` is, or -1."""
    at = text.rfind("@", floor)
    if text.isascii():
        return at
    return max(at, text.rfind(_WIDE_ATS[0], floor), text.rfind(_WIDE_ATS[1], floor))


# --- IBAN ----------------------------------------------------------------------------

_IBAN_BODY: Final = re.compile(r"[A-Za-z]{2}\d\d(?:[ ]?[A-Za-z0-9]{1,4}){1,9}")
_IBAN_TAIL: Final = re.compile(r"[A-Za-z]{2}\d\d(?:[ ]?[A-Za-z0-9]{1,4}){0,9}[ ]?\Z")
# Lengths from the SWIFT IBAN registry, plus the countries that use IBANs without
# being registered there yet (the mod-97 check keeps them precise).
_IBAN_REGISTRY: Final = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BL27 BR29 BY28 CH21 CR22 CY28 CZ24 "
    "DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GF27 GI23 GL18 GP27 "
    "GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 "
    "LV21 LY25 MC27 MD24 ME22 MF27 MK19 MN20 MQ27 MR27 MT31 MU30 NC27 NI28 NL18 NO15 OM23 "
    "PF27 PK24 PL28 PM27 PS29 PT25 QA29 RE27 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 "
    "SM27 SO23 ST25 SV28 TF27 TL23 TN24 TR26 UA29 VA22 VG24 WF27 XK20 YE30 YT27 "
    # not (yet) in the registry, in use
    "AO25 BF28 BJ28 CF27 CG27 CI28 CM27 CV25 DZ26 GA27 GQ27 GW25 HN28 IR26 KM27 MA28 MG27 "
    "ML28 MZ25 NE28 SN28 TD27 TG28 "
)
_IBAN_LENGTHS: Final = {entry[:2]: int(entry[2:]) for entry in _IBAN_REGISTRY.split()}
_IBAN_LETTERS: Final = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})


def _iban_checksum_ok(compact: str) -> bool:
    rearranged = (compact[4:] + compact[:4]).upper().translate(_IBAN_LETTERS)
    return rearranged.isdigit() and int(rearranged) % 97 == 1


# --- whole values that are an identifier or a timestamp ---------------------------------

# A value that is nothing but a UUID, an ISO 8601 / RFC 3339 date or timestamp, or a hex
# digest (24 to 128 hex digits, one case, at least one letter) holds no card, e-mail,
# phone or IBAN: its digits are the identifier's or the clock's. Such values fill JSON
# APIs, and the digit runs in them would otherwise send each one through every detector
# (5-30 us apiece). Whole values only: a date inside a sentence is scanned as before. A
# hex digest never holds 13 digits in a row (a card glued into it), and one of IBAN
# length (at most 34) never starts like an IBAN: two letters, two digits (a lower-case
# German IBAN is all hex digits). A longer one cannot be an IBAN: IBANs end at a
# non-alphanumeric character.
_HEX: Final = "[0-9a-fA-F]"
_IDENTIFIER: Final = re.compile(
    rf"""
    {_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-(?=[0-9]*[a-fA-F]){_HEX}{{12}}
    | (?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])
      (?:[Tt\x20](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{{1,9}})?)?
        (?:[Zz]|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)?)?
    | (?=\d*[a-fA-F])(?![0-9a-fA-F]*\d{{13}})
      (?:[0-9a-f]{{35,128}}|[0-9A-F]{{35,128}}
        | (?![A-Za-z]{{2}}\d\d)(?:[0-9a-f]{{24,34}}|[0-9A-F]{{24,34}}))
    """,
    re.VERBOSE | re.ASCII,
).fullmatch
_IDENTIFIER_MAX: Final = 128


def is_identifier(text: str) -> bool:
    """True when ``text`` is nothing but a UUID, a timestamp or a hex digest (above)."""
    return len(text) <= _IDENTIFIER_MAX and _IDENTIFIER(text) is not None


# --- the scanner -----------------------------------------------------------------------

_PHONE_CACHE_MAX: Final = 4096


class TextScanner:
    """Finds card numbers, e-mail addresses, phone numbers and IBANs in free text.

    Build one per configuration and share it: it is immutable apart from a small cache
    of digit strings known not to be phone numbers.

    >>> scanner = TextScanner()
    >>> scanner.redact("card 4111 1111 1111 1111", lambda f, s: f"[{f.kind.upper()}]")
    'card [CARD]'
    """

    def __init__(
        self,
        kinds: Iterable[str] = KINDS,
        *,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        wanted = tuple(kinds)
        if isinstance(kinds, str):
            raise PolicyError("kinds must be a collection of kind names, not one string")
        for kind in wanted:
            if kind not in _CATEGORY:
                raise PolicyError(f"unknown detector kind {kind!r}; known: {', '.join(KINDS)}")
        regions = tuple(r.upper() for r in phone_regions)
        supported = phonenumbers.SUPPORTED_REGIONS
        for region in regions:
            if region not in supported:
                raise PolicyError(f"unknown phone region {region!r}")
        if "phone" in wanted and not regions:
            raise PolicyError("phone detection needs at least one phone region")
        self.kinds: frozenset[str] = frozenset(wanted)
        self.phone_regions: tuple[str, ...] = regions
        self._card = "card" in self.kinds
        self._email = "email" in self.kinds
        self._phone = "phone" in self.kinds
        self._iban = "iban" in self.kinds
        self._regions = tuple(_RegionRule(region) for region in regions)
        self._not_phones: dict[tuple[str, bool, bool, tuple[int, ...]], None] = {}

    def __repr__(self) -> str:
        kinds = ", ".join(k for k in KINDS if k in self.kinds)
        return f"TextScanner(kinds=({kinds}), phone_regions={self.phone_regions!r})"

    # public API

    def scan(self, text: str) -> list[Finding]:
        """All findings in ``text``, sorted by position and non-overlapping."""
        if is_identifier(text):
            return []
        found = self._candidates(text, 0)
        return _resolve(found) if len(found) > 1 else found

    def contains(self, text: str) -> bool:
        """True when ``text`` holds any personal data this scanner detects."""
        if is_identifier(text):
            return False
        return bool(self._candidates(text, 0, first_only=True))

    def redact(self, text: str, replace: Callable[[Finding, str], str]) -> str:
        """``text`` with each finding replaced by ``replace(finding, matched_text)``."""
        found = self.scan(text)
        return _apply(text, found, replace) if found else text

    # internals shared with privguard._streams

    def _candidates(self, text: str, floor: int, *, first_only: bool = False) -> list[Finding]:
        """Each detector's own findings starting at or after ``floor``, not yet resolved
        against each other."""
        out: list[Finding] = []
        if self._email:
            self._emails(text, floor, out)
            if first_only and out:
                return out
        if self._card or self._phone or self._iban:
            self._digits(text, floor, out, first_only)
        return out

    def _hold_start(self, text: str, floor: int) -> int:
        """Where the tail starts that more text could still turn into (or change) a
        finding. Text before it is decided. Used by the stream redactors."""
        n = len(text)
        hold = max(floor, n - 2)  # findings look at most two characters past their end
        if self._card or self._phone:
            lo = max(floor, n - 2 * _MAX_CARD_SPAN)
            tail = text[lo:]  # only the end can still grow into a number
            m = _NUM_TAIL.search(tail if tail.isascii() else _ascii_separators(tail))
            if m:
                start = lo + m.start()
                if n - start > _MAX_CARD_SPAN + 8:
                    # Only the last groups can still join a number: windows are shorter.
                    for g in _DIGIT_GROUP.finditer(text, start, n):
                        if g.start() >= n - (_MAX_CARD_SPAN + 8):
                            start = g.start()
                            break
                hold = min(hold, start)
        if self._iban:
            m = _IBAN_TAIL.search(text, max(floor, n - 60))
            # without a match, "DE" or "DE8" at the very end may still open one
            hold = min(hold, m.start() if m else max(floor, n - 3))
        if self._email:
            window = text[max(floor, n - _LOCAL_MAX) :]
            m = _LOCAL_REV.match(window[::-1])
            if m:
                hold = min(hold, n - m.end())
            at = _last_at(text, floor)
            if at >= 0 and _DOMAIN_TAIL.match(text, at + 1):
                before = text[max(floor, at - _LOCAL_MAX) : at]
                m = _LOCAL_REV.match(before[::-1])
                if m:
                    hold = min(hold, at - m.end())
        return hold

    def _open_email_start(self, text: str, floor: int) -> int | None:
        """Start of an address whose domain may still be growing at the end of ``text``."""
        at = _last_at(text, floor)
        if at < 0 or not _DOMAIN_TAIL.match(text, at + 1):
            return None
        before = text[max(floor, at - _LOCAL_MAX) : at]
        m = _LOCAL_REV.match(before[::-1])
        return at - m.end() if m else None

    # e-mail

    def _emails(self, text: str, floor: int, out: list[Finding]) -> None:
        # From the start of the text, not from floor: the previous address decides
        # where the next one's local part may begin.
        find = text.find
        if not text.isascii() and (_WIDE_ATS[0] in text or _WIDE_ATS[1] in text):
            # Same length, every at-sign an "@": offsets hold for ``text``.
            find = text.replace(_WIDE_ATS[0], "@").replace(_WIDE_ATS[1], "@").find
        last: Finding | None = None
        at = find("@")
        while at >= 0:
            nxt = at + 1
            local = _LOCAL_REV.match(text[max(0, at - _LOCAL_MAX) : at][::-1]) if at else None
            dom = _DOMAIN.match(text, nxt) if local else None
            if local and dom and _tld_ok(dom["tld"] or dom["wide_tld"]):
                # Never reach back into the previous address, nor before floor: text
                # there is decided (a stream released it), and where it held an address
                # that one ended right there.
                start = max(at - local.end(), last.end if last is not None else 0, floor)
                while start < at and text[start] in _LOCAL_EDGE:
                    start += 1
                found: Finding | None = None
                if start < at and any(c.isalnum() for c in text[start:at]):
                    found = Finding("email", Categories.EMAIL, start, dom.end())
                elif last is not None and last.end == at:
                    # "jane@example.comfoo@bar.com": glued on, it extends the address
                    found = Finding("email", Categories.EMAIL, last.start, dom.end())
                    if out and out[-1] is last:
                        out.pop()
                if found is not None:
                    if found.start >= floor:
                        out.append(found)
                    last = found
                    nxt = dom.end()
            at = find("@", nxt)

    # IBANs, cards and phones: everything that starts at a digit

    def _digits(self, text: str, floor: int, out: list[Finding], first_only: bool) -> None:
        if text.isascii():
            self._digits_read(text, floor, out, first_only)
            return
        plain = _ascii_separators(text)  # same length: offsets hold
        if plain is text or not any(char in text for char in _THOUSANDS_SPACES):
            self._digits_read(plain, floor, out, first_only)
            return
        # Thin and figure spaces group the digits of amounts ("13\u202f108\u383 €"): a
        # card number may be printed with them, a phone number is not.
        found: list[Finding] = []
        self._digits_read(plain, floor, found, False)
        out.extend(
            f
            for f in found
            if f.kind != "phone" or not any(c in text[f.start : f.end] for c in _THOUSANDS_SPACES)
        )

    def _digits_read(self, text: str, floor: int, out: list[Finding], first_only: bool) -> None:
        numbers = self._card or self._phone
        iban = self._iban
        contiguous = self._contiguous
        run = self._run
        iban_done = floor
        for m in _DIGIT_SCAN.finditer(text):  # from the start: runs reach back past floor
            s, e = m.span()
            if e <= floor:
                continue
            if (
                iban
                and s >= 2
                and s - 2 >= iban_done
                and text[s - 1].isalpha()
                and (s == 2 or not text[s - 3].isalnum())  # else part of a longer token
            ):
                head = text[s - 2 : s]
                if head.isascii() and head.isalpha():
                    end = _iban_at(text, s - 2)
                    if end is not None:
                        out.append(Finding("iban", Categories.IBAN, s - 2, end))
                        iban_done = end
                        if first_only:
                            return
            # Numbers are read over the whole stretch, IBAN or not, so that how a run
            # splits never depends on what was found before; overlaps are resolved later.
            if not numbers or e - s < 7:
                continue
            # Decisions are made per run, never per stretch: a stretch can grow past the
            # point where a stream has to decide on its runs.
            chars = text[s:e]
            if chars.isdigit():
                # Seven to nine digits are a number only after a "+", and no number
                # has more than 19: most ids and timestamps stop here.
                if e - s <= 19 and (e - s >= 10 or (s and text[s - 1] == "+")) and s >= floor:
                    contiguous(text, s, e, floor, out)
            else:
                shape = chars.translate(_SHAPE_DIGITS) if chars.isascii() else _shape(chars)
                runs = _STRETCH_RUNS.get(shape)
                if runs is None:
                    runs = _stretch_runs(shape)
                for rs, rend, form, run_shape in runs:
                    if form is _CONTIGUOUS:
                        contiguous(text, s + rs, s + rend, floor, out)
                    elif form is _RUN or not _DATE_SHAPES.fullmatch(text, s + rs, s + rend):
                        run(text, s + rs, s + rend, run_shape, floor, out)
            if first_only and out:
                return

    def _contiguous(self, text: str, s: int, e: int, floor: int, out: list[Finding]) -> None:
        """One run of digits without separators: the common case, kept cheap."""
        if s < floor:
            return
        size = e - s
        before = text[s - 1] if s else ""
        if e < len(text) and text[e].isalnum():
            return
        if before.isalnum():
            return
        if (
            self._card
            and 13 <= size <= 19
            and before != "+"
            and _card_number_ok(_ascii_digits(text[s:e]))
        ):
            out.append(Finding("card", Categories.CARD, s, e))
            return
        if not self._phone:
            return
        # No separators, so no shape to check: straight to the number itself.
        if before == "+":
            if 8 <= size <= 15 and self._valid_phone_number(_ascii_digits(text[s:e]), True, False):
                out.append(Finding("phone", Categories.PHONE, s - 1, e))
        elif text.startswith("00", s):
            if 10 <= size <= 17 and self._valid_phone_number(
                _ascii_digits(text[s + 2 : e]), True, False
            ):
                out.append(Finding("phone", Categories.PHONE, s, e))
        elif (
            10 <= size <= 12
            and not _ID_CONTEXT.search(text[max(0, s - _ID_CONTEXT_REACH) : s])
            and self._valid_phone_number(_ascii_digits(text[s:e]), False, True)
        ):
            out.append(Finding("phone", Categories.PHONE, s, e))

    def _run(
        self, text: str, rs: int, rend: int, shape: str, floor: int, out: list[Finding]
    ) -> None:
        """A run of digit groups joined by single separators; ``shape`` is its shape."""
        if rend < len(text):
            after = text[rend]
            right_ok = not after.isalnum()
            # "12-34-56-78-90-ab": a number cannot end where the token goes on
            tail_blocked = after in "-/" and text[rend + 1 : rend + 2].isalnum()
        else:
            right_ok, tail_blocked = True, False
        key = (shape, right_ok, tail_blocked)
        plan = _RUN_PLANS.get(key) or _run_plan(*key)
        starts, ends, digits_from, card_ends, phone_starts, phone_ends = plan  # within run
        n = len(starts)
        before = text[rs - 1] if rs else ""
        left_ok = not before.isalnum()
        first = 0
        if rs < floor:
            while first < n and rs + starts[first] < floor:
                first += 1
        cards: list[tuple[int, int]] = []  # groups i..j of each card found
        if self._card and first < n and digits_from[first] >= 13:
            card_left_ok = left_ok and before != "+"  # "+" opens a phone number, never a card
            i = first
            while i < n:
                if card_ends[i] and (i > 0 or card_left_ok):
                    start = rs + starts[i]
                    found = _card_window(text, start, rs, ends, i, card_ends[i])
                    if found is not None:
                        out.append(Finding("card", Categories.CARD, start, rs + ends[found]))
                        cards.append((i, found))
                        i = found + 1
                        continue
                i += 1
        if not self._phone:
            return
        plus_lead = before == "+"
        next_card = 0
        i = first
        while i < n:
            limit = n  # a number never reaches into a card found before
            while next_card < len(cards) and cards[next_card][1] < i:
                next_card += 1
            if next_card < len(cards):
                if cards[next_card][0] <= i:
                    i = cards[next_card][1] + 1
                    continue
                limit = cards[next_card][0] - 1
            # Where a number starting at group i begins (with its "+" or "("), if it can:
            # at the run's start, or after a space; never right after "+CC".
            wstart: int | None = None
            opener = _NO_OPENER
            if i == 0:
                wstart = _run_start(text, rs, left_ok)
                if wstart is not None and wstart < rs:
                    opener = _PLUS if plus_lead else _PAREN
            elif not (i == 1 and plus_lead):
                delta = phone_starts[i]
                if delta is not None:
                    wstart = rs + starts[i] + delta
                    opener = _PAREN if delta else _NO_OPENER
            candidates = phone_ends[i]
            if wstart is not None and candidates:
                # How many digits a number may have, as written: "+" and 7-15 digits,
                # "00" and 7-15 more, or a national number of 8-12 digits.
                if opener == _PLUS:
                    low, high = 7, 15
                elif text.startswith("00", rs + starts[i]):
                    low, high = 8, 17
                else:
                    low, high = 8, 12
                # The longest number starting at group i, of those its shape allows.
                for r, digits, forms in candidates:
                    if digits < low:
                        break
                    j = i + r
                    if digits > high or j > limit:
                        continue
                    form = forms[opener]
                    if form is not None and self._is_phone(text, wstart, rs + ends[j], form):
                        out.append(Finding("phone", Categories.PHONE, wstart, rs + ends[j]))
                        i = j
                        break
            i += 1

    def _is_phone(self, text: str, start: int, end: int, form: _PhoneForm) -> bool:
        """Whether ``text[start:end]``, written in ``form``, holds a phone number."""
        intl, bare, date_from, skip = form
        start += skip
        window = text[start:end]
        if date_from >= 0 and _DATE_OPENING.match(window, date_from):
            return False
        # the shape allows only digits and these separators
        digits = window.translate(_DROP_PHONE_SEPARATORS)
        if not digits.isascii():
            digits = _ascii_digits(digits)
        if not intl and digits.startswith("00") and len(digits) >= 10:
            intl, digits = True, digits[2:]
        if intl:
            if not 7 <= len(digits) <= 15:
                return False
        else:
            if not (10 if bare else 8) <= len(digits) <= 12:
                return False
            # A national number right after "order #", "ticket no.", "PO #" is that id.
            context = text[max(0, start - _ID_CONTEXT_REACH) : start]
            if (_ID_CONTEXT if bare else _ID_NUMBER_CONTEXT).search(context):
                return False
        breaks: tuple[int, ...] = ()
        if not intl and not bare:
            # How the number is grouped as written: where each group of digits ends.
            groups = _DIGIT_GROUP.findall(window)
            if len(groups[-1]) < 2:
                return False  # "0-306-40615-2": an ISBN's check digit, no phone's last group
            ends = list(accumulate(map(len, groups)))
            breaks = tuple(ends[:-1])
        return self._valid_phone_number(digits, intl, bare, breaks)

    def _valid_phone_number(
        self, digits: str, intl: bool, bare: bool, breaks: tuple[int, ...] = ()
    ) -> bool:
        key = (digits, intl, bare, breaks)
        if key in self._not_phones:
            return False
        if self._check_phone_number(digits, intl, bare, breaks):
            return True
        # Only negatives are cached: the cache never holds a phone number.
        if len(self._not_phones) >= _PHONE_CACHE_MAX:
            self._not_phones.clear()
        self._not_phones[key] = None
        return False

    def _check_phone_number(
        self, digits: str, intl: bool, bare: bool, breaks: tuple[int, ...] = ()
    ) -> bool:
        if intl:
            return _valid_international(digits)
        for rule in self._regions:
            number_type = rule.home_number_type(digits, breaks)
            if number_type is None:
                continue
            if bare and number_type not in _BARE_PHONE_TYPES:
                continue
            return True
        return False


# --- phone number metadata ------------------------------------------------------------
# phonenumbers' parse(), is_valid_number() and format_number() cost about 100 µs per
# number; these checks read the same metadata and cost a few regex matches.

_TYPED_DESCS: Final = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)
_FIXED_LINE: Final = PhoneNumberType.FIXED_LINE
_Desc = tuple[frozenset[int], "re.Pattern[str]"]


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    pattern: str = desc.national_number_pattern
    return frozenset(desc.possible_length or ()), re.compile(pattern)


def _matches(nsn: str, desc: _Desc | None) -> bool:
    if desc is None:
        return False
    lengths, pattern = desc
    return (not lengths or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


class _RegionNumbers:
    """One region's numbering plan, read from phonenumbers' metadata."""

    __slots__ = (
        "country_code",
        "format_patterns",
        "format_prefixes",
        "formats",
        "general",
        "leading",
        "mobile",
        "national_prefix",
        "region",
        "same_fixed_mobile",
        "types",
        "types_in_order",
    )

    def __init__(self, region: str, metadata: PhoneMetadata) -> None:
        general = _desc(metadata.general_desc)
        if general is None:
            raise PolicyError(f"no phone number metadata for region {region!r}")
        self.region = region
        self.country_code: int = metadata.country_code or 0
        self.national_prefix: str = metadata.national_prefix or ""
        self.general: _Desc = general
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        self.mobile = _desc(metadata.mobile)
        self.same_fixed_mobile = bool(metadata.same_mobile_and_fixed_line_pattern)
        # phonenumbers tests the types one by one in this order; one alternation in the
        # same order, each branch guarded by its possible lengths, gives the same answer.
        ordered = [*_TYPED_DESCS, ("fixed_line", _FIXED_LINE)]
        if not self.same_fixed_mobile:
            ordered.append(("mobile", PhoneNumberType.MOBILE))
        branches: list[str] = []
        kinds: list[int] = []
        for name, kind in ordered:
            desc = _desc(getattr(metadata, name))
            if desc is None:
                continue
            lengths, pattern = desc
            sizes = "|".join(r"\d{" + str(n) + "}" for n in sorted(lengths))
            guard = rf"(?=(?:{sizes})\Z)" if lengths else ""
            branches.append(f"(?P<t{len(kinds)}>{guard}(?:{pattern.pattern}))")
            kinds.append(kind)
        self.types = re.compile("|".join(branches)) if branches else None
        self.types_in_order = tuple(kinds)
        # format_number() takes the first format whose last leading-digits pattern
        # matches the start and whose pattern matches the whole number; an ordered
        # alternation of (?=leading)pattern branches picks the same one in one call.
        format_branches: list[str] = []
        prefixes: list[str] = []
        patterns: list[re.Pattern[str]] = []
        for f in metadata.number_format:
            if f.pattern is None:
                continue
            lead = f"(?={f.leading_digits_pattern[-1]})" if f.leading_digits_pattern else ""
            format_branches.append(f"(?P<f{len(prefixes)}>{lead}(?:{f.pattern}))")
            patterns.append(re.compile(f.pattern))
            rule = (f.national_prefix_formatting_rule or "").replace("\\1", "")
            prefixes.append(_NON_DIGITS.sub("", rule))
        self.formats = re.compile("|".join(format_branches)) if format_branches else None
        self.format_prefixes = tuple(prefixes)
        self.format_patterns = tuple(patterns)  # each format alone, for its groups

    def number_type(self, nsn: str) -> int | None:
        """The number's type, or None when it is not valid (as phonenumbers'
        ``_number_type_helper`` decides)."""
        if self.types is None or not _matches(nsn, self.general):
            return None
        m = self.types.fullmatch(nsn)
        if m is None or m.lastgroup is None:
            return None
        kind = self.types_in_order[int(m.lastgroup[1:])]
        if kind == _FIXED_LINE and (self.same_fixed_mobile or _matches(nsn, self.mobile)):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return kind

    def home_format(self, nsn: str, *, grouped: bool) -> tuple[str, tuple[int, ...] | None]:
        """How the national format writes ``nsn``: the digits it puts before it (the
        trunk "0"), and, when ``grouped``, where its groups end (None: no format)."""
        m = self.formats.fullmatch(nsn) if self.formats is not None else None
        if m is None or m.lastgroup is None:
            return "", None
        k = int(m.lastgroup[1:])
        if not grouped:
            return self.format_prefixes[k], None
        shown = self.format_patterns[k].fullmatch(nsn)
        if shown is None:
            return self.format_prefixes[k], None
        return self.format_prefixes[k], tuple(shown.end(g) for g in range(1, shown.re.groups))


def _layout_fits(home: tuple[int, ...] | None, breaks: tuple[int, ...], *, slack: int = 0) -> bool:
    """Whether groups ending at ``breaks`` are a way a number whose national format's
    groups end at ``home`` is written at home.

    Where the format has several groups ("415 555 0132", "06 12 34 56 78"), every written
    break must be one of them, give or take ``slack`` digits: some groups may run
    together, none is split elsewhere ("2026-000001" is no US number). Where it has two
    (an area code of varying length and the rest, as in Germany), the first written break
    must be within two digits of the format's. With no format for the number, or no
    written break, any grouping is taken.
    """
    if home is None or not breaks:
        return True
    if len(home) >= 2:
        return all(any(abs(b - h) <= slack for h in home) for b in breaks)
    if len(home) == 1:
        return abs(breaks[0] - home[0]) <= 2
    return True


_PLANS: dict[str, _RegionNumbers] = {}


_PLANS_BY_COUNTRY_CODE: dict[int, tuple[_RegionNumbers, ...]] = {}


def _plans_for_country_code(country_code: int) -> tuple[_RegionNumbers, ...]:
    found = _PLANS_BY_COUNTRY_CODE.get(country_code)
    if found is None:
        found = _PLANS_BY_COUNTRY_CODE[country_code] = _read_plans(country_code)
    return found


def _read_plans(country_code: int) -> tuple[_RegionNumbers, ...]:
    plans: list[_RegionNumbers] = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        key = region if region != "001" else f"+{country_code}"
        plan = _PLANS.get(key)
        if plan is None:
            metadata = (
                PhoneMetadata.metadata_for_nongeo_region(country_code)
                if region == "001"
                else PhoneMetadata.metadata_for_region(region)
            )
            if metadata is None:
                continue
            plan = _PLANS[key] = _RegionNumbers(region, metadata)
        plans.append(plan)
    return tuple(plans)


def _country_number_type(plans: tuple[_RegionNumbers, ...], nsn: str) -> int | None:
    """The type of ``nsn`` under a country code shared by ``plans`` (main region first),
    as phonenumbers decides: the region is the first whose leading digits match, or,
    for regions without leading digits, the first where the number is valid."""
    for plan in plans:
        if plan.leading is not None:
            if plan.leading.match(nsn):
                return plan.number_type(nsn)
        else:
            number_type = plan.number_type(nsn)
            if number_type is not None:
                return number_type
    return None


def _valid_international(digits: str) -> bool:
    """Whether ``digits`` (what follows the "+") is a valid number of some country."""
    for size in (1, 2, 3):
        plans = _plans_for_country_code(int(digits[:size]))
        if not plans:
            continue
        rest = digits[size:]
        if _country_number_type(plans, rest) is not None:
            return True
        prefix = plans[0].national_prefix
        # "+49 (0)30 …": phonenumbers drops a national prefix written after the code
        return bool(
            prefix
            and rest.startswith(prefix)
            and _country_number_type(plans, rest[len(prefix) :]) is not None
        )
    return False


class _RegionRule:
    """A configured phone region: its country code's plans and how numbers are written
    at home there."""

    __slots__ = ("any_plan", "national_prefix", "plans", "region")

    def __init__(self, region: str) -> None:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.country_code is None:
            raise PolicyError(f"no phone number metadata for region {region!r}")
        self.region = region
        self.plans = _plans_for_country_code(metadata.country_code)
        self.national_prefix = self.plans[0].national_prefix
        # One regex for "valid in some plan of this country code": most digit strings
        # fail it in a single call.
        self.any_plan = re.compile("|".join(f"(?:{p.general[1].pattern})" for p in self.plans))

    def home_number_type(self, digits: str, breaks: tuple[int, ...] = ()) -> int | None:
        """The type of national number ``digits`` as written at home, or None.

        "1732623122" is no German number: Germans write "01732 623122" (the national
        format, from the country's main region, decides). The national prefix may also
        be written where the home format leaves it out ("1 415 555 0132").

        ``breaks`` says where the written groups of digits end ("415-555-0132": 3, 6);
        a grouping no one writes at home ("2026-000001", a US number by its digits) is
        no phone number (:func:`_layout_fits`).
        """
        prefix = self.national_prefix
        home = self.plans[0]
        # Without its trunk prefix and with fewer than nine digits, a number is a local
        # one ("4004-1234" in Brazil): as likely a form or order number as a phone.
        if (len(digits) >= 9 or not prefix) and self.any_plan.fullmatch(digits):
            number_type = _country_number_type(self.plans, digits)
            if number_type is not None:
                # One format match gives both the prefix the home format writes and,
                # when the number is written in groups, where its groups end.
                home_prefix, home_breaks = home.home_format(digits, grouped=bool(breaks))
                # Written as at home, or a mobile number in two groups exactly as at
                # home with the trunk prefix left out ("98765 43210" in India, where
                # "098765 43210" is the format but mobiles are written without the 0;
                # not "5 12 23 34 45", a row of numbers in French phone groups).
                if (not home_prefix and _layout_fits(home_breaks, breaks)) or (
                    len(breaks) == 1 and number_type in _BARE_PHONE_TYPES and breaks == home_breaks
                ):
                    return number_type
        if prefix and digits.startswith(prefix) and self.any_plan.fullmatch(digits, len(prefix)):
            nsn = digits[len(prefix) :]
            if breaks:
                # The trunk prefix may stand alone ("1-415-555-0132", "(0) 30 …").
                cut = len(prefix)
                breaks = tuple(b - cut for b in breaks if b != cut)
                # Written with its trunk prefix, a number is surely meant as one: a
                # group boundary one digit off is how many write them ("0207 946 0958").
                if any(b <= 0 for b in breaks) or not _layout_fits(
                    home.home_format(nsn, grouped=True)[1], breaks, slack=1
                ):
                    return None
            return _country_number_type(self.plans, nsn)
        return None


def _card_window(
    text: str, start: int, rs: int, ends: Sequence[int], i: int, candidates: tuple[int, ...]
) -> int | None:
    """Index of the last group of the longest card number starting at group ``i`` (at
    ``start``), of the ``candidates`` the run's shape allows (longest first, counted
    from ``i``); ``ends`` within the run."""
    for r in candidates:
        # card groups are joined by spaces or hyphens only
        digits = text[start : rs + ends[i + r]].translate(_DROP_PHONE_SEPARATORS)
        if _card_number_ok(digits if digits.isascii() else _ascii_digits(digits)):
            return i + r
    return None


def _card_candidates(
    starts: Sequence[int], ends: Sequence[int], seps: Sequence[str], i: int, right_ok: bool
) -> tuple[int, ...]:
    """Last groups of the card-shaped windows starting at group ``i``, counted from it,
    longest first: the length, layout and boundaries fit; the digits are still to be
    checked. Reads groups ``i`` up to the one that takes the digits past 19, and no more
    than five groups: every layout but a contiguous number opens with four digits."""
    last = len(starts) - 1
    size = ends[i] - starts[i]
    if size != 4:
        # a contiguous number: no other layout opens with this group
        if 13 <= size <= 19 and (right_ok if i == last else _card_boundary(seps[i])):
            return (0,)
        return ()
    # The lengths of the groups joined on by spaces or hyphens, within 19 digits.
    more: list[int] = []
    total = 4
    k = i
    while k < last and len(more) < 4 and seps[k] in _CARD_SEPS:
        k += 1
        total += ends[k] - starts[k]
        if total > 19:
            break
        more.append(ends[k] - starts[k])
    found: list[int] = []
    # 4-4-4-4-1 .. 4-4-4-4-3, then 4-4-4-1 .. 4-4-4-4, then 4-6-5, 4-6-4 and 4-5-6
    for r in range(len(more), 1, -1):
        if r >= 3:
            if any(g != 4 for g in more[: r - 1]) or not 1 <= more[r - 1] <= 4:
                continue
        elif (4, more[0], more[1]) not in _CARD_SPECIAL_LAYOUTS:
            continue
        j = i + r
        if right_ok if j == last else _card_boundary(seps[j]):
            found.append(r)
    return tuple(found)


# --- shapes: what a run of digits and separators looks like, without its digits --------
# The structural checks (which windows of a run may hold a card or a phone number, and
# how a phone number is written) depend only on where digits and separators sit, so
# they are worked out once per shape. A shape holds no digit of the text: every digit is
# "0" in it. Only these shapes are cached, never what the text said.

_SHAPE_DIGITS: Final = str.maketrans("123456789", "000000000")
_ANY_DIGIT: Final = re.compile(r"\d")
_SHAPE_CACHE_MAX: Final = 4096
# Only shapes up to this long are kept: a plan grows with its run, and a long stretch of
# numbers (a table of measurements) would otherwise pin megabytes per shape.
_SHAPE_CACHE_LEN: Final = 64
# How a phone number is written: (international, bare digits, where the national part
# starts when it must not open with a date or -1, characters to skip: an unclosed "(").
_PhoneForm = tuple[bool, bool, int, int]
# Where a phone number may end: (last group, counted from the first, digits, its form
# after no opener, "+", "("; None where the opener cannot come before that group).
_PhoneEnds = tuple[tuple[int, int, tuple[_PhoneForm | None, ...]], ...]
_NO_OPENER: Final = 0
_PLUS: Final = 1
_PAREN: Final = 2
_ALL_OPENERS: Final = -1

# One group's part of a run's plan: the last groups of the card windows starting at it
# (counted from it), where a phone number starting with it would begin (an offset from
# the group, None when none can), and where such a number may end.
_GroupPlan = tuple[tuple[int, ...], int | None, _PhoneEnds]
_RunPlan = tuple[
    tuple[int, ...],  # where each group starts, within the run
    tuple[int, ...],  # where each group ends
    tuple[int, ...],  # digits from each group on
    tuple[tuple[int, ...], ...],  # card windows from each group: their last groups
    tuple[int | None, ...],  # where a phone number from each group would start (offset)
    tuple[_PhoneEnds, ...],  # where such a number may end
]
_RUN_PLANS: dict[tuple[str, bool, bool], _RunPlan] = {}
# Long runs are planned group by group, each group's part looked up by the shape of the
# groups it depends on (see _long_run_groups); only neighbourhoods this long are kept.
_GROUP_PLANS: dict[tuple[str, int, bool, bool], _GroupPlan] = {}
_NEIGHBOURHOOD_CACHE_LEN: Final = 96
# What a phone number's written form is, by the shape of its window and opener.
_PHONE_FORMS: dict[tuple[str, bool], _PhoneForm | None] = {}
# Card and phone windows from a group end before the group that takes their digits past
# 19; a window's verdicts also read the separators and group lengths up to two groups
# past its end and two groups before its start (_ambiguous_chain).
_WINDOW_DIGITS: Final = 19
_NEIGHBOURS: Final = 2
# The part of a group no window starts at, by where a phone number would start there.
_NO_WINDOWS: Final[dict[int | None, _GroupPlan]] = {
    offset: ((), offset, ()) for offset in (0, -1, None)
}


def _shape(chars: str) -> str:
    """``chars`` with every decimal digit written as "0"."""
    return chars.translate(_SHAPE_DIGITS) if chars.isascii() else _ANY_DIGIT.sub("0", chars)


def _phone_form(window: str, inside_chain: bool) -> _PhoneForm | None:
    """How a phone number of shape ``window`` is written; None when none is so."""
    key = (window, inside_chain)
    if key in _PHONE_FORMS:
        return _PHONE_FORMS[key]
    skip = 0
    shown = window
    if window[0] == "(" and ")" not in window:
        shown = window[1:]
        skip = 1
    read = _read_phone_form(shown, inside_chain)
    form = None if read is None else (*read, skip)
    if len(window) <= _SHAPE_CACHE_LEN:
        if len(_PHONE_FORMS) >= _SHAPE_CACHE_MAX:
            _PHONE_FORMS.clear()
        _PHONE_FORMS[key] = form
    return form


def _read_phone_form(window: str, inside_chain: bool) -> tuple[bool, bool, int] | None:
    shape = _PHONE_SHAPE.fullmatch(window)
    if shape is None:
        return None
    rest = shape.group("rest")
    intl = shape.group("cc") is not None or shape.group("plus") is not None
    seps = set(rest.translate(_DROP_DIGITS))
    bare = not seps and not intl and shape.group("area2") is None
    if inside_chain and " " in seps and not intl:
        # "0510 5100" inside "2720 1051 0510 5100": a national number written with
        # spaces must be the whole space-joined chain, or where would it start?
        return None
    date_from = -1
    if seps:
        groups = rest.split(next(iter(seps))) if len(seps) == 1 else _NON_DIGITS.split(rest)
        if seps <= {" ", "-"}:
            if len(groups) > 1 and len(groups[0]) > 6 and not intl:
                return None
        elif seps == {"."}:
            if rest.count(".") < 2 or any(len(g) > 4 for g in groups):
                return None
            if not intl and len(groups) == 4 and all(len(g) <= 3 for g in groups):
                return None  # an IPv4 address
        elif seps == {"/"}:
            if rest.count("/") != 1:
                return None
        else:
            return None
        if any(len(g) > 8 for g in groups):
            return None
        if not intl and shape.group("area2") is None:
            date_from = shape.start("rest")
    return intl, bare, date_from


def _phone_candidates(
    shape: str,
    starts: Sequence[int],
    ends: Sequence[int],
    seps: Sequence[str],
    i: int,
    right_ok: bool,
    tail_blocked: bool,
    opener: int,
) -> _PhoneEnds:
    """Where a phone number starting at group ``i`` may end, longest first: (last group
    counted from ``i``, digits, how it is written after each opener). At most seven
    groups and 17 digits; at a space, or at the run's end when the token ends there.
    Only the form after ``opener`` is worked out (all three for ``_ALL_OPENERS``)."""
    last = len(starts) - 1
    top = i
    digits = ends[i] - starts[i]
    while top < last and top + 1 - i < _MAX_PHONE_GROUPS:
        if digits + ends[top + 1] - starts[top + 1] > 17:
            break
        top += 1
        digits += ends[top] - starts[top]
    # Fewer digits than any number has: 7 after a "+", else 8 (TextScanner._run).
    fewest = 7 if opener == _ALL_OPENERS else 8
    found: list[tuple[int, int, tuple[_PhoneForm | None, ...]]] = []
    for j in range(top, i - 1, -1):
        if j < top:
            digits -= ends[j + 1] - starts[j + 1]
        if digits < fewest:
            break
        if j == last:
            if not right_ok or tail_blocked:
                continue
        elif seps[j] != " ":
            continue
        window = shape[starts[i] : ends[j]]
        chain = " " in window and _ambiguous_chain(seps, starts, ends, i, j)
        forms: tuple[_PhoneForm | None, ...]
        if opener == _NO_OPENER:
            if chain:
                continue  # national, written with spaces inside a chain (_read_phone_form)
            forms = (_phone_form(window, False), None, None)
        elif opener == _PAREN:
            forms = (None, None, _phone_form("(" + window, chain))
        else:
            forms = tuple(_phone_form(o + window, chain) for o in ("", "+", "("))
        if any(forms):
            found.append((j - i, digits, forms))
    return tuple(found)


def _group_plan(
    shape: str,
    starts: Sequence[int],
    ends: Sequence[int],
    seps: Sequence[str],
    i: int,
    right_ok: bool,
    tail_blocked: bool,
) -> _GroupPlan:
    """Group ``i``'s part of the plan of a run of shape ``shape``."""
    cards = (
        _card_candidates(starts, ends, seps, i, right_ok)
        if i == 0 or _card_boundary(seps[i - 1])
        else ()
    )
    # A phone number starts at the run's start (decided on the text before it), after
    # a space, or at the "(" after one.
    if i == 0:
        return (
            cards,
            0,
            _phone_candidates(shape, starts, ends, seps, i, right_ok, tail_blocked, _ALL_OPENERS),
        )
    sep = seps[i - 1]
    if sep == " ":
        opener, phone_start = _NO_OPENER, 0
    elif sep == " (":
        opener, phone_start = _PAREN, -1
    else:
        return cards, None, ()
    phone = _phone_candidates(shape, starts, ends, seps, i, right_ok, tail_blocked, opener)
    return cards, phone_start, phone


def _groups(shape: str) -> tuple[list[int], list[int], tuple[str, ...]]:
    """Where the digit groups of a run's shape start and end, and what separates them."""
    starts: list[int] = []
    ends: list[int] = []
    for g in _DIGIT_GROUP.finditer(shape):
        starts.append(g.start())
        ends.append(g.end())
    seps = tuple(shape[ends[k] : starts[k + 1]] for k in range(len(starts) - 1))
    return starts, ends, seps


def _run_plan(shape: str, right_ok: bool, tail_blocked: bool) -> _RunPlan:
    """A run's groups (offsets within the run), its digits from each group on, and for
    each group the card and phone windows its shape allows, longest first."""
    key = (shape, right_ok, tail_blocked)
    plan = _RUN_PLANS.get(key)
    if plan is not None:
        return plan
    starts, ends, seps = _groups(shape)
    n = len(starts)
    digits_from = [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        digits_from[k] = digits_from[k + 1] + ends[k] - starts[k]
    if len(shape) <= _SHAPE_CACHE_LEN:
        parts = [
            _group_plan(shape, starts, ends, seps, i, right_ok, tail_blocked) for i in range(n)
        ]
    else:
        parts = _long_run_groups(shape, starts, ends, seps, right_ok, tail_blocked)
    cards, phone_starts, phone_ends = zip(*parts, strict=True)
    plan = (tuple(starts), tuple(ends), tuple(digits_from), cards, phone_starts, phone_ends)
    if len(shape) <= _SHAPE_CACHE_LEN:
        if len(_RUN_PLANS) >= _SHAPE_CACHE_MAX:
            _RUN_PLANS.clear()
        _RUN_PLANS[key] = plan
    return plan


def _long_run_groups(
    shape: str,
    starts: list[int],
    ends: list[int],
    seps: tuple[str, ...],
    right_ok: bool,
    tail_blocked: bool,
) -> list[_GroupPlan]:
    """Each group's part of the plan of a long run (a table of numbers), at a bounded
    cost per group. A group's part depends only on its neighbourhood: from two groups
    before it to two groups past the last one a window from it can reach (a window has
    at most seven groups and 19 digits). So it is worked out on that neighbourhood
    alone and looked up by the neighbourhood's shape; and a group no window can start
    at (too few digits ahead, not after a space or "(", not four digits or 13-19)
    costs no look-up at all."""
    n = len(starts)
    last = n - 1
    # digits_before[k]: digits in groups 0 .. k-1
    digits_before = list(accumulate((e - s for s, e in zip(starts, ends, strict=True)), initial=0))
    parts: list[_GroupPlan] = []
    append = parts.append
    get = _GROUP_PLANS.get
    for i in range(n):
        size = ends[i] - starts[i]
        if i:
            sep = seps[i - 1]
            phone_start = 0 if sep == " " else -1 if sep == " (" else None
            card = (size == 4 or 13 <= size <= 19) and "." not in sep and "/" not in sep
            fewest = 8
        else:
            phone_start, card, fewest = 0, size == 4 or 13 <= size <= 19, 7
        if not card and (
            phone_start is None
            or digits_before[min(i + _MAX_PHONE_GROUPS, n)] - digits_before[i] < fewest
        ):
            append(_NO_WINDOWS[phone_start])  # as _group_plan would find
            continue
        # The group that takes the digits from group i past 19 (n when none does):
        # windows from i end before it, or at i when i alone has more than 19 digits,
        # and at most seven groups on; their verdicts read two groups further.
        reach = bisect_right(digits_before, digits_before[i] + _WINDOW_DIGITS) - 1
        hi = min(reach - 1 if reach > i else i, i + _MAX_PHONE_GROUPS - 1) + _NEIGHBOURS
        lo = i - _NEIGHBOURS if i > _NEIGHBOURS else 0
        if hi >= last:
            hi = last
            key = (shape[starts[lo] : ends[hi]], i - lo, right_ok, tail_blocked)
        else:
            # The neighbourhood stops short of the run's end: nothing here reads it.
            key = (shape[starts[lo] : ends[hi]], i - lo, False, False)
        part = get(key)
        if part is None:
            # Worked out on the neighbourhood's groups alone (offsets into the run's
            # shape), so that it is what the key says, whatever else the run holds.
            part = _group_plan(shape, starts[lo : hi + 1], ends[lo : hi + 1], seps[lo:hi], *key[1:])
            if len(key[0]) <= _NEIGHBOURHOOD_CACHE_LEN:
                if len(_GROUP_PLANS) >= _SHAPE_CACHE_MAX:
                    _GROUP_PLANS.clear()
                _GROUP_PLANS[key] = part
        append(part)
    return parts


def _run_start(text: str, rs: int, left_ok: bool) -> int | None:
    """Where a phone number starting with a run's first group begins (with its "+" or
    "("), or None when it cannot begin there."""
    start = rs
    if rs > 0 and text[rs - 1] in "+(":
        start = rs - 1
    elif not left_ok:
        return None
    if start > 0:
        before = text[start - 1]
        if before.isalnum() or before == "+":
            return None
        if before in "-./" and start > 1 and text[start - 2].isalnum():
            return None  # a GUID, a path, a version: part of a longer token
    return start


def _ambiguous_chain(
    seps: Sequence[str], starts: Sequence[int], ends: Sequence[int], i: int, j: int
) -> bool:
    """Whether groups ``i..j`` sit inside a longer chain of space-joined groups, so that
    nothing tells where a number written with spaces would start or end: "0510 5100"
    inside "2720 1051 0510 5100". A neighbour that belongs to another token ("2026-03-01",
    joined by other separators) or a short count ("room 12", "2 times") does not count."""
    last = len(starts) - 1

    def continues(k: int, further: int | None) -> bool:
        if further is None:
            return ends[k] - starts[k] > 2
        return seps[min(k, further)] == " "

    if i > 0 and seps[i - 1] == " " and continues(i - 1, i - 2 if i > 1 else None):
        return True
    return j < last and seps[j] == " " and continues(j + 1, j + 1 if j + 1 < last else None)


# What _DATE_SHAPES can match, whatever the digits.
_DATE_LAYOUT: Final = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:\d{2}|\d{4})"
)
_CONTIGUOUS: Final = "contiguous"  # a run of digits alone
_RUN: Final = "run"  # a run of digit groups
_RUN_UNLESS_DATE: Final = "run unless a date"  # one, unless its digits make a date
_StretchRuns = tuple[tuple[int, int, str, str], ...]
_STRETCH_RUNS: dict[str, _StretchRuns] = {}


def _stretch_runs(shape: str) -> _StretchRuns:
    """The runs in a stretch of this shape that may hold a card or a phone number:
    (start, end, what to do, the run's shape), offsets within the stretch."""
    runs = _STRETCH_RUNS.get(shape)
    if runs is not None:
        return runs
    found: list[tuple[int, int, str, str]] = []
    for r in _NUM_RUN.finditer(shape):
        run = r.group()
        if run.isdigit():
            found.append((r.start(), r.end(), _CONTIGUOUS, run))
            continue
        form = _run_form(run)
        if form is not None:
            found.append((r.start(), r.end(), form, run))
    runs = tuple(found)
    if len(shape) <= _SHAPE_CACHE_LEN:
        if len(_STRETCH_RUNS) >= _SHAPE_CACHE_MAX:
            _STRETCH_RUNS.clear()
        _STRETCH_RUNS[shape] = runs
    return runs


def _run_form(shape: str) -> str | None:
    """Cheap verdicts on common runs that hold neither a card nor a phone number:
    decimals, versions, IP addresses, dates. None when a run of this shape never holds
    one; else whether its digits may still make it a date (checked on the text)."""
    if "." in shape and not any(c in shape for c in " -/()"):
        groups = shape.split(".")
        if (
            len(groups) < 3
            or any(len(g) > 4 for g in groups)
            or (len(groups) == 4 and all(len(g) <= 3 for g in groups))
        ):
            return None
        return _RUN_UNLESS_DATE if _DATE_LAYOUT.fullmatch(shape) else _RUN
    if "/" in shape and not any(c in shape for c in " -.()"):
        return None if shape.count("/") > 1 else _RUN
    return _RUN_UNLESS_DATE if _DATE_LAYOUT.fullmatch(shape) else _RUN


def _iban_at(text: str, start: int) -> int | None:
    """End of the IBAN starting at ``start``, or None when there is none."""
    if start > 0 and text[start - 1].isalnum():
        return None
    expected = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if expected is None:
        return None
    m = _IBAN_BODY.match(text, start)
    if m is None:
        return None
    end = _iban_end(text, start, m.end(), expected)
    if end is None or not _iban_checksum_ok(text[start:end].replace(" ", "")):
        return None
    return end


def _iban_end(text: str, start: int, limit: int, expected: int) -> int | None:
    """End of an IBAN of ``expected`` characters starting at ``start``, or None."""
    count = 0
    pos = start
    while pos < limit:
        c = text[pos]
        pos += 1
        if c != " ":
            count += 1
            if count == expected:
                if pos < len(text) and text[pos].isalnum():
                    return None  # the run goes on: a longer token, or a wrong length
                return pos
    return None


def _resolve(candidates: list[Finding]) -> list[Finding]:
    """Sort and drop overlaps: the earlier finding wins, then the longer one."""
    candidates.sort(key=lambda f: (f.start, -f.end))
    kept: list[Finding] = []
    last_end = -1
    for f in candidates:
        if f.start >= last_end:
            kept.append(f)
            last_end = f.end
    return kept


def _apply(text: str, findings: list[Finding], replace: Callable[[Finding, str], str]) -> str:
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(replace(f, text[f.start : f.end]))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


DEFAULT_SCANNER: Final = TextScanner()
