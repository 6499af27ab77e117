"""Value operators that need no keys: mask and label. Keyed ones live in ``_crypto``."""

from __future__ import annotations

from typing import Final

__all__ = ["label", "mask_card", "mask_email", "mask_generic", "mask_phone"]

MASK_CHAR: Final = "*"


def label(category: str) -> str:
    """``[user.contact.email]``: says what was there, keeps nothing of it."""
    return f"[{category}]"


_TO_MASK: Final = str.maketrans("0123456789", MASK_CHAR * 10)
_NO_DIGITS: Final = str.maketrans("", "", "0123456789")


def _digits(value: str) -> int:
    return len(value) - len(value.translate(_NO_DIGITS))


def _cut_after_first(value: str, n: int) -> int:
    """Index just past the ``n``-th digit from the start."""
    if n <= 0:
        return 0
    seen = 0
    for i, char in enumerate(value):
        if "0" <= char <= "9":
            seen += 1
            if seen == n:
                return i + 1
    return len(value)


def _cut_before_last(value: str, n: int) -> int:
    """Index of the ``n``-th digit from the end."""
    if n <= 0:
        return len(value)
    seen = 0
    for i in range(len(value) - 1, -1, -1):
        if "0" <= value[i] <= "9":
            seen += 1
            if seen == n:
                return i
    return 0


def _keep_ends(value: str, first: int, last: int) -> str:
    head = _cut_after_first(value, first)
    tail = _cut_before_last(value, last)
    if tail <= head:
        return value.translate(_TO_MASK)
    return value[:head] + value[head:tail].translate(_TO_MASK) + value[tail:]


def mask_card(value: str, *, keep_first: int = 0, keep_last: int = 4) -> str:
    """Mask a card number, keeping at most the first 6 and last 4 digits (PCI DSS 3.4.1).

    Separators stay where they were so the layout still reads as a card number:
    ``4111 1111 1111 1111`` becomes ``**** **** **** 1111``.
    """
    if _digits(value) < 12:
        # Too short to be a PAN: keeping 10 digits of it would reveal most of it.
        return mask_generic(value)
    return _keep_ends(value, min(max(keep_first, 0), 6), min(max(keep_last, 0), 4))


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` becomes ``j***@example.com``."""
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return mask_generic(value)
    return f"{local[0]}***@{domain}"


def mask_phone(value: str, *, keep_last: int = 2) -> str:
    """Every digit but the last two masked: ``+1 415 555 0132`` → ``+* *** *** **32``."""
    if _digits(value) < 6:
        return mask_generic(value)
    return _keep_ends(value, 0, keep_last)


def mask_generic(value: str) -> str:
    """A fixed mask: neither content nor length leaks."""
    return MASK_CHAR * 8
