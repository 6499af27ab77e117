"""privguard's exceptions: one tree, rooted in :class:`PrivguardError`.

::

    PrivguardError
    ├── PolicyError                 configuration: raised at start-up, never at request time
    │   ├── UnknownCategory
    │   ├── UnknownPurpose
    │   └── UnknownRecipientKind
    ├── PurposeDenied               a decision said no; carries purpose and reason code
    │   ├── ConsentRequired         ... because consent is missing or was withdrawn
    │   └── DisclosureBlocked       data was about to leave and was stopped: nothing sent
    ├── StoreError
    │   ├── StoreUnavailable        cannot read or write: fail closed
    │   └── MigrationError          schema is newer than this code, or a migration failed
    ├── CryptoError
    │   ├── KeyringError            bad key material or keyring configuration
    │   ├── UnknownKey              a ciphertext names a key id the keyring does not hold
    │   ├── RetiredKey              a ciphertext names a key that may no longer decrypt
    │   ├── BadFormat               not a privguard ciphertext or token
    │   ├── AuthenticationFailed    tampered, wrong key, or wrong associated data
    │   └── AlreadyEncrypted        refusing to encrypt a value twice
    └── RedactionError
        └── UnparseableBody         a body must be redacted but cannot be parsed

Messages name purposes, categories, recipients, key ids and reason codes. They never
hold a personal value or key material.
"""

from __future__ import annotations

__all__ = [
    "AlreadyEncrypted",
    "AuthenticationFailed",
    "BadFormat",
    "ConsentRequired",
    "CryptoError",
    "DisclosureBlocked",
    "KeyringError",
    "MigrationError",
    "PolicyError",
    "PrivguardError",
    "PurposeDenied",
    "RedactionError",
    "RetiredKey",
    "StoreError",
    "StoreUnavailable",
    "UnknownCategory",
    "UnknownKey",
    "UnknownPurpose",
    "UnknownRecipientKind",
    "UnparseableBody",
]


class PrivguardError(Exception):
    """Root of every error privguard raises."""


class PolicyError(PrivguardError, ValueError):
    """The policy, taxonomy or configuration is invalid."""


class UnknownCategory(PolicyError):
    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(f"unknown data category {category!r}")


class UnknownPurpose(PolicyError):
    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        super().__init__(f"unknown purpose {purpose!r}")


class UnknownRecipientKind(PolicyError):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"unknown recipient kind {kind!r}")


class PurposeDenied(PrivguardError):
    """Processing for this purpose is not allowed. ``reason`` is a stable code."""

    def __init__(
        self,
        purpose: str,
        reason: str,
        *,
        categories: tuple[str, ...] = (),
        recipient: str | None = None,
    ) -> None:
        self.purpose = purpose
        self.reason = reason
        self.categories = categories
        self.recipient = recipient
        detail = f"purpose {purpose!r} denied: {reason}"
        if categories:
            detail += f" (categories: {', '.join(categories)})"
        if recipient:
            detail += f" (recipient: {recipient})"
        super().__init__(detail)


class ConsentRequired(PurposeDenied):
    """The purpose needs consent the subject has not given (or has withdrawn)."""


class DisclosureBlocked(PurposeDenied):
    """Data was about to leave for a recipient and was stopped; nothing was sent or recorded.

    ``reason`` is a stable code: a decision's reason (``consent_missing``,
    ``recipient_not_permitted``, ...) or one of the outbound guard's
    (``unregistered_recipient``, ``purpose_not_registered``, ``unparseable_body``, ...).
    ``recipient`` is the registered recipient's name, ``recipient_kind`` its kind and
    ``host`` the host the request was addressed to (``None`` when not known).
    """

    def __init__(
        self,
        purpose: str | None,
        reason: str,
        *,
        recipient: str | None = None,
        recipient_kind: str | None = None,
        host: str | None = None,
        categories: tuple[str, ...] = (),
        needs_consent: bool = False,
    ) -> None:
        super().__init__(purpose or "", reason, categories=categories, recipient=recipient)
        self.recipient_kind = recipient_kind
        self.host = host
        self.needs_consent = needs_consent
        parts = [f"disclosure blocked: {reason}"]
        if purpose:
            parts.append(f"purpose {purpose!r}")
        if recipient:
            parts.append(f"recipient {recipient!r} ({recipient_kind})")
        elif host:
            parts.append(f"host {host!r}")
        if categories:
            parts.append(f"categories: {', '.join(categories)}")
        self.args = ("; ".join(parts),)


class StoreError(PrivguardError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be read or written. Checks fail closed."""


class MigrationError(StoreError):
    """The schema cannot be brought to the version this code needs."""


class CryptoError(PrivguardError):
    """Encryption, decryption, tokens or keys failed."""


class KeyringError(CryptoError):
    """Key material or keyring configuration is invalid."""


class UnknownKey(CryptoError):
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"unknown key id {key_id!r}")


class RetiredKey(CryptoError):
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"key {key_id!r} is retired and may not decrypt")


class BadFormat(CryptoError):
    """Not a privguard ciphertext or token, or an unsupported version."""


class AuthenticationFailed(CryptoError):
    """The value was tampered with, or key or associated data do not match."""


class AlreadyEncrypted(CryptoError):
    """The value is already a privguard ciphertext; encrypting it again is refused."""


class RedactionError(PrivguardError):
    """Redaction could not be applied: the data is not released."""


class UnparseableBody(RedactionError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"body must be redacted but cannot be parsed: {reason}")
