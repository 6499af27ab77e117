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
from ._redaction import JSON_TOO_DEEP, parse_json
from ._taxonomy import Categories

__all__ = [
    "ByteStreamRedactor",
    "LineStreamRedactor",
    "SseStreamRedactor",
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


# Where an event-stream line ends (WHATWG HTML, "Server-sent events": CRLF, CR or LF).
_SSE_LINE_END: Final = re.compile(r"\r\n|\r|\n")
# Fields whose value is redacted on its own; any other line is redacted whole.
_SSE_VALUE_FIELDS: Final = frozenset({"event", "id", "retry"})
_JSON_SPACE: Final = " \t\n\r"


class SseStreamRedactor:
    """Redacts a ``text/event-stream`` (Server-Sent Events) body event by event.

    The stream is read as the WHATWG HTML standard says a client reads it: lines end at
    ``\\r\\n``, ``\\r`` or ``\\n`` (also when a ``\\r\\n`` is split between chunks), a
    byte order mark at the very start is passed through, and an event is the lines up
    to a blank line. The values of an event's ``data`` lines are joined with ``\\n`` as a
    client joins them, and the joined data is redacted as one value: with
    ``redact_json`` when it is JSON (a document spread over several ``data`` lines
    included, and any JSON value: a string such as ``"jane\\u0040example.com"``, a
    number; one with nothing to redact goes out as written), else with ``redact_text``.
    Data that is not one JSON document but has a line that is an object or array is
    redacted line by line instead (each line as JSON when it is JSON), so one event
    with several one-line documents keeps them apart.
    The result goes out as ``data`` lines in the event's place, its other fields
    (``event``, ``id``, ``retry``, ``:`` comments) in their places with their values
    through ``redact_text``, and every line keeps the line ending the stream used.

    Data lines are held until their event's blank line: a client does not dispatch an
    event earlier either. Lines before the event's first ``data`` line (a keep-alive
    comment, ``event:``, ``id:``) go out at once. An event holding more than
    ``max_event`` characters raises :class:`~privguard.UnparseableBody` and is not released. An
    event left open at the end of the stream is redacted and released (a client
    discards it). Errors from ``redact_json`` on data that is JSON propagate: data
    that cannot be redacted is not released.
    """

    def __init__(
        self,
        redact_json: Callable[[str], str],
        redact_text: Callable[[str], str],
        *,
        max_event: int = 1 << 20,
    ) -> None:
        if max_event < 1:
            raise PolicyError("max_event must be positive")
        self._redact_json = redact_json
        self._redact_text = redact_text
        self._max_event = max_event
        self._line: list[str] = []  # the line not ended yet, in pieces
        self._line_size = 0
        self._event: list[list[str]] = []  # held lines of the open event: [line, ending]
        self._event_size = 0
        self._at_start = True  # nothing read yet: a byte order mark may come
        # The last line ended in a "\r" at the end of a chunk: a "\n" starting the next
        # one belongs to that ending. It goes out at once if the line went out, or
        # joins the ending of the held line (_cr_line).
        self._after_cr = False
        self._cr_line: list[str] | None = None
        self._finished = False

    def __repr__(self) -> str:
        return f"SseStreamRedactor(max_event={self._max_event}, held={self.held})"

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return self._event_size + self._line_size

    def feed(self, chunk: str) -> str:
        if self._finished:
            raise RedactionError("the stream was already finished")
        if not chunk:
            return ""
        out: list[str] = []
        if self._at_start:
            self._at_start = False
            if chunk[0] == "\ufeff":
                out.append(chunk[0])
                chunk = chunk[1:]
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[0] == "\n":
                chunk = chunk[1:]
                if self._cr_line is None:
                    out.append("\n")
                else:
                    self._cr_line[1] = "\r\n"
                    self._event_size += 1
            self._cr_line = None
        pos = 0
        for end in _SSE_LINE_END.finditer(chunk):
            line = chunk[pos : end.start()]
            if self._line:
                line = "".join(self._line) + line
                self._line.clear()
                self._line_size = 0
            pos = end.end()
            self._take(line, end.group(), out)
            if pos == len(chunk) and end.group() == "\r":
                self._after_cr = True
        if pos < len(chunk):
            self._line.append(chunk[pos:])
            self._line_size += len(chunk) - pos
            self._check(self.held)
        return "".join(out)

    def finish(self) -> str:
        if self._finished:
            return ""
        self._finished = True
        out: list[str] = []
        if self._line:
            line = "".join(self._line)
            self._line.clear()
            self._line_size = 0
            self._take(line, "", out)
        if self._event:
            out.append(self._release())
        return "".join(out)

    def _check(self, size: int) -> None:
        if size > self._max_event:
            raise UnparseableBody(f"an event is longer than {self._max_event} characters")

    def _take(self, line: str, ending: str, out: list[str]) -> None:
        """One complete line: hold it in the open event, or release what it ends."""
        self._cr_line = None
        if not line:  # a blank line: the event is complete
            if self._event:
                out.append(self._release())
            out.append(ending)
            return
        self._check(self._event_size + len(line) + len(ending))
        if not self._event and not _is_data(line):
            out.append(self._other(line) + ending)
            return
        entry = [line, ending]
        self._event.append(entry)
        self._event_size += len(line) + len(ending)
        self._cr_line = entry

    def _release(self) -> str:
        event = self._event
        self._event = []
        self._event_size = 0
        slots = [i for i, (line, _) in enumerate(event) if _is_data(line)]
        values = [_data_value(event[i][0]) for i in slots]
        lines = self._redact_data(values) if slots else []
        parts: list[str] = []
        if lines == values:  # nothing to redact: the data lines go out as they came
            for line, ending in event:
                parts.append(line if _is_data(line) else self._other(line))
                parts.append(ending)
        elif len(lines) == len(slots):  # one redacted line in each data line's place
            redacted = iter(lines)
            for line, ending in event:
                parts.append(
                    _data_line(line, next(redacted)) if _is_data(line) else self._other(line)
                )
                parts.append(ending)
        else:  # all the data in the first data line's place
            # A dropped data line's ending goes to the line kept before it, so every kept
            # line is preceded by the ending it had (a "\r" never meets a blank "\n").
            first = slots[0]
            between = event[first][1] or next((e for _, e in event if e), "\n")
            for i, (line, ending) in enumerate(event):
                if i == first:
                    parts.append(between.join(_data_line(line, v) for v in lines))
                elif _is_data(line):
                    parts[-1] = ending
                    continue
                else:
                    parts.append(self._other(line))
                parts.append(ending)
        return "".join(parts)

    def _redact_data(self, values: list[str]) -> list[str]:
        """The event's data, redacted, as the lines to send (each without an ending)."""
        data = "\n".join(values)
        redacted = self._json_or_none(data, strict=False)
        if redacted is None:
            if len(values) > 1 and any(_json_like(v) for v in values):
                return [self._redact_value(v) for v in values]
            if data.lstrip(_JSON_SPACE)[:1] == "{":
                raise UnparseableBody("event data opens a JSON object but is not JSON")
            redacted = self._redact_text(data)
        return _SSE_LINE_END.split(redacted)

    def _redact_value(self, value: str) -> str:
        redacted = self._json_or_none(value)
        if redacted is None:
            redacted = self._redact_text(value)
        # A line ending in the redacted value would split the line: it goes as a space.
        return _SSE_LINE_END.sub(" ", redacted)

    def _json_or_none(self, data: str, *, strict: bool = True) -> str | None:
        """``data`` redacted as JSON, or ``None`` when it is not JSON.

        Any JSON value counts: a string (``"jane\\u0040example.com"`` is an address to
        ``JSON.parse``) or a number as well as an object or array. A string, number or
        literal with nothing to redact goes out as it came (``1.50`` stays ``1.50``).
        JSON that the redactor refuses (too deep, say) is an error, never text; so is data
        that opens an object (``{``) and is not JSON (``{"password": "hunter2"`` cut
        short), whose key-named values the text detectors would not see. Data opening
        with ``[`` that is not JSON (``[DONE]``) is text. ``strict=False``: ``None`` for
        any data that is not JSON (an event's lines may still be one document each)."""
        head = data.lstrip(_JSON_SPACE)[:1]
        if head in ("{", "["):
            try:
                return self._redact_json(data)
            except UnparseableBody:
                if _is_json(data) or (strict and head == "{"):
                    raise
                return None
        if not head or head not in _JSON_SCALAR_START:
            return None
        try:
            redacted = self._redact_json(data)
        except UnparseableBody:
            if _is_json(data):
                raise
            return None  # "12 apples", "null pointer": text
        return data if _same_json(data, redacted) else redacted

    def _other(self, line: str) -> str:
        """A line other than a data line: a comment, a field, or a line no client reads."""
        name, colon, value = line.partition(":")
        if colon and (not name or name in _SSE_VALUE_FIELDS):
            return name + ":" + self._redact_text(value)
        return self._redact_text(line)


def _is_data(line: str) -> bool:
    return line.startswith("data:") or line == "data"


def _data_value(line: str) -> str:
    """The value of a data line: after ``data:`` and one optional space."""
    value = line[5:]
    return value[1:] if value[:1] == " " else value


def _data_line(line: str, value: str) -> str:
    """``value`` as a data line in place of ``line``, spaced as it was; a value that
    starts with a space gets one before it, which a client drops."""
    if _data_value(line) == value:
        return line  # unchanged: as it came
    space = " " if line.startswith("data: ") or value[:1] == " " else ""
    return "data:" + space + value


# What a JSON value other than an object or array starts with: a string, a number, a
# literal (true, false, null).
_JSON_SCALAR_START: Final = frozenset('"-0123456789tfn')


def _same_json(data: str, redacted: str) -> bool:
    """``redacted`` is the value ``data`` is: nothing was redacted in it."""
    try:
        before, after = parse_json(data), parse_json(redacted)
    except UnparseableBody:
        return False
    return type(before) is type(after) and before == after


def _json_like(text: str) -> bool:
    return text.lstrip(_JSON_SPACE)[:1] in ("{", "[")


def _is_json(text: str) -> bool:
    """Whether ``text`` is JSON as the redactor reads it (the same parser, orjson where
    installed: a value it refuses, such as ``-Infinity``, is text here too)."""
    try:
        parse_json(text)
    except UnparseableBody as exc:
        return exc.reason == JSON_TOO_DEEP  # JSON, nested beyond what can be read
    return True


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
    """The kind to label an open tail with when it must be let go undecided.

    Undecided, it is labelled with a kind every audience gets masked: digits as a phone
    number (a card number or an IBAN stays readable for a payment processor, and the
    tail may hold a phone number's digits), anything else as an e-mail address, whose
    mask without an at-sign is the fixed one. Over-redaction for a processor, never a
    leak to it.
    """
    head = tail.lstrip("+( ")
    if head[:1].isdigit():
        order = ("phone", "email", "card", "iban")
    else:
        order = ("email", "phone", "iban", "card")
    kind = next(k for k in order if k in scanner.kinds)
    return kind, _CATEGORIES[kind]
