"""Field encryption (AES-256-GCM), tokens (AES-SIV) and pseudonyms (HMAC-SHA256)."""

from __future__ import annotations

import dataclasses
import functools
from binascii import b2a_base64
from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidTag

from .._errors import (
    AlreadyEncrypted,
    AuthenticationFailed,
    BadFormat,
    CryptoError,
    RetiredKey,
    UnknownKey,
)
from ._format import (
    ALG_GCM,
    ALG_SIV,
    B64URL_TABLE,
    MAGIC,
    NONCE_POOL,
    NONCE_SIZE,
    POOL_MARK,
    PREFIX,
    NoPickle,
    b64url,
    decode_payload,
    header,
    is_protected,
    is_valid_key_id,
    lp,
    parse,
    refill_nonces,
)
from ._keys import Keyring, _Entry

__all__ = ["EncryptionContext", "FieldCipher", "Pseudonymizer", "Tokenizer"]

_KIND: Final = {ALG_GCM: "ciphertext", ALG_SIV: "token"}


def _utf8(value: str, what: str) -> bytes:
    try:
        data: bytes | None = value.encode()
    except UnicodeEncodeError:
        data = None
    if data is None:
        # Raised here, outside the except block: the UnicodeEncodeError holds the value.
        raise CryptoError(f"{what} is not valid Unicode text (it has a lone surrogate)")
    return data


def _opaque_id(value: object, name: str, *, allow_empty: bool = False) -> bytes:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise CryptoError(f"{name} must be a non-empty string")
    return lp(_utf8(value, name))


def _refuse_protected(value: str) -> None:
    if value.startswith(PREFIX) and is_protected(value):
        raise AlreadyEncrypted(
            "the value is already a privguard ciphertext, token or pseudonym; "
            "refusing to protect it twice"
        )


def _open(keyring: Keyring, value: str, alg: str) -> tuple[_Entry, bytes]:
    """The key entry and payload bytes of ``value``, or the typed error that says why not."""
    try:
        magic, value_alg, key_id, payload = value.split(".")
    except (ValueError, AttributeError, TypeError):
        raise BadFormat(f"not a privguard {_KIND[alg]}") from None
    if magic != MAGIC or value_alg != alg:
        raise BadFormat(f"not a privguard {_KIND[alg]}")
    entry = keyring._usable.get(key_id)
    if entry is None:
        if key_id in keyring._retired:
            raise RetiredKey(key_id)
        if is_valid_key_id(key_id):
            raise UnknownKey(key_id)
        raise BadFormat(f"not a privguard {_KIND[alg]}")
    raw = decode_payload(alg, payload)
    if raw is None:
        raise BadFormat(f"not a privguard {_KIND[alg]}: malformed payload")
    return entry, raw


def _header_index(usable: Mapping[str, _Entry], alg: str) -> _HeaderIndex:
    """For one state of ``Keyring._usable``: its entries by value header without the last
    dot (``pg1.g.k2026a``), the part ``str.rpartition(".")`` splits off a value."""
    return usable, {header(alg, e.key_id)[:-1]: e for e in usable.values()}


# Keyring._usable is replaced, never changed in place, whenever a key is added, retired
# or reactivated, so (that dict, index) pairs are never stale: a cipher compares its
# pair's dict with the keyring's current one by identity and rebuilds on a change.
_HeaderIndex = tuple[Mapping[str, _Entry], dict[str, _Entry]]


@dataclasses.dataclass(frozen=True, slots=True)
class EncryptionContext:
    """Where an encrypted value lives; bound to the ciphertext as associated data.

    Opaque ids only, never personal values: they are stored in the clear next to the
    value and may appear in logs. A ciphertext moved to another tenant, table, field or
    record fails to decrypt.

    >>> EncryptionContext(tenant="t_42", table="orders", field="card_pan", record_id="o_9")
    EncryptionContext(tenant='t_42', table='orders', field='card_pan', record_id='o_9')
    """

    tenant: str
    table: str
    field: str
    record_id: str
    # The length-prefixed encoding of the four ids, computed once per context.
    _aad: bytes = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_aad",
            _opaque_id(self.tenant, "EncryptionContext.tenant")
            + _opaque_id(self.table, "EncryptionContext.table")
            + _opaque_id(self.field, "EncryptionContext.field")
            + _opaque_id(self.record_id, "EncryptionContext.record_id"),
        )


class FieldCipher(NoPickle):
    """Randomized authenticated encryption of one field value: AES-256-GCM.

    Output: ``pg1.g.<key id>.<base64url(nonce || ciphertext || tag)>``. The header and
    the :class:`EncryptionContext` are authenticated. Encrypts with the keyring's primary
    key and decrypts with any key that is not retired.

    Example::

        cipher = FieldCipher(Keyring.from_env("PRIVGUARD_KEYS"))
        ctx = EncryptionContext("t_42", "orders", "card_pan", "o_9")
        stored = cipher.encrypt("4111111111111111", context=ctx)
        assert cipher.decrypt(stored, context=ctx) == "4111111111111111"
    """

    __slots__ = ("_index", "_keyring")

    def __init__(self, keyring: Keyring) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError("FieldCipher needs a Keyring")
        self._keyring = keyring
        self._index = _header_index(keyring._usable, ALG_GCM)

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def encrypt(self, plaintext: str, *, context: EncryptionContext) -> str:
        """Encrypt under the primary key. Raises :class:`AlreadyEncrypted` for a value
        that is already a privguard ciphertext, token or pseudonym."""
        # The hot path: everything that does not depend on the plaintext is precomputed
        # (header text, AAD prefixes, the AESGCM object); nonces come from a pool. See
        # docs/encryption.md (Performance) for what each step costs.
        if plaintext.startswith(PREFIX):
            _refuse_protected(plaintext)
        entry = self._keyring._primary
        try:
            data: bytes | None = plaintext.encode()
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise CryptoError("plaintext is not valid Unicode text (it has a lone surrogate)")
        # take_nonce(), inlined: the pool must have been filled in this process (fork).
        try:
            nonce = NONCE_POOL.pop() if POOL_MARK[0] else refill_nonces()
        except IndexError:
            nonce = refill_nonces()
        sealed = entry.gcm.encrypt(nonce, data, entry.g_aad + context._aad)
        # base64 is ASCII, so the default (UTF-8) decode gives the same text, a bit faster.
        return (
            entry.g_header
            + b2a_base64(nonce + sealed, newline=False).translate(B64URL_TABLE).decode()
        )

    def _encrypt_with_nonce(
        self, plaintext: str, *, context: EncryptionContext, nonce: bytes
    ) -> str:
        # Test seam for known-answer vectors (like Fernet's _encrypt_from_parts). Never
        # call it with a nonce that is not fresh and random: GCM nonce reuse leaks the key.
        if plaintext.startswith(PREFIX):
            _refuse_protected(plaintext)
        if len(nonce) != NONCE_SIZE:
            raise CryptoError(f"nonce must be {NONCE_SIZE} bytes")
        entry = self._keyring._primary
        data = _utf8(plaintext, "plaintext")
        sealed = entry.gcm.encrypt(nonce, data, entry.g_aad + context._aad)
        return entry.g_header + b64url(nonce + sealed)

    def decrypt(self, token: str, *, context: EncryptionContext) -> str:
        """Decrypt, or raise :class:`BadFormat`, :class:`UnknownKey`, :class:`RetiredKey`
        or :class:`AuthenticationFailed` (tampered, or another context or key)."""
        # Fast path: the text before the last dot names a usable key ("pg1.g.k2026a").
        # Anything else, including a non-str, takes _open, which says what is wrong.
        keyring = self._keyring
        usable, by_header = self._index
        if usable is not keyring._usable:
            self._index = usable, by_header = _header_index(keyring._usable, ALG_GCM)
        try:
            head, _, payload = token.rpartition(".")
        except (AttributeError, TypeError):
            head = payload = ""
        entry = by_header.get(head)
        raw = None if entry is None else decode_payload(ALG_GCM, payload)
        if entry is None or raw is None:
            entry, raw = _open(keyring, token, ALG_GCM)
        try:
            data = entry.gcm.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], entry.g_aad + context._aad)
        except InvalidTag:
            raise AuthenticationFailed(
                f"ciphertext under key {entry.key_id!r} failed authentication: tampered, "
                "or stored under another tenant, table, field or record"
            ) from None
        try:
            return data.decode()
        except UnicodeDecodeError:
            pass
        # Outside the except block: a UnicodeDecodeError would hold the plaintext bytes.
        raise AuthenticationFailed(f"ciphertext under key {entry.key_id!r} is not UTF-8 text")

    def reencrypt(self, token: str, *, context: EncryptionContext) -> str:
        """``token`` under the primary key: unchanged if it already is, else decrypted and
        encrypted again with a fresh nonce."""
        entry, _ = _open(self._keyring, token, ALG_GCM)
        if entry is self._keyring._primary:
            return token
        return self.encrypt(self.decrypt(token, context=context), context=context)

    def key_id_of(self, token: str) -> str:
        """The key id in the header of a ciphertext, token or pseudonym (header only; the
        payload is not checked). :class:`BadFormat` if it is not one."""
        parsed = parse(token) if isinstance(token, str) else None
        if parsed is None:
            raise BadFormat("not a privguard ciphertext, token or pseudonym")
        return parsed[1]

    def is_encrypted(self, value: str) -> bool:
        """True when ``value`` is a well-formed privguard ciphertext, token or pseudonym
        (of any key id, held or not)."""
        return isinstance(value, str) and is_protected(value)

    def __repr__(self) -> str:
        return f"FieldCipher(primary={self._keyring.primary_id!r})"


@functools.lru_cache(maxsize=4096)
def _token_aad(key_aad: bytes, tenant: str, field: str, purpose: str) -> bytes:
    """The associated data of a token: the key's header, then the binding."""
    return (
        key_aad
        + _opaque_id(tenant, "tenant")
        + _opaque_id(field, "field")
        + _opaque_id(purpose, "purpose")
    )


@functools.lru_cache(maxsize=4096)
def _pseudonym_prefix(key_aad: bytes, tenant: str, namespace: str) -> bytes:
    """What the MAC reads before the value: the key's header, then the binding."""
    return (
        key_aad
        + _opaque_id(tenant, "tenant")
        + _opaque_id(namespace, "namespace", allow_empty=True)
    )


class Tokenizer(NoPickle):
    """Deterministic, reversible tokens (AES-SIV) for joins and look-ups.

    The same plaintext, key, tenant, field and purpose always give the same token; change
    any one and the token changes and cannot be detokenized under the other binding. The
    record is not bound, so equal values in different records match. Determinism reveals
    equality: use :class:`FieldCipher` for values nobody looks up.
    """

    __slots__ = ("_keyring",)

    def __init__(self, keyring: Keyring) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError("Tokenizer needs a Keyring")
        self._keyring = keyring

    def tokenize(self, plaintext: str, *, tenant: str, field: str, purpose: str) -> str:
        """``pg1.s.<key id>.<base64url(synthetic IV || ciphertext)>`` under the primary key."""
        if plaintext.startswith(PREFIX):
            _refuse_protected(plaintext)
        return self._seal(self._keyring._primary, plaintext, tenant, field, purpose)

    @staticmethod
    def _seal(entry: _Entry, plaintext: str, tenant: str, field: str, purpose: str) -> str:
        try:
            data: bytes | None = plaintext.encode()
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise CryptoError("plaintext is not valid Unicode text (it has a lone surrogate)")
        sealed = entry.siv.encrypt(data, [_token_aad(entry.s_aad, tenant, field, purpose)])
        return entry.s_header + b2a_base64(sealed, newline=False).translate(B64URL_TABLE).decode()

    def detokenize(self, token: str, *, tenant: str, field: str, purpose: str) -> str:
        entry, raw = _open(self._keyring, token, ALG_SIV)
        try:
            data = entry.siv.decrypt(raw, [_token_aad(entry.s_aad, tenant, field, purpose)])
        except InvalidTag:
            raise AuthenticationFailed(
                f"token under key {entry.key_id!r} failed authentication: tampered, "
                "or made for another tenant, field or purpose"
            ) from None
        try:
            return data.decode()
        except UnicodeDecodeError:
            pass
        raise AuthenticationFailed(f"token under key {entry.key_id!r} is not UTF-8 text")

    def tokens_for_lookup(
        self, plaintext: str, *, tenant: str, field: str, purpose: str
    ) -> tuple[str, ...]:
        """The token under every key that still decrypts, primary first: during a
        rotation, stored tokens may be under any of them."""
        if plaintext.startswith(PREFIX):
            _refuse_protected(plaintext)
        primary = self._keyring._primary
        others = [e for e in self._keyring._usable.values() if e is not primary]
        return tuple(self._seal(e, plaintext, tenant, field, purpose) for e in [primary, *others])

    def retokenize(self, token: str, *, tenant: str, field: str, purpose: str) -> str:
        """``token`` under the primary key (unchanged if it already is)."""
        entry, _ = _open(self._keyring, token, ALG_SIV)
        primary = self._keyring._primary
        if entry is primary:
            return token
        plaintext = self.detokenize(token, tenant=tenant, field=field, purpose=purpose)
        return self._seal(primary, plaintext, tenant, field, purpose)

    def __repr__(self) -> str:
        return f"Tokenizer(primary={self._keyring.primary_id!r})"


class Pseudonymizer(NoPickle):
    """Keyed one-way pseudonyms: HMAC-SHA256 (a keyed hash, PCI DSS 3.5.1.1).

    ``pg1.h.<key id>.<base64url(32-byte MAC)>``. Stable for one key, tenant and
    namespace; different across tenants, so pseudonyms cannot be joined across them.
    Normalize values first (for example lower-case e-mail addresses) if equal people
    should get equal pseudonyms.
    """

    __slots__ = ("_keyring",)

    def __init__(self, keyring: Keyring) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError("Pseudonymizer needs a Keyring")
        self._keyring = keyring

    def pseudonymize(self, value: str, *, tenant: str, namespace: str = "") -> str:
        if value.startswith(PREFIX):
            _refuse_protected(value)
        return self._mac(self._keyring._primary, value, tenant, namespace)

    @staticmethod
    def _mac(entry: _Entry, value: str, tenant: str, namespace: str) -> str:
        try:
            data: bytes | None = value.encode()
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise CryptoError("value is not valid Unicode text (it has a lone surrogate)")
        # HMAC(K, m) = SHA-256(K ^ opad || SHA-256(K ^ ipad || m)), from the pre-keyed states.
        inner = entry.h_inner.copy()
        inner.update(_pseudonym_prefix(entry.h_aad, tenant, namespace))
        inner.update(len(data).to_bytes(4, "big"))
        inner.update(data)
        outer = entry.h_outer.copy()
        outer.update(inner.digest())
        return (
            entry.h_header
            + b2a_base64(outer.digest(), newline=False).translate(B64URL_TABLE).decode()
        )

    def pseudonyms_for_lookup(
        self, value: str, *, tenant: str, namespace: str = ""
    ) -> tuple[str, ...]:
        """The pseudonym under every key that is not retired, primary first."""
        if value.startswith(PREFIX):
            _refuse_protected(value)
        primary = self._keyring._primary
        others = [e for e in self._keyring._usable.values() if e is not primary]
        return tuple(self._mac(e, value, tenant, namespace) for e in [primary, *others])

    def __repr__(self) -> str:
        return f"Pseudonymizer(primary={self._keyring.primary_id!r})"
