"""Value operators that need no keys: mask and label. Keyed ones live in ``_crypto``."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["label", "mask_card", "mask_email", "mask_generic", "mask_phone"]

_DIGIT: Final = re.compile(r"\d")
MASK_CHAR: Final = "*"


def label(category: str) -> str:
    """``[user.contact.email]``: says what was there, keeps nothing of it."""
    return f"[{category}]"


def mask_card(value: str, *, keep_first: int = 0, keep_last: int = 4) -> str:
    """Mask a card number, keeping at most the first 6 and last 4 digits (PCI DSS 3.4.1).

    Separators stay where they were so the layout still reads as a card number:
    ``4111 1111 1111 1111`` becomes ``**** **** **** 1111``.
    """
    keep_first = min(max(keep_first, 0), 6)
    keep_last = min(max(keep_last, 0), 4)
    total = sum(c.isdigit() for c in value)
    if total < 12:
        # Too short to be a PAN: keeping 10 of it would reveal most of it.
        return mask_generic(value)
    out: list[str] = []
    seen = 0
    for char in value:
        if char.isdigit():
            keep = seen < keep_first or seen >= total - keep_last
            out.append(char if keep else MASK_CHAR)
            seen += 1
        else:
            out.append(char)
    return "".join(out)


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` becomes ``j***@example.com``."""
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return mask_generic(value)
    return f"{local[0]}***@{domain}"


def mask_phone(value: str, *, keep_last: int = 2) -> str:
    """Every digit but the last two masked: ``+1 415 555 0132`` → ``+* *** *** **32``."""
    total = sum(c.isdigit() for c in value)
    seen = 0
    out: list[str] = []
    for char in value:
        if char.isdigit():
            out.append(char if seen >= total - keep_last else MASK_CHAR)
            seen += 1
        else:
            out.append(char)
    return "".join(out)


def mask_generic(value: str) -> str:
    """A fixed mask: neither content nor length leaks."""
    return MASK_CHAR * 8
