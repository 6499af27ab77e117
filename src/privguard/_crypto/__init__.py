"""Field-level encryption, tokens, pseudonyms, keys and rotation (policy clause C32).

``_format``: the value format, the length-prefixed encoding, nonces. ``_keys``: keys,
the keyring, KMS wrapping. ``_cipher``: FieldCipher, Tokenizer, Pseudonymizer.
``_rotation``: re-encryption over host data. The format is in docs/encryption.md.
"""

from ._cipher import EncryptionContext, FieldCipher, Pseudonymizer, Tokenizer
from ._keys import Key, KeyEncryptionService, Keyring, KeyState, LocalKeyEncryptionService
from ._rotation import EncryptedColumn, Reencryptor, RotationReport

__all__ = [
    "EncryptedColumn",
    "EncryptionContext",
    "FieldCipher",
    "Key",
    "KeyEncryptionService",
    "KeyState",
    "Keyring",
    "LocalKeyEncryptionService",
    "Pseudonymizer",
    "Reencryptor",
    "RotationReport",
    "Tokenizer",
]
