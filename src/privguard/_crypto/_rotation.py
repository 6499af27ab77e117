"""Key rotation over the host's data: re-encrypt under the primary, count, then retire."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from .._errors import BadFormat, CryptoError
from ._cipher import EncryptionContext, FieldCipher
from ._format import NoPickle

__all__ = ["EncryptedColumn", "Reencryptor", "RotationReport"]


@runtime_checkable
class EncryptedColumn(Protocol):
    """The host's encrypted values, as the :class:`Reencryptor` sees them.

    ``rows()`` yields ``(context, stored ciphertext)`` for every value (a server-side
    cursor or keyset pages in a database). ``replace()`` is a compare-and-set: store
    ``new`` only if the value is still ``old`` and return whether it did, for example
    ``UPDATE t SET col = :new WHERE id = :id AND col = :old`` and a row count of 1. The
    compare is what makes rotation safe while the application keeps writing.
    """

    def rows(self) -> Iterable[tuple[EncryptionContext, str]]: ...

    def replace(self, context: EncryptionContext, old: str, new: str) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class RotationReport:
    """What one :meth:`Reencryptor.run` did. Counts only: no values, no contexts."""

    passes: int
    reencrypted: int
    # Compare-and-set lost: a writer replaced the value meanwhile (with one under the
    # primary key, since writers encrypt with it).
    changed_meanwhile: int
    # Values the last pass could not move, by error class name (RetiredKey, ...).
    failed: Mapping[str, int]
    # Values per key id as the last pass left them.
    remaining: Mapping[str, int]


class Reencryptor(NoPickle):
    """Moves every value of an :class:`EncryptedColumn` to the primary key.

    Rotation, step by step (docs/encryption.md has the details)::

        keyring.add(Key.generate("k2026b"))        # 1. deploy everywhere as active
        keyring.promote("k2026b")                   # 2. new writes use it
        report = Reencryptor(cipher, column).run()  # 3. in the background
        Reencryptor(cipher, column).retire("k2026a")  # 4. refused unless none remain
    """

    __slots__ = ("_cipher", "_column")

    def __init__(self, cipher: FieldCipher, column: EncryptedColumn) -> None:
        self._cipher = cipher
        self._column = column

    def counts_by_key(self) -> dict[str, int]:
        """Number of ciphertexts under each key id (headers only; cheap). Values that are
        not privguard ciphertexts are not counted."""
        counts: Counter[str] = Counter()
        for _, token in self._column.rows():
            try:
                counts[self._cipher.key_id_of(token)] += 1
            except BadFormat:
                continue
        return dict(counts)

    def run(self, *, max_passes: int = 3, stop: threading.Event | None = None) -> RotationReport:
        """Re-encrypt every value not under the primary key, compare-and-set it back, and
        repeat until a pass finds nothing left to move (or ``max_passes``, or ``stop``).

        Values that cannot be decrypted (retired or unknown key, tampered, malformed) are
        counted in ``failed`` and left as they are; the run does not stop for them.
        """
        if max_passes < 1:
            raise CryptoError("max_passes must be at least 1")
        cipher = self._cipher
        reencrypted = changed = passes = 0
        failed: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        while passes < max_passes and not (stop is not None and stop.is_set()):
            passes += 1
            moved = conflicts = 0
            failed = Counter()
            seen = Counter()
            for context, token in self._column.rows():
                if stop is not None and stop.is_set():
                    break
                try:
                    key_id = cipher.key_id_of(token)
                except BadFormat:
                    failed["BadFormat"] += 1
                    continue
                primary = cipher.keyring.primary_id
                if key_id == primary:
                    seen[key_id] += 1
                    continue
                try:
                    new = cipher.reencrypt(token, context=context)
                except CryptoError as exc:
                    failed[type(exc).__name__] += 1
                    seen[key_id] += 1
                    continue
                if self._column.replace(context, token, new):
                    moved += 1
                    seen[cipher.key_id_of(new)] += 1
                else:
                    conflicts += 1
            reencrypted += moved
            changed += conflicts
            if moved == 0 and conflicts == 0:
                break
        return RotationReport(
            passes=passes,
            reencrypted=reencrypted,
            changed_meanwhile=changed,
            failed=MappingProxyType(dict(failed)),
            remaining=MappingProxyType(dict(seen)),
        )

    def retire(self, key_id: str) -> None:
        """Count the values under ``key_id`` and retire it if there are none; otherwise
        :class:`KeyringError`. Every process must have the new primary before this runs,
        or a write still in flight under the old key could land after the count."""
        remaining = self.counts_by_key().get(key_id, 0)
        self._cipher.keyring.retire(key_id, remaining=remaining)

    def __repr__(self) -> str:
        return f"Reencryptor(primary={self._cipher.keyring.primary_id!r})"
