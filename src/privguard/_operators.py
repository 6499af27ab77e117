"""Value operators that need no keys: mask and label. Keyed ones live in ``_crypto``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ._detection import _WIDE_ATS

__all__ = [
    "card_masker",
    "label",
    "mask_card",
    "mask_email",
    "mask_generic",
    "mask_phone",
    "masker",
    "phone_masker",
]

MASK_CHAR: Final = "*"
_GENERIC: Final = MASK_CHAR * 8


def label(category: str) -> str:
    """``[user.contact.email]``: says what was there, keeps nothing of it."""
    return f"[{category}]"


_TO_MASK: Final = str.maketrans("0123456789", MASK_CHAR * 10)
# The same on UTF-8 bytes, which is several times faster: bytes 0x30-0x39 only ever
# encode the ASCII digits (every byte of a multi-byte UTF-8 sequence is >= 0x80), so
# translating the encoded text and decoding it gives exactly what str.translate gives.
_TO_MASK_BYTES: Final = bytes.maketrans(b"0123456789", MASK_CHAR.encode() * 10)
# A layout made only of these says nothing about the person and may be remembered.
_LAYOUT_CHARS: Final = MASK_CHAR + " -+().\u00a0/"
_LAYOUT_CACHE_SIZE: Final = 4096
_LAYOUT_MAX_LEN: Final = 64  # longer values are masked without remembering their layout


def masker(first: int, last: int, minimum: int) -> Callable[[str], str]:
    """A function masking every digit of a value but the first ``first`` and the last
    ``last``; with fewer than ``minimum`` digits (or a ``*`` of its own, which would
    throw the layout off) the value gets the fixed mask instead.

    Separators stay where they were. Where to cut a masked layout (``**** **** ****
    ****``) is worked out once per layout and remembered, but only for layouts made of
    mask characters and separators: a value with letters in it is never kept.
    """
    layouts: dict[str, tuple[int, int, str] | None] = {}

    def cut(masked: str) -> tuple[int, int, str] | None:
        positions = [i for i, char in enumerate(masked) if char == MASK_CHAR]
        total = len(positions)
        if total < minimum:
            found = None
        else:
            head = positions[first - 1] + 1 if 0 < first <= total else 0
            tail = positions[total - last] if 0 < last <= total else len(masked)
            found = (head, tail, masked[head:tail]) if head < tail else (0, 0, masked)
        if (
            len(layouts) < _LAYOUT_CACHE_SIZE
            and len(masked) <= _LAYOUT_MAX_LEN
            and not masked.strip(_LAYOUT_CHARS)
        ):
            layouts[masked] = found
        return found

    def mask(value: str) -> str:
        if MASK_CHAR in value:
            return _GENERIC
        try:
            masked = value.encode().translate(_TO_MASK_BYTES).decode()
        except UnicodeEncodeError:  # a lone surrogate: the slower path, same result
            masked = value.translate(_TO_MASK)
        try:
            found = layouts[masked]
        except KeyError:
            found = cut(masked)
        if found is None:
            return _GENERIC
        head, tail, middle = found
        if head:
            return value[:head] + middle + value[tail:]
        if tail:
            return middle + value[tail:]
        return middle  # nothing kept: the whole masked layout

    return mask


_MASKERS: dict[tuple[int, int, int], Callable[[str], str]] = {}


def _masker_for(first: int, last: int, minimum: int) -> Callable[[str], str]:
    key = (first, last, minimum)
    found = _MASKERS.get(key)
    if found is None:
        found = masker(first, last, minimum)
        if max(key) <= 32:  # callers' settings are few; odd ones are not remembered
            _MASKERS[key] = found
    return found


def card_masker(*, keep_first: int = 0, keep_last: int = 4) -> Callable[[str], str]:
    """:func:`mask_card` with its settings bound, as a one-argument function."""
    return _masker_for(min(max(keep_first, 0), 6), min(max(keep_last, 0), 4), 12)


_CARD: Final = card_masker()


def mask_card(value: str, *, keep_first: int = 0, keep_last: int = 4) -> str:
    """Mask a card number, keeping at most the first 6 and last 4 digits (PCI DSS 3.4.1).

    Separators stay where they were so the layout still reads as a card number:
    ``4111 1111 1111 1111`` becomes ``**** **** **** 1111``. Fewer than 12 digits are too
    short to be a PAN (keeping 10 of them would reveal most): a fixed mask instead.
    """
    if keep_first == 0 and keep_last == 4:
        return _CARD(value)
    return card_masker(keep_first=keep_first, keep_last=keep_last)(value)


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` becomes ``j***@example.com``.

    The last at-sign is the one kept, as written: detection finds addresses written with
    the fullwidth ``＠`` (U+FF20) or the small ``﹫`` (U+FE6B) too, and ``jane＠example.com``
    becomes ``j***＠example.com``. No at-sign, or nothing before it: the fixed mask.
    """
    at = value.rfind("@")
    if not value.isascii():
        at = max(at, value.rfind(_WIDE_ATS[0]), value.rfind(_WIDE_ATS[1]))
    if at <= 0:
        return _GENERIC
    return f"{value[0]}***{value[at:]}"


_PHONE: Final = masker(0, 2, 6)


def phone_masker() -> Callable[[str], str]:
    """:func:`mask_phone` with its default setting, as a one-argument function."""
    return _PHONE


def mask_phone(value: str, *, keep_last: int = 2) -> str:
    """Every digit but the last two masked: ``+1 415 555 0132`` → ``+* *** *** **32``."""
    if keep_last == 2:
        return _PHONE(value)
    return _masker_for(0, max(keep_last, 0), 6)(value)


def mask_generic(value: str) -> str:
    """A fixed mask: neither content nor length leaks."""
    return _GENERIC
