"""Free-text redaction of HTML, XML and JavaScript, with escaped text decoded first.

A browser shows ``jane&#64;example.com`` as an address and ``4111&nbsp;1111&nbsp;...``
as a card number; in a script, ``"jane\\u0040example.com"`` is an address. The detectors
see none of them in the raw text. So the text is decoded into a *view* (character
references by ``html.unescape``'s rules, JavaScript string escapes, and in a second view
percent-escapes too), keeping a map from the view back to the original text; the
detectors run on the view, and each finding's *original* span, escapes and all, is
replaced by the (escaped) replacement. A last pass scans the text as written, so nothing
the plain text redactor would find is missed. Decoding more than a browser would (a
``\\x41`` outside a script) can only make the view differ from the raw text, and the raw
text is scanned too: the result redacts at least what plain text redaction does.

Used by the middleware on buffered bodies; no state, no I/O.
"""

from __future__ import annotations

import html
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from html.entities import html5
from io import StringIO
from typing import Final
from urllib.parse import quote, quote_plus

from ._detection import _INVISIBLE_SEPARATORS, _SPACE_SEPARATORS, Finding, TextScanner

__all__ = ["html_escaper", "reads_the_same_decoded", "redact_markup", "script_escaper"]

Replace = Callable[[Finding, str], str]
Escape = Callable[[str], str]


# What a decoded view decoded, so a replacement can be written back in that encoding.
_REFS: Final = 1  # character references: written back HTML-escaped
_JS: Final = 2  # string escapes: written back as string escapes
_PERCENT_ESCAPES: Final = 4  # percent-escapes: written back percent-encoded
_PLUS: Final = 8  # ... with "+" for a space, as the original did (a query)
_INVISIBLE_DROPPED: Final = 16  # characters nobody sees, dropped: nothing to write back
_LITERAL_TAIL: Final = _REFS | _JS  # views whose escapes may end in text kept as it is
_WRITTEN_BACK: Final = _JS | _PERCENT_ESCAPES  # views whose encoding replacements take


class _Map:
    """Positions in a decoded view back to positions in the text it was decoded from.

    One entry per decoded escape (view span → original span, in order); between entries
    the offset is constant. Four machine integers an escape, whatever the text. ``kind``
    says what the view decoded (``_REFS``, ``_JS``, ...).
    """

    __slots__ = ("_oe", "_os", "_ve", "_vs", "kind")

    def __init__(self, kind: int = 0) -> None:
        self.kind = kind
        self._vs = array("q")
        self._ve = array("q")
        self._os = array("q")
        self._oe = array("q")

    def start(self, pos: int) -> int:
        """Where a span starting at view ``pos`` starts in the original."""
        i = bisect_right(self._vs, pos) - 1
        if i < 0:
            return pos
        ve = self._ve[i]
        return self._os[i] if pos < ve else pos - ve + self._oe[i]

    def end(self, pos: int) -> int:
        """Where a span ending (exclusively) at view ``pos`` ends in the original."""
        i = bisect_left(self._vs, pos) - 1
        if i < 0:
            return pos
        ve = self._ve[i]
        return self._oe[i] if pos <= ve else pos - ve + self._oe[i]

    def decoded_in(self, start: int, end: int) -> int:
        """``kind`` if something was decoded inside the view span ``start:end`` (for the
        percent view, with ``_PLUS`` when one of those was a ``+``), else 0."""
        i = bisect_right(self._ve, start)  # the first entry ending after ``start``
        if i == len(self._vs) or self._vs[i] >= end:
            return 0
        kind = self.kind
        if kind == _PERCENT_ESCAPES:
            stop = bisect_left(self._vs, end)
            if any(self._oe[j] - self._os[j] == 1 for j in range(i, stop)):  # "+" only
                kind |= _PLUS
        return kind


Decoder = Callable[["re.Match[str]"], "str | None"]


def _decode(
    text: str, pattern: re.Pattern[str], decode: Decoder, kind: int
) -> tuple[str, _Map | None]:
    """``text`` with each match of ``pattern`` replaced by ``decode(match)`` (None: kept).

    Text the original holds as it is at the end of a match (the ``j`` of ``\\j``, the
    ``x`` of ``&ampx``) is not an entry of the map, so a finding that starts at the ``j``
    starts there in the original too, and its replacement leaves the backslash, which is
    not part of it, where it was.
    """
    out = StringIO()
    write = out.write
    positions = _Map(kind)
    vs, ve, os, oe = (
        positions._vs.append,
        positions._ve.append,
        positions._os.append,
        positions._oe.append,
    )
    last = shift = 0
    for match in pattern.finditer(text):
        rep = decode(match)
        if rep is None:
            continue
        start, end = match.span()
        size = len(rep)
        if size == end - start and rep == match.group():
            continue
        if kind & _LITERAL_TAIL and rep[-1:] == text[end - 1]:
            # A backslash before a character with no escape of its own ("\\j" is "j"), or a
            # named reference without ";" and the text that follows it ("&ampjane" is
            # "&jane"): the tail is the original's own text, not decoded.
            if kind == _JS:
                tail = 1 if end - start == 2 else 0
            else:
                common = min(size, end - start)
                tail = 0
                while tail < common and rep[size - 1 - tail] == text[end - 1 - tail]:
                    tail += 1
                if text[start + 1] == "#" or text[end - 1] == ";":
                    tail = 0
            end -= tail
            size -= tail
            rep = rep[:size]
        write(text[last:start])
        write(rep)
        vs(start + shift)
        ve(start + shift + size)
        os(start)
        oe(end)
        shift += size - end + start
        last = end
    if last == 0 and not positions._vs:
        return text, None
    write(text[last:])
    return out.getvalue(), positions


# -- the decoders ---------------------------------------------------------------------------
# html.unescape's own pattern: decimal, hex and named references, ";" optional as there.
_HTML_REF: Final = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _html_ref(match: re.Match[str]) -> str | None:
    ref = match.group()
    named = html5.get(ref[1:])  # "&amp;", "&nbsp": as html.unescape reads them, faster
    return named if named is not None else html.unescape(ref)


# JavaScript (and JSON) string escapes: surrogate pairs, \u{...}, \uXXXX, \xXX, legacy
# octal escapes (\0 to \377: "\100" is "@" in a script that is not strict; at most
# three digits, at most two from \4 up), and a backslash before any other character (\n,
# \/, \@, \8, a line continuation, \\ itself).
_JS_ESCAPE: Final = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})"
    r"|([0-3][0-7]{0,2}|[4-7][0-7]?)|(\r\n|[\s\S]))"
)
_JS_SINGLE: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\r\n": "",
    "\n": "",
    "\r": "",
    "\u2028": "",
    "\u2029": "",
}


def _js_escape(match: re.Match[str]) -> str | None:
    high, low, braced, four, two, octal, single = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if braced is not None:
        code = int(braced, 16)
        return chr(code) if code <= 0x10FFFF else None
    if four is not None:
        return chr(int(four, 16))
    if two is not None:
        return chr(int(two, 16))
    if octal is not None:
        return chr(int(octal, 8))
    return _JS_SINGLE.get(single, single)


# Percent-escapes (URLs in attributes and scripts): one ASCII byte, or one UTF-8
# sequence; "+" between digits, written as they are or percent-escaped, is a space in a
# query ("4111+1111+...", "4111+%31111"). Other bytes are left as written.
_PERCENT: Final = re.compile(
    r"%[0-7][0-9a-fA-F]|%[c-fC-F][0-9a-fA-F](?:%[89abAB][0-9a-fA-F]){1,3}"
    r"|(?:(?<=[0-9])|(?<=%3[0-9]))\+(?=[0-9]|%3[0-9])"
)


def _percent(match: re.Match[str]) -> str | None:
    text = match.group()
    if text == "+":
        return " "
    return bytes.fromhex(text.replace("%", "")).decode("utf-8", "replace")


# Characters a reader does not see (soft hyphen, zero-width space and joiners, word
# joiner, BOM): dropped from the view, so "4111&shy;1111..." reads as the number it shows.
_INVISIBLE_CHARS: Final = _INVISIBLE_SEPARATORS
_PLAIN_SPACES: Final = str.maketrans(dict.fromkeys(_SPACE_SEPARATORS, " "))
_INVISIBLE: Final = re.compile(f"[{_INVISIBLE_CHARS}]+")


def _invisible(match: re.Match[str]) -> str | None:
    return ""


def _has_any(text: str, chars: str) -> bool:
    # str.isascii is O(1); a substring test per character runs at memory speed, where a
    # regex character class looks at each character in turn (about 10x slower here).
    return not text.isascii() and any(ch in text for ch in chars)


class _View:
    """A decoded view of the text and the maps back to it (innermost first)."""

    __slots__ = ("maps", "text")

    def __init__(self, text: str, maps: list[_Map]) -> None:
        self.text = text
        self.maps = maps

    def then(self, pattern: re.Pattern[str], decode: Decoder, kind: int) -> _View:
        if pattern is _INVISIBLE and not _has_any(self.text, _INVISIBLE_CHARS):
            return self
        text, positions = _decode(self.text, pattern, decode, kind)
        if positions is None:
            return self
        return _View(text, [*self.maps, positions])

    def original(self, start: int, end: int) -> tuple[int, int, int]:
        """The original span of the view span ``start:end``, and what was decoded in it."""
        decoded = 0
        for positions in reversed(self.maps):
            if positions.kind & _WRITTEN_BACK:
                decoded |= positions.decoded_in(start, end)
            start, end = positions.start(start), positions.end(end)
        return start, end, decoded


def _views(text: str) -> list[_View]:
    """The views to scan: the text as written (always), with character references and
    string escapes decoded (when there are any), and with percent-escapes decoded too."""
    written = _View(text, [])
    views = [written.then(_INVISIBLE, _invisible, _INVISIBLE_DROPPED)]
    decoded = written
    if "&" in text or "\\" in text:
        decoded = written.then(_HTML_REF, _html_ref, _REFS).then(_JS_ESCAPE, _js_escape, _JS)
        if decoded is not written:
            views.append(decoded.then(_INVISIBLE, _invisible, _INVISIBLE_DROPPED))
    if "%" in decoded.text or "+" in decoded.text:
        percent = decoded.then(_PERCENT, _percent, _PERCENT_ESCAPES)
        if percent is not decoded:
            views.append(percent.then(_INVISIBLE, _invisible, _INVISIBLE_DROPPED))
    return views


_ESCAPE_STARTS: Final = re.compile(r"[&\\%+]").search
_DECODED_DIFFERENTLY: Final = re.compile(f"[&\\\\%+{_INVISIBLE_CHARS}]").search


def reads_the_same_decoded(text: str) -> bool:
    """True when no view of ``text`` differs from it: no reference, escape or ``+``
    (between digits, a space) to decode, no invisible character. Such
    text can take plain text redaction (and its prefilter) for the same result. (For
    short texts, such as server-sent events, one regex pass beats a scan per character.)"""
    if text.isascii():
        return _ESCAPE_STARTS(text) is None
    return _DECODED_DIFFERENTLY(text) is None


def redact_markup(
    text: str,
    scanner: TextScanner,
    replace: Replace,
    *,
    charset: str = "utf-8",
    script: bool = False,
) -> str:
    """``text`` (HTML, XML or JavaScript) with what the detectors find redacted, whether
    it is written as is or behind character references, string escapes or
    percent-escapes. ``replace`` is the redactor's text replacer. Each replacement is
    written back in the encoding of what it replaces, so the markup around it stays
    valid: percent-encoded where percent-escapes were decoded in the span (a URL), as
    string escapes where string escapes were (or everywhere, with ``script``), else
    HTML-escaped; characters ``charset`` lacks as references or escapes."""
    spans: list[tuple[int, int, Finding, str, int]] = []
    for view in _views(text):
        seen = view.text  # Unicode spaces and dashes: the scanner reads them itself
        for finding in scanner.scan(seen):
            start, end, decoded = view.original(finding.start, finding.end)
            # The replacement is made from the text with plain spaces ("&nbsp;" between
            # card groups is masked as "**** **** …", as the page shows it).
            matched = seen[finding.start : finding.end].translate(_PLAIN_SPACES)
            spans.append((start, end, finding, matched, decoded))
    if not spans:
        return text
    escape = script_escaper(charset) if script else html_escaper(charset)
    as_script = script_escaper(charset)

    def written_back(widest: tuple[int, int, Finding, str, int], decoded: int) -> str:
        out = replace(widest[2], widest[3])
        if decoded & _PERCENT_ESCAPES:
            return _percent_escape(out, plus=bool(decoded & _PLUS))
        if decoded & _JS and not script:
            out = as_script(out)  # what it writes is inert as HTML, too
        return escape(out)

    # The views mostly find the same spans; where spans overlap, the union is replaced by
    # the replacement for the widest (what else lies in the union is dropped: more
    # redaction, never less), written back in every encoding decoded in the union.
    spans.sort(key=lambda span: (span[0], span[0] - span[1]))
    out = StringIO()
    last = 0

    def emit(
        start: int, end: int, widest: tuple[int, int, Finding, str, int], decoded: int
    ) -> None:
        out.write(text[last:start])
        out.write(written_back(widest, decoded))

    group_start, group_end, widest = spans[0][0], spans[0][1], spans[0]
    decoded = widest[4]
    for span in spans[1:]:
        if span[0] < group_end:
            if span[1] - span[0] > widest[1] - widest[0]:
                widest = span
            group_end = max(group_end, span[1])
            decoded |= span[4]
            continue
        emit(group_start, group_end, widest, decoded)
        last = group_end
        group_start, group_end, widest = span[0], span[1], span
        decoded = span[4]
    emit(group_start, group_end, widest, decoded)
    out.write(text[group_end:])
    return out.getvalue()


# -- writing replacements back ----------------------------------------------------------------
def _fits(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def html_escaper(charset: str) -> Escape:
    """Replacements as HTML text: ``&<>"'`` escaped, characters the charset lacks as
    numeric references."""

    def escape(text: str) -> str:
        text = html.escape(text, quote=True)
        if text.isascii() or _fits(text, charset):
            return text
        return text.encode(charset, "xmlcharrefreplace").decode(charset)

    return escape


_JS_PLAIN: Final = re.compile(r"[A-Za-z0-9 *.@+\-_()\[\]:,/#=~]*")


def script_escaper(charset: str) -> Escape:
    """Replacements as JavaScript string content: anything that could end a string or a
    script, and characters the charset lacks, as ``\\uXXXX``."""

    def escape(text: str) -> str:
        if _JS_PLAIN.fullmatch(text):
            return text
        out = []
        for ch in text:
            if _JS_PLAIN.fullmatch(ch) or (
                ch.isprintable() and ord(ch) > 0x7F and _fits(ch, charset)
            ):
                out.append(ch)
                continue
            code = ord(ch)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        return "".join(out)

    return escape


# What a replacement keeps as written in a URL: letters, digits and the characters of a
# mask or an address ("*", "@", ".", "-", "_", "~"); "+" too, unless a "+" meant a space.
_URL_SAFE: Final = "*@.-_~"


def _percent_escape(text: str, *, plus: bool) -> str:
    """``text`` percent-encoded (UTF-8) for a URL: spaces as ``%20``, or as ``+`` (and a
    ``+`` as ``%2B``) where the original wrote spaces as ``+``."""
    if plus:
        return quote_plus(text, safe=_URL_SAFE)
    return quote(text, safe=_URL_SAFE + "+")
