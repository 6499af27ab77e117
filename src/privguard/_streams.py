"""Redacting text that arrives in chunks: streamed responses, log tails, NDJSON.

:class:`TextStreamRedactor` releases text once no later chunk could make it part of a
finding, and holds back only the tail that still could (a card number whose last group
has not arrived, the local part of an address whose ``@`` may be next) and small chunks
it gathers before scanning (``_REREAD_PER_NEW``). Fed in any
chunking, its output equals ``scanner.redact`` of the whole text, as long as the held
tail stays within the look-behind; ``docs/detectors.md`` says what happens when it
cannot (it fails closed).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Final, Protocol

from ._detection import _WIDE_DOTS, Finding, TextScanner, _resolve
from ._errors import PolicyError, RedactionError, UnparseableBody
from ._taxonomy import Categories

__all__ = [
    "ByteStreamRedactor",
    "LineStreamRedactor",
    "TextRedactor",
    "TextStreamRedactor",
]

# Context kept from released text: enough for every look-back a detector makes (the
# 64-character local part, "order #" before a bare number, the character before a run).
_CONTEXT: Final = 64
# The longest tail a detector can hold without an open e-mail address: a card number
# window after the numeric tail's 45 characters, or an IBAN and its separators.
MIN_LOOKBEHIND: Final = 96
# When to scan. A scan rereads the context and the held tail besides the text fed since
# the last one, so scanning after every small chunk (a character, a token) rereads them
# for each: over 100 characters read per character fed in a table of digit groups, which
# then streamed at 0.01 MB/s in 1-character chunks. Small chunks are gathered until the
# new text is at least half of what the scan rereads, or _SCAN_AFTER characters, or the
# held text would outgrow the look-behind. With the default look-behind a scan then
# reads at most three characters per character fed, unless the tail held after the last
# scan is over 64 characters (an open address); and text already decided waits for
# fewer than _SCAN_AFTER characters of later text than it did with a scan per chunk.
_REREAD_PER_NEW: Final = 2
_SCAN_AFTER: Final = 64


class TextRedactor(Protocol):
    """Anything that redacts a text stream chunk by chunk."""

    def feed(self, chunk: str) -> str: ...

    def finish(self) -> str: ...


class TextStreamRedactor:
    """Redacts a text stream with a scanner, chunk by chunk.

    ``feed`` returns the text that is now safe to release (possibly ``""``); ``finish``
    returns the rest. Findings handed to ``replace`` carry offsets into the whole
    stream, as if the stream had been one text.

    >>> from privguard._detection import DEFAULT_SCANNER
    >>> r = TextStreamRedactor(DEFAULT_SCANNER, lambda f, s: "[EMAIL]")
    >>> r.feed("Contact jane.") + r.feed("doe@example.com now") + r.finish()
    'Contact [EMAIL] now'
    """

    def __init__(
        self,
        scanner: TextScanner,
        replace: Callable[[Finding, str], str],
        *,
        lookbehind: int = 128,
    ) -> None:
        if lookbehind < MIN_LOOKBEHIND:
            raise PolicyError(f"lookbehind must be at least {MIN_LOOKBEHIND} characters")
        self._scanner = scanner
        self._replace = replace
        self._lookbehind = lookbehind
        self._context = ""  # the last released characters, as they were
        self._pending = ""  # characters not released yet
        self._offset = 0  # position of _pending[0] in the whole stream
        self._unscanned = 0  # characters at the end of _pending fed since the last scan
        self._swallow = False  # dropping the rest of an over-long address
        self._finished = False

    def __repr__(self) -> str:
        return f"TextStreamRedactor(lookbehind={self._lookbehind}, held={len(self._pending)})"

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return len(self._pending)

    def feed(self, chunk: str) -> str:
        if self._finished:
            raise RedactionError("the stream was already finished")
        if self._swallow:
            chunk = self._drop_address_rest(chunk)
        if not chunk:
            return ""
        self._pending += chunk
        self._unscanned += len(chunk)
        new = self._unscanned
        reread = len(self._context) + len(self._pending) - new
        if (
            new * _REREAD_PER_NEW < reread
            and new < _SCAN_AFTER
            and len(self._pending) <= self._lookbehind
        ):
            return ""  # gathered until a scan is worth its rereading
        return self._release(final=False)

    def finish(self) -> str:
        if self._finished:
            return ""
        self._finished = True
        return self._release(final=True)

    def _drop_address_rest(self, chunk: str) -> str:
        """Drop what may still be the open address's domain from the front of ``chunk``
        and return the rest. A dot is part of it only with a label after it: one at the
        very end waits in ``_pending`` for the next chunk, and a dot that ends a sentence
        ("… jane@example.com. Thanks") goes out with the text after it."""
        chunk = self._pending + chunk  # a dot held back, or nothing
        self._pending = ""
        run = _DOMAIN_RUN.match(chunk)
        rest = run.end() if run else 0
        if rest == len(chunk) - 1 and chunk[rest] in _DOTS:
            self._pending = chunk[rest:]
            chunk = chunk[:rest]
        elif rest < len(chunk):
            self._swallow = False
        dropped = chunk[:rest]
        self._context = (self._context + dropped)[-_CONTEXT:]
        self._offset += len(dropped)
        return chunk[rest:]

    def _release(self, *, final: bool) -> str:
        self._unscanned = 0
        scanner = self._scanner
        buf = self._context + self._pending
        floor = len(self._context)
        candidates = scanner._candidates(buf, floor)
        extra: list[Finding] = []
        if final:
            cut = len(buf)
        else:
            cut = scanner._hold_start(buf, floor)
            cut = _before_straddlers(candidates, cut)
            if len(buf) - cut > self._lookbehind:
                cut, extra = self._forced_cut(buf, floor, candidates)
        decided = [f for f in candidates if f.end <= cut]
        if extra:
            decided = [f for f in decided if f.end <= extra[0].start] + extra
        shift = self._offset - floor
        parts: list[str] = []
        pos = floor
        for f in _resolve(decided):
            parts.append(buf[pos : f.start])
            whole = Finding(f.kind, f.category, f.start + shift, f.end + shift)
            parts.append(self._replace(whole, buf[f.start : f.end]))
            pos = f.end
        parts.append(buf[pos:cut])
        self._context = buf[max(0, cut - _CONTEXT) : cut]
        self._pending = buf[cut:]
        self._offset += cut - floor
        return "".join(parts)

    def _forced_cut(
        self, buf: str, floor: int, candidates: list[Finding]
    ) -> tuple[int, list[Finding]]:
        """The held tail outgrew the look-behind: where to cut instead, and the findings
        in the tail to release up to there.

        An address whose domain may still grow is released masked as far as it goes, and
        the rest of its domain is dropped as it arrives. Otherwise every address in the
        tail is whole (only the last at-sign's domain can grow), so the tail is released
        up to the end of its last address, each finding as what it is; the text after
        it stays held. A tail without one (a chain of overlapping candidates) is
        released as one finding of the kind it could become."""
        n = len(buf)
        start = self._scanner._open_email_start(buf, floor)
        if start is not None:
            self._swallow = True
            # From the last at-sign to the end is all domain characters, so the mask
            # keeps nothing but the domain so far; a dot at the end waits for what
            # comes after it (_drop_address_rest).
            start = _before_straddlers(candidates, start)
            end = n - 1 if buf[-1] in _DOTS and n - 1 > start else n
            return end, [Finding("email", Categories.EMAIL, start, end)]
        start = _before_straddlers(candidates, self._scanner._hold_start(buf, floor))
        tail = _resolve([f for f in candidates if f.start >= start])
        emails = [f for f in tail if f.kind == "email"]
        if not emails:
            kind, category = _kind_of_tail(self._scanner, buf[start:])
            return n, [Finding(kind, category, start, n)]
        cut = emails[-1].end
        released = [f for f in tail if f.end <= cut]
        if n - cut > self._lookbehind:
            kind, category = _kind_of_tail(self._scanner, buf[cut:])
            return n, [*released, Finding(kind, category, cut, n)]
        return cut, released


class ByteStreamRedactor:
    """Decodes a byte stream incrementally, redacts it, encodes it again.

    A multi-byte character split across chunks is fine; bytes that are not valid in
    ``encoding`` raise :class:`~privguard.UnparseableBody` (the body is not released).
    Encoding is incremental too, so a codec that writes a byte order mark (UTF-16,
    UTF-32, utf-8-sig) writes it once, before the first text released, not per chunk.
    """

    def __init__(self, text_redactor: TextRedactor, encoding: str = "utf-8") -> None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise PolicyError(f"unknown text encoding {encoding!r}") from None
        self._inner = text_redactor
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._encoder = codecs.getincrementalencoder(encoding)(errors="strict")
        self._encoded = False  # whether the encoder has written anything yet

    def __repr__(self) -> str:
        return f"ByteStreamRedactor({self._inner!r}, encoding={self._encoding!r})"

    def feed(self, chunk: bytes) -> bytes:
        return self._encode(self._inner.feed(self._decode(chunk, final=False)), final=False)

    def finish(self) -> bytes:
        text = self._decode(b"", final=True)
        return self._encode(self._inner.feed(text) + self._inner.finish(), final=True)

    def _decode(self, data: bytes, *, final: bool) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise UnparseableBody(f"bytes are not valid {self._encoding}") from None

    def _encode(self, text: str, *, final: bool) -> bytes:
        # Nothing is encoded until there is text: a codec with a byte order mark would
        # write it for "" and release bytes before anything was decided. At the end a
        # stateful codec (ISO-2022) may still owe the bytes that close its last shift.
        if not text and not (final and self._encoded):
            return b""
        self._encoded = True
        try:
            return self._encoder.encode(text, final)
        except UnicodeEncodeError:
            raise RedactionError(f"a replacement cannot be encoded in {self._encoding}") from None


class LineStreamRedactor:
    """Hands each complete line (NDJSON, log lines) to ``redact_line``.

    The line is passed without its ``\\n`` (and without a ``\\r`` before it), which are
    put back after it. A line longer than ``max_line`` characters raises
    :class:`~privguard.UnparseableBody` rather than grow the buffer without bound.
    """

    def __init__(self, redact_line: Callable[[str], str], *, max_line: int = 1 << 20) -> None:
        if max_line < 1:
            raise PolicyError("max_line must be positive")
        self._redact_line = redact_line
        self._max_line = max_line
        self._parts: list[str] = []
        self._size = 0
        self._finished = False

    def __repr__(self) -> str:
        return f"LineStreamRedactor(max_line={self._max_line}, held={self._size})"

    def feed(self, chunk: str) -> str:
        if self._finished:
            raise RedactionError("the stream was already finished")
        out: list[str] = []
        while True:
            nl = chunk.find("\n")
            if nl < 0:
                break
            line = chunk[:nl]
            chunk = chunk[nl + 1 :]
            if self._parts:
                line = "".join(self._parts) + line
                self._parts.clear()
                self._size = 0
            self._check(len(line))
            out.append(self._one(line))
            out.append("\n")
        if chunk:
            self._check(self._size + len(chunk))
            self._parts.append(chunk)
            self._size += len(chunk)
        return "".join(out)

    def finish(self) -> str:
        if self._finished:
            return ""
        self._finished = True
        if not self._parts:
            return ""
        line = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        return self._one(line)

    def _check(self, size: int) -> None:
        if size > self._max_line:
            raise UnparseableBody(f"a line is longer than {self._max_line} characters")

    def _one(self, line: str) -> str:
        if line.endswith("\r"):
            return self._redact_line(line[:-1]) + "\r"
        return self._redact_line(line)


# What may continue a domain: runs of the characters detection's _DOMAIN_TAIL holds an
# address open for, joined by single dots, the IDNA dots ("．", "。", "｡") among them, so
# the rest of "jane@example。co。uk" is dropped whole, not up to its first wide dot.
_DOTS: Final = "." + _WIDE_DOTS
_LABEL_CHARS: Final = r"[\w\-\uff0d]"
_DOMAIN_RUN: Final = re.compile(rf"{_LABEL_CHARS}*+(?:[{_DOTS}]{_LABEL_CHARS}++)*+")


def _before_straddlers(candidates: list[Finding], cut: int) -> int:
    """Move ``cut`` back until no candidate finding spans it."""
    moved = True
    while moved:
        moved = False
        for f in candidates:
            if f.start < cut < f.end:
                cut = f.start
                moved = True
    return cut


_CATEGORIES: Final = {
    "card": Categories.CARD,
    "email": Categories.EMAIL,
    "phone": Categories.PHONE,
    "iban": Categories.IBAN,
}


def _kind_of_tail(scanner: TextScanner, tail: str) -> tuple[str, str]:
    """The kind an open tail could become, to label it when it must be let go."""
    head = tail.lstrip("+( ")
    if head[:1].isdigit():
        order = ("card", "phone", "iban", "email")
    elif head[:2].isalpha():
        order = ("iban", "email", "card", "phone")
    else:
        order = ("email", "card", "phone", "iban")
    kind = next(k for k in order if k in scanner.kinds)
    return kind, _CATEGORIES[kind]
