"""Value operators that need no keys: mask and label. Keyed ones live in ``_crypto``."""

from __future__ import annotations

from typing import Final

__all__ = ["label", "mask_card", "mask_email", "mask_generic", "mask_phone"]

MASK_CHAR: Final = "*"


def label(category: str) -> str:
    """``[user.contact.email]``: says what was there, keeps nothing of it."""
    return f"[{category}]"


_TO_MASK: Final = str.maketrans("0123456789", MASK_CHAR * 10)


# The layout of a masked value ("**** **** **** ****") says nothing about the person,
# so where to cut it is computed once per layout and kept.
_LAYOUTS: dict[tuple[str, int, int], tuple[int, int, int]] = {}


def _layout(masked: str, first: int, last: int) -> tuple[int, int, int]:
    """(digit count, end of the kept head, start of the kept tail) for a masked layout."""
    key = (masked, first, last)
    found = _LAYOUTS.get(key)
    if found is None:
        positions = [i for i, char in enumerate(masked) if char == MASK_CHAR]
        total = len(positions)
        head = positions[first - 1] + 1 if 0 < first <= total else 0
        tail = positions[total - last] if 0 < last <= total else len(masked)
        found = (total, head, tail)
        if len(_LAYOUTS) < 4096:
            _LAYOUTS[key] = found
    return found


def _keep_ends(value: str, first: int, last: int, minimum: int) -> str:
    masked = value.translate(_TO_MASK)
    if MASK_CHAR in value:  # a '*' of its own would throw the layout off
        return mask_generic(value)
    total, head, tail = _layout(masked, first, last)
    if total < minimum:
        return mask_generic(value)
    if tail <= head:
        return masked
    return value[:head] + masked[head:tail] + value[tail:]


def mask_card(value: str, *, keep_first: int = 0, keep_last: int = 4) -> str:
    """Mask a card number, keeping at most the first 6 and last 4 digits (PCI DSS 3.4.1).

    Separators stay where they were so the layout still reads as a card number:
    ``4111 1111 1111 1111`` becomes ``**** **** **** 1111``. Fewer than 12 digits are too
    short to be a PAN (keeping 10 of them would reveal most): a fixed mask instead.
    """
    return _keep_ends(value, min(max(keep_first, 0), 6), min(max(keep_last, 0), 4), 12)


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` becomes ``j***@example.com``."""
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return mask_generic(value)
    return f"{local[0]}***@{domain}"


def mask_phone(value: str, *, keep_last: int = 2) -> str:
    """Every digit but the last two masked: ``+1 415 555 0132`` → ``+* *** *** **32``."""
    return _keep_ends(value, 0, keep_last, 6)


def mask_generic(value: str) -> str:
    """A fixed mask: neither content nor length leaks."""
    return MASK_CHAR * 8
