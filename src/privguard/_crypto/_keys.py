"""Keys and the keyring: load, validate, derive sub-keys, wrap with a KMS, rotate states.

Each key id holds one 32-byte master key. The keys that do the work are derived from it
with HKDF-SHA256 under distinct labels, so one secret per id serves AES-256-GCM fields,
AES-SIV tokens and HMAC pseudonyms without ever using the same key for two algorithms.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from binascii import Error as _BinasciiError
from binascii import a2b_base64, b2a_base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._errors import AuthenticationFailed, BadFormat, KeyringError
from ._format import ALG_GCM, ALG_HMAC, ALG_SIV, NONCE_SIZE, NoPickle, header, is_valid_key_id, lp

__all__ = [
    "KEYRING_FORMAT",
    "MASTER_KEY_SIZE",
    "Key",
    "KeyEncryptionService",
    "KeyState",
    "Keyring",
    "LocalKeyEncryptionService",
]

MASTER_KEY_SIZE: Final = 32
KEYRING_FORMAT: Final = "privguard-keyring/1"

# HKDF info labels, one per purpose. Changing one changes every value: they are part of
# the format (tests/vectors/crypto.json pins them).
_INFO_GCM: Final = b"privguard/v1/aes-256-gcm"
_INFO_SIV: Final = b"privguard/v1/aes-siv-512"
_INFO_HMAC: Final = b"privguard/v1/hmac-sha256"

KeyState = Literal["primary", "active", "retired"]
_STATES: Final[frozenset[str]] = frozenset({"primary", "active", "retired"})


def _derive(master: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(master)


def _decode_key_b64(text: str) -> bytes | None:
    """Standard or URL-safe base64, padded; ``None`` if it is not."""
    if not text.isascii():
        return None
    raw = text.encode("ascii").translate(bytes.maketrans(b"-_", b"+/"))
    try:
        return a2b_base64(raw, strict_mode=True)
    except _BinasciiError:
        return None


class Key(NoPickle):
    """One master key and its id. The repr shows the id only.

    >>> key = Key.generate("k2026a")
    >>> key
    Key(key_id='k2026a')
    """

    __slots__ = ("_key_id", "_material")

    def __init__(self, key_id: str, material: bytes) -> None:
        if not is_valid_key_id(key_id):
            raise KeyringError(
                "invalid key id: use 1 to 32 characters of A-Z a-z 0-9 _ -, "
                "starting with a letter or digit"
            )
        if not isinstance(material, bytes | bytearray | memoryview):
            raise KeyringError(f"key {key_id!r}: key material must be bytes")
        material = bytes(material)
        if len(material) != MASTER_KEY_SIZE:
            raise KeyringError(
                f"key {key_id!r}: key material must be {MASTER_KEY_SIZE} bytes, got {len(material)}"
            )
        self._key_id = key_id
        self._material = material

    @classmethod
    def generate(cls, key_id: str) -> Key:
        """A new random key from ``os.urandom``."""
        return cls(key_id, os.urandom(MASTER_KEY_SIZE))

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"Key(key_id={self._key_id!r})"


class _Entry(NoPickle):
    """The derived primitives and precomputed headers of one key, shared by all ciphers."""

    __slots__ = (
        "g_aad",
        "g_header",
        "gcm",
        "h_aad",
        "h_header",
        "h_inner",
        "h_outer",
        "key_id",
        "s_aad",
        "s_header",
        "siv",
    )

    def __init__(self, key: Key) -> None:
        master = key._material
        self.key_id = key.key_id
        self.gcm = AESGCM(_derive(master, _INFO_GCM, 32))
        self.siv = AESSIV(_derive(master, _INFO_SIV, 64))
        # HMAC-SHA256 (RFC 2104) keyed once: SHA-256 states that have absorbed the key
        # XOR ipad and XOR opad. A pseudonym copies both (C calls), which is about a third
        # of the cost of copying an hmac.HMAC object (Python-level) or of hmac.digest,
        # which sets the key up again each call.
        mac_key = _derive(master, _INFO_HMAC, 32).ljust(hashlib.sha256().block_size, b"\0")
        self.h_inner = hashlib.sha256(bytes(b ^ 0x36 for b in mac_key))
        self.h_outer = hashlib.sha256(bytes(b ^ 0x5C for b in mac_key))
        self.g_header = header(ALG_GCM, key.key_id)
        self.s_header = header(ALG_SIV, key.key_id)
        self.h_header = header(ALG_HMAC, key.key_id)
        # The header opens every associated-data string, so it is authenticated too.
        self.g_aad = lp(self.g_header.encode("ascii"))
        self.s_aad = lp(self.s_header.encode("ascii"))
        self.h_aad = lp(self.h_header.encode("ascii"))

    def __repr__(self) -> str:
        return f"<key entry {self.key_id!r}>"


@runtime_checkable
class KeyEncryptionService(Protocol):
    """An external KMS that wraps the keyring: envelope encryption.

    ``context`` is non-secret associated data (like AWS KMS's encryption context) that
    must be given again, unchanged, to decrypt.
    """

    def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> bytes: ...

    def decrypt(self, ciphertext: bytes, context: Mapping[str, str]) -> bytes: ...


def _encode_context(context: Mapping[str, str]) -> bytes:
    return b"".join(
        lp(k.encode()) + lp(v.encode()) for k, v in sorted(context.items(), key=lambda kv: kv[0])
    )


class LocalKeyEncryptionService(NoPickle):
    """A :class:`KeyEncryptionService` in process memory, for tests and local development.

    Blob: ``b"pglk1"`` || 12-byte nonce || AES-256-GCM ciphertext and tag, with the
    length-prefixed, key-sorted context as associated data. In production, use a KMS.
    """

    __slots__ = ("_aead",)
    _MAGIC: Final = b"pglk1"

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(32)
        if len(key) != 32:
            raise KeyringError(f"local key encryption key must be 32 bytes, got {len(key)}")
        self._aead = AESGCM(bytes(key))

    def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return self._MAGIC + nonce + self._aead.encrypt(nonce, plaintext, _encode_context(context))

    def decrypt(self, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        magic = len(self._MAGIC)
        if len(ciphertext) < magic + NONCE_SIZE + 16 or ciphertext[:magic] != self._MAGIC:
            raise BadFormat("not a local key encryption service blob")
        nonce = ciphertext[magic : magic + NONCE_SIZE]
        with contextlib.suppress(InvalidTag):
            return self._aead.decrypt(
                nonce, ciphertext[magic + NONCE_SIZE :], _encode_context(context)
            )
        raise AuthenticationFailed("wrapped keyring failed authentication")

    def __repr__(self) -> str:
        return "LocalKeyEncryptionService()"


class Keyring(NoPickle):
    """Key ids: exactly one primary key (encrypts), active keys (still decrypt) and
    retired keys (refuse with :class:`RetiredKey`).

    Thread-safe: changes swap in new immutable tables, so readers never lock.

    >>> old, new = Key.generate("k2025"), Key.generate("k2026")
    >>> ring = Keyring([old], primary="k2025")
    >>> ring.add(new); ring.promote("k2026")
    >>> ring
    Keyring(primary='k2026', active=['k2025'], retired=[])
    """

    __slots__ = ("_entries", "_keys", "_lock", "_primary", "_retired", "_usable")

    def __init__(self, keys: Iterable[Key], *, primary: str, retired: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, Key] = {}
        self._entries: dict[str, _Entry] = {}
        seen_material: dict[bytes, str] = {}
        for key in keys:
            if not isinstance(key, Key):
                raise KeyringError("keyring entries must be Key objects")
            self._check_new(key, seen_material)
            seen_material[key._material] = key.key_id
            self._keys[key.key_id] = key
            self._entries[key.key_id] = _Entry(key)
        retired_ids = frozenset(retired)
        for key_id in retired_ids:
            if key_id not in self._keys:
                raise KeyringError(f"cannot retire {key_id!r}: no such key in the keyring")
        if primary not in self._keys:
            raise KeyringError("the primary key id is not in the keyring")
        if primary in retired_ids:
            raise KeyringError(f"key {primary!r} cannot be both primary and retired")
        self._retired = retired_ids
        self._usable = {k: e for k, e in self._entries.items() if k not in retired_ids}
        self._primary = self._entries[primary]

    def _check_new(self, key: Key, seen_material: Mapping[bytes, str]) -> None:
        if key.key_id in self._keys:
            raise KeyringError(f"duplicate key id {key.key_id!r}")
        other = seen_material.get(key._material)
        if other is not None:
            raise KeyringError(f"keys {other!r} and {key.key_id!r} hold the same key material")

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_env(
        cls, name: str = "PRIVGUARD_KEYS", *, environ: Mapping[str, str] | None = None
    ) -> Keyring:
        """Load ``*id:base64,id:base64,-id:base64`` from an environment variable.

        Entries are separated by commas. ``*`` marks the one primary key, ``-`` a retired
        key, no mark an active key. Key material is 32 bytes, standard or URL-safe
        base64 with padding. Errors name the entry by position and never echo it.
        """
        env = os.environ if environ is None else environ
        text = env.get(name)
        if text is None:
            raise KeyringError(f"environment variable {name!r} is not set")
        return cls._from_entries(cls._parse_compact(text, f"${name}"))

    @staticmethod
    def _parse_compact(text: str, source: str) -> list[tuple[str, str, str]]:
        entries: list[tuple[str, str, str]] = []
        for position, item in enumerate(text.split(","), 1):
            item = item.strip()
            if not item:
                raise KeyringError(f"{source}: entry {position} is empty")
            state = "active"
            if item[0] == "*":
                state, item = "primary", item[1:]
            elif item[0] == "-":
                state, item = "retired", item[1:]
            key_id, sep, material = item.partition(":")
            if not sep:
                raise KeyringError(f"{source}: entry {position} is not of the form id:base64")
            entries.append((key_id.strip(), material.strip(), state))
        return entries

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Load a JSON key file (format in docs/encryption.md)."""
        label = os.fspath(path)
        error = None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            error = getattr(exc, "strerror", None) or "not UTF-8 text"
        if error is not None:
            raise KeyringError(f"cannot read key file {label!r}: {error}")
        return cls.from_json(text, source=f"key file {label!r}")

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "keyring JSON") -> Keyring:
        """Load the JSON keyring document (the key file format)."""
        doc: Any = None
        where = None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
        except (ValueError, TypeError):
            where = "not UTF-8 text"
        if where is not None:
            # Raised outside the except block so no exception holding the text is chained.
            raise KeyringError(f"{source} is not valid JSON ({where})")
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyringError(f'{source} must be an object with a "keys" list')
        fmt = doc.get("format", KEYRING_FORMAT)
        if fmt != KEYRING_FORMAT:
            raise KeyringError(f"{source}: unsupported format, expected {KEYRING_FORMAT!r}")
        entries: list[tuple[str, str, str]] = []
        for position, item in enumerate(doc["keys"], 1):
            if not isinstance(item, dict):
                raise KeyringError(f"{source}: key {position} is not an object")
            key_id, material, state = item.get("id"), item.get("key"), item.get("state", "active")
            if not isinstance(key_id, str) or not isinstance(material, str):
                raise KeyringError(f'{source}: key {position} needs string "id" and "key"')
            if state not in _STATES:
                raise KeyringError(
                    f'{source}: key {position}: "state" must be primary, active or retired'
                )
            if set(item) - {"id", "key", "state"}:
                raise KeyringError(f"{source}: key {position} has unknown fields")
            entries.append((key_id, material, state))
        return cls._from_entries(entries, source=source)

    @classmethod
    def _from_entries(
        cls, entries: list[tuple[str, str, str]], *, source: str = "keyring"
    ) -> Keyring:
        keys: list[Key] = []
        primaries: list[str] = []
        retired: list[str] = []
        for position, (key_id, material_text, state) in enumerate(entries, 1):
            if not is_valid_key_id(key_id):
                # Never echo: a swapped "base64:id" would put the key material here.
                raise KeyringError(
                    f"{source}: entry {position} has an invalid key id (1 to 32 characters "
                    "of A-Z a-z 0-9 _ -, starting with a letter or digit)"
                )
            material = _decode_key_b64(material_text)
            if material is None:
                raise KeyringError(
                    f"{source}: entry {position} ({key_id!r}): key material is not valid base64"
                )
            if len(material) != MASTER_KEY_SIZE:
                raise KeyringError(
                    f"{source}: entry {position} ({key_id!r}): key material must decode to "
                    f"{MASTER_KEY_SIZE} bytes, got {len(material)}"
                )
            keys.append(Key(key_id, material))
            if state == "primary":
                primaries.append(key_id)
            elif state == "retired":
                retired.append(key_id)
        if len(primaries) != 1:
            raise KeyringError(
                f"{source}: exactly one primary key is required, found {len(primaries)}"
            )
        return cls(keys, primary=primaries[0], retired=retired)

    # -- KMS wrapping --------------------------------------------------------------------

    def to_json(self) -> bytes:
        """The keyring as the JSON key file document. Contains key material: handle as a
        secret (write it with mode 0600, or wrap it with :meth:`to_wrapped`)."""
        with self._lock:
            keys = [
                {
                    "id": key_id,
                    "key": b2a_base64(key._material, newline=False).decode("ascii"),
                    "state": self._state_locked(key_id),
                }
                for key_id, key in self._keys.items()
            ]
        return json.dumps({"format": KEYRING_FORMAT, "keys": keys}, indent=2).encode()

    def to_wrapped(
        self, kms: KeyEncryptionService, *, context: Mapping[str, str] | None = None
    ) -> bytes:
        """The keyring encrypted by ``kms`` (envelope encryption), for storage at rest."""
        return kms.encrypt(self.to_json(), _wrap_context(context))

    @classmethod
    def from_wrapped(
        cls,
        blob: bytes,
        kms: KeyEncryptionService,
        *,
        context: Mapping[str, str] | None = None,
    ) -> Keyring:
        """Load a keyring written by :meth:`to_wrapped`. The KMS's own errors propagate;
        :class:`~privguard.LocalKeyEncryptionService` raises :class:`AuthenticationFailed`."""
        plaintext = kms.decrypt(blob, _wrap_context(context))
        return cls.from_json(plaintext, source="wrapped keyring")

    # -- state ---------------------------------------------------------------------------

    @property
    def primary_id(self) -> str:
        """The id of the key that encrypts new values."""
        return self._primary.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def state_of(self, key_id: str) -> KeyState:
        with self._lock:
            if key_id not in self._entries:
                raise KeyringError(f"no key {key_id!r} in the keyring")
            return self._state_locked(key_id)

    def _state_locked(self, key_id: str) -> KeyState:
        if key_id == self._primary.key_id:
            return "primary"
        return "retired" if key_id in self._retired else "active"

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: Key) -> None:
        """Add a key as active: it decrypts but does not yet encrypt. Deploy it everywhere
        before promoting it, so every process can read what the new primary writes."""
        if not isinstance(key, Key):
            raise KeyringError("keyring entries must be Key objects")
        with self._lock:
            self._check_new(key, {k._material: i for i, k in self._keys.items()})
            entry = _Entry(key)
            self._keys = {**self._keys, key.key_id: key}
            self._entries = {**self._entries, key.key_id: entry}
            self._usable = {**self._usable, key.key_id: entry}

    def promote(self, key_id: str) -> None:
        """Make an active key the primary; the old primary stays active."""
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                raise KeyringError(f"cannot promote {key_id!r}: no such key in the keyring")
            if key_id in self._retired:
                raise KeyringError(f"cannot promote {key_id!r}: it is retired")
            self._primary = entry

    def retire(self, key_id: str, *, remaining: int) -> None:
        """Retire a key: it stops decrypting. ``remaining`` is the number of values still
        under it (``Reencryptor.counts_by_key()``); anything but 0 is refused."""
        with self._lock:
            if key_id not in self._entries:
                raise KeyringError(f"cannot retire {key_id!r}: no such key in the keyring")
            if key_id == self._primary.key_id:
                raise KeyringError(f"cannot retire {key_id!r}: it is the primary key")
            if isinstance(remaining, bool) or not isinstance(remaining, int) or remaining < 0:
                raise KeyringError("remaining must be a count (an int >= 0)")
            if remaining:
                raise KeyringError(
                    f"cannot retire {key_id!r}: {remaining} values are still encrypted "
                    "under it; re-encrypt them first"
                )
            self._retired = self._retired | {key_id}
            self._usable = {k: e for k, e in self._usable.items() if k != key_id}

    def reactivate(self, key_id: str) -> None:
        """Undo :meth:`retire`: the key decrypts again (it never encrypts unless promoted)."""
        with self._lock:
            if key_id not in self._retired:
                raise KeyringError(f"cannot reactivate {key_id!r}: it is not retired")
            self._retired = self._retired - {key_id}
            self._usable = {**self._usable, key_id: self._entries[key_id]}

    def __repr__(self) -> str:
        primary = self._primary.key_id
        retired = sorted(self._retired)
        active = sorted(k for k in self._entries if k != primary and k not in self._retired)
        return f"Keyring(primary={primary!r}, active={active!r}, retired={retired!r})"


def _wrap_context(context: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(context or {})
    merged["privguard.format"] = KEYRING_FORMAT
    return merged
