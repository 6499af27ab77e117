"""Keys and the keyring: loading, validation without echo, KMS wrapping, states, secrecy."""

from __future__ import annotations

import base64
import copy
import json
import logging
import pickle
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from privguard._crypto import (
    EncryptionContext,
    FieldCipher,
    Key,
    KeyEncryptionService,
    Keyring,
    LocalKeyEncryptionService,
    Pseudonymizer,
    Reencryptor,
    Tokenizer,
)
from privguard._crypto._keys import _Entry
from privguard._errors import AuthenticationFailed, BadFormat, CryptoError, KeyringError

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEY3 = bytes(range(200, 232))
B64_1 = base64.b64encode(KEY1).decode()
B64_2 = base64.b64encode(KEY2).decode()
B64_3 = base64.b64encode(KEY3).decode()
PAN = "4111111111111111"
CTX = EncryptionContext("t_42", "orders", "card_pan", "o_9")


def secret_forms(material: bytes) -> list[str]:
    return [
        base64.b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode(),
        base64.b64encode(material).decode().rstrip("="),
        material.hex(),
        repr(material),
        str(list(material)),
    ]


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__]


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    """Nothing in the message, args, repr, formatted traceback or any chained exception."""
    texts = ["".join(traceback.format_exception(exc))]
    for e in exception_chain(exc):
        texts += [str(e), repr(e), repr(e.args), repr(getattr(e, "__dict__", {}))]
        for attr in ("object", "doc"):  # UnicodeError.object, JSONDecodeError.doc
            if hasattr(e, attr):
                texts.append(repr(getattr(e, attr)))
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob, f"secret leaked into {type(exc).__name__}"


def ring_env(text: str) -> Keyring:
    return Keyring.from_env("PG_TEST_KEYS", environ={"PG_TEST_KEYS": text})


# -- environment format ------------------------------------------------------------------


def test_from_env() -> None:
    ring = ring_env(f"-k0:{B64_3}, k1:{B64_1} ,*k2:{B64_2}")
    assert ring.primary_id == "k2"
    assert ring.key_ids == ("k0", "k1", "k2")
    assert [ring.state_of(k) for k in ring.key_ids] == ["retired", "active", "primary"]
    assert repr(ring) == "Keyring(primary='k2', active=['k1'], retired=['k0'])"


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVGUARD_KEYS", f"*k1:{B64_1}")
    assert Keyring.from_env().primary_id == "k1"


def test_from_env_accepts_urlsafe_base64() -> None:
    material = bytes([0xFB, 0xFF] * 16)  # encodes with + and / in the standard alphabet
    urlsafe = base64.urlsafe_b64encode(material).decode()
    assert "-" in urlsafe or "_" in urlsafe
    ring = ring_env(f"*k1:{urlsafe}")
    ref = Keyring([Key("k1", material)], primary="k1")
    token = FieldCipher(ring).encrypt(PAN, context=CTX)
    assert FieldCipher(ref).decrypt(token, context=CTX) == PAN


BAD_ENV = [
    ("", "entry 1 is empty"),
    (f"*k1:{B64_1},", "entry 2 is empty"),
    (f"*k1{B64_1}", "not of the form id:base64"),
    (f"*k1:{B64_1},*k2:{B64_2}", "exactly one primary key is required, found 2"),
    (f"k1:{B64_1},k2:{B64_2}", "exactly one primary key is required, found 0"),
    (f"*k1:{B64_1},k1:{B64_2}", "duplicate key id 'k1'"),
    (f"*k1:{B64_1},k2:{B64_1}", "hold the same key material"),
    (f"*k1:{base64.b64encode(KEY1[:16]).decode()}", "must decode to 32 bytes, got 16"),
    (f"*k1:{base64.b64encode(KEY1 * 2).decode()}", "must decode to 32 bytes, got 64"),
    (f"*k1:{B64_1[:-2]}", "not valid base64"),
    (f"*k1:{B64_1[:10]}!{B64_1[11:]}", "not valid base64"),
    (f"*k1:{B64_1[:10]} {B64_1[10:]}", "not valid base64"),
    (f"*k1:{B64_1}\n", None),  # surrounding whitespace is fine
    (f"*bad id:{B64_1}", "invalid key id"),
    (f"*k.1:{B64_1}", "invalid key id"),
    (f"*:{B64_1}", "invalid key id"),
    (f"*-k1:{B64_1}", "invalid key id"),
    (f"*{'k' * 33}:{B64_1}", "invalid key id"),
    (f"*k1:{B64_1},ké:{B64_2}", "invalid key id"),
    (f"*{B64_1}:k1", "invalid key id"),  # id and key swapped: must not echo the key
]


@pytest.mark.parametrize(("text", "expected"), BAD_ENV)
def test_from_env_errors_do_not_echo(text: str, expected: str | None) -> None:
    if expected is None:
        assert ring_env(text).primary_id == "k1"
        return
    with pytest.raises(KeyringError) as info:
        ring_env(text)
    assert expected in str(info.value)
    forms = secret_forms(KEY1) + secret_forms(KEY2) + [B64_1[:10], B64_1[11:], B64_1[:-2]]
    assert_no_secret(info.value, *forms)
    assert text.strip() not in str(info.value) or not text.strip()


def test_from_env_missing_variable() -> None:
    with pytest.raises(KeyringError, match="'NOPE' is not set"):
        Keyring.from_env("NOPE", environ={})


# -- key file (JSON) ---------------------------------------------------------------------


def key_file(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_from_file(tmp_path: Path) -> None:
    doc = {
        "format": "privguard-keyring/1",
        "keys": [
            {"id": "k1", "key": B64_1, "state": "retired"},
            {"id": "k2", "key": B64_2},
            {"id": "k3", "key": B64_3, "state": "primary"},
        ],
    }
    ring = Keyring.from_file(key_file(tmp_path, doc))
    assert repr(ring) == "Keyring(primary='k3', active=['k2'], retired=['k1'])"


def test_to_json_round_trip() -> None:
    ring = Keyring(
        [Key("k1", KEY1), Key("k2", KEY2), Key("k3", KEY3)], primary="k2", retired=["k3"]
    )
    again = Keyring.from_json(ring.to_json())
    assert repr(again) == repr(ring)
    token = FieldCipher(ring).encrypt(PAN, context=CTX)
    assert FieldCipher(again).decrypt(token, context=CTX) == PAN


BAD_FILES: list[tuple[Any, str]] = [
    (f'{{"keys": [{{"id": "k1", "key": "{B64_1}", "state": "primary"}}', "not valid JSON"),
    (f'{{"keys": [{{"id": "k1", "key": "{B64_1}" "state": "primary"}}]}}', "not valid JSON"),
    ([{"id": "k1", "key": B64_1}], 'must be an object with a "keys" list'),
    ({"keys": [{"id": "k1", "key": B64_1, "state": "primary"}], "format": "x/2"}, "format"),
    ({"keys": [{"id": "k1", "key": B64_1, "state": "boss"}]}, '"state" must be'),
    ({"keys": [{"id": "k1", "key": B64_1, "state": "primary", "note": "x"}]}, "unknown fields"),
    ({"keys": [{"id": "k1", "state": "primary"}]}, 'needs string "id" and "key"'),
    ({"keys": [{"id": "k1", "key": B64_1}]}, "found 0"),
    ({"keys": [{"id": B64_1, "key": "k1", "state": "primary"}]}, "invalid key id"),
    ({"keys": [{"id": "k1", "key": B64_1[:-4], "state": "primary"}]}, "got 30"),
    ({"keys": ["k1"]}, "is not an object"),
]


@pytest.mark.parametrize(("doc", "expected"), BAD_FILES)
def test_from_file_errors_do_not_echo(tmp_path: Path, doc: Any, expected: str) -> None:
    with pytest.raises(KeyringError) as info:
        Keyring.from_file(key_file(tmp_path, doc))
    assert expected in str(info.value)
    assert_no_secret(info.value, *secret_forms(KEY1), B64_1[:-4])


def test_from_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(b'{"keys": "\xff' + KEY1 + b'"}')
    with pytest.raises(KeyringError) as info:
        Keyring.from_file(path)
    assert_no_secret(info.value, *secret_forms(KEY1), repr(KEY1)[2:-1])


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read key file"):
        Keyring.from_file(tmp_path / "nope.json")


# -- KMS wrapping ------------------------------------------------------------------------


def three_key_ring() -> Keyring:
    return Keyring(
        [Key("k1", KEY1), Key("k2", KEY2), Key("k3", KEY3)], primary="k2", retired=["k1"]
    )


def test_local_kms_satisfies_the_protocol() -> None:
    assert isinstance(LocalKeyEncryptionService(), KeyEncryptionService)


def test_wrapped_round_trip() -> None:
    kms = LocalKeyEncryptionService()
    ring = three_key_ring()
    blob = ring.to_wrapped(kms, context={"app": "events"})
    for secret in secret_forms(KEY1) + secret_forms(KEY2):
        assert secret.encode() not in blob
    again = Keyring.from_wrapped(blob, kms, context={"app": "events"})
    assert repr(again) == repr(ring)
    token = FieldCipher(ring).encrypt(PAN, context=CTX)
    assert FieldCipher(again).decrypt(token, context=CTX) == PAN


def test_wrapped_tamper_every_byte() -> None:
    kms = LocalKeyEncryptionService()
    blob = three_key_ring().to_wrapped(kms)
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises((AuthenticationFailed, BadFormat)) as info:
            Keyring.from_wrapped(tampered, kms)
        assert_no_secret(info.value, *secret_forms(KEY1), *secret_forms(KEY2))
    with pytest.raises(BadFormat):
        Keyring.from_wrapped(blob[:20], kms)


def test_wrapped_needs_same_context_and_kms_key() -> None:
    kms = LocalKeyEncryptionService()
    blob = three_key_ring().to_wrapped(kms, context={"app": "events"})
    with pytest.raises(AuthenticationFailed):
        Keyring.from_wrapped(blob, kms, context={"app": "other"})
    with pytest.raises(AuthenticationFailed):
        Keyring.from_wrapped(blob, kms)
    with pytest.raises(AuthenticationFailed):
        Keyring.from_wrapped(blob, LocalKeyEncryptionService(), context={"app": "events"})


def test_wrapped_garbage_plaintext_does_not_echo() -> None:
    class LeakyKms:
        def encrypt(self, plaintext: bytes, context: Any) -> bytes:
            return plaintext

        def decrypt(self, ciphertext: bytes, context: Any) -> bytes:
            return ciphertext

    blob = b'{"keys": [{"id": "k1", "key": "' + B64_1.encode() + b'" oops'
    with pytest.raises(KeyringError) as info:
        Keyring.from_wrapped(blob, LeakyKms())
    assert_no_secret(info.value, *secret_forms(KEY1))


def test_local_kms_key_length() -> None:
    with pytest.raises(KeyringError):
        LocalKeyEncryptionService(b"short")


# -- states ------------------------------------------------------------------------------


def test_add_promote_retire_reactivate() -> None:
    ring = Keyring([Key("k1", KEY1)], primary="k1")
    cipher = FieldCipher(ring)
    old = cipher.encrypt(PAN, context=CTX)
    ring.add(Key("k2", KEY2))
    assert ring.state_of("k2") == "active"
    assert cipher.key_id_of(cipher.encrypt(PAN, context=CTX)) == "k1"
    ring.promote("k2")
    assert ring.primary_id == "k2" and ring.state_of("k1") == "active"
    with pytest.raises(KeyringError, match="3 values are still encrypted"):
        ring.retire("k1", remaining=3)
    ring.retire("k1", remaining=0)
    assert ring.state_of("k1") == "retired"
    with pytest.raises(KeyringError, match="retired"):
        ring.promote("k1")
    ring.reactivate("k1")
    assert cipher.decrypt(old, context=CTX) == PAN
    assert "k1" in ring and len(ring) == 2


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda r: r.retire("k1", remaining=0), "it is the primary key"),
        (lambda r: r.retire("k9", remaining=0), "no such key"),
        (lambda r: r.retire("k2", remaining=-1), "remaining must be a count"),
        (lambda r: r.retire("k2", remaining=True), "remaining must be a count"),
        (lambda r: r.promote("k9"), "no such key"),
        (lambda r: r.reactivate("k2"), "not retired"),
        (lambda r: r.add(Key("k2", KEY3)), "duplicate key id"),
        (lambda r: r.add(Key("k3", KEY1)), "same key material"),
        (lambda r: r.add("k3"), "must be Key objects"),
        (lambda r: r.state_of("k9"), "no key"),
    ],
)
def test_state_changes_refused(action: Any, match: str) -> None:
    ring = Keyring([Key("k1", KEY1), Key("k2", KEY2)], primary="k1")
    with pytest.raises(KeyringError, match=match):
        action(ring)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Keyring([Key("k1", KEY1)], primary="k2"), "primary key id is not"),
        (lambda: Keyring([Key("k1", KEY1)], primary="k1", retired=["k1"]), "both primary"),
        (lambda: Keyring([Key("k1", KEY1)], primary="k1", retired=["k9"]), "no such key"),
        (lambda: Keyring([Key("k1", KEY1), Key("k1", KEY2)], primary="k1"), "duplicate"),
        (lambda: Key("k1", KEY1[:31]), "must be 32 bytes, got 31"),
        (lambda: Key("k1", KEY1 + b"\0"), "must be 32 bytes, got 33"),
        (lambda: Key("k 1", KEY1), "invalid key id"),
        (lambda: Key("k1", "not bytes"), "must be bytes"),  # type: ignore[arg-type]
    ],
)
def test_construction_errors(build: Any, match: str) -> None:
    with pytest.raises(KeyringError, match=match) as info:
        build()
    assert_no_secret(info.value, *secret_forms(KEY1), *secret_forms(KEY2))


def test_generate() -> None:
    a, b = Key.generate("a"), Key.generate("b")
    ring = Keyring([a, b], primary="a")
    assert ring.primary_id == "a"


# -- secrecy: repr, str, pickle, copy, logs ----------------------------------------------


def secret_holders() -> list[object]:
    ring = Keyring([Key("k1", KEY1), Key("k2", KEY2)], primary="k1")
    cipher = FieldCipher(ring)

    class Column:
        def rows(self) -> list[tuple[EncryptionContext, str]]:
            return []

        def replace(self, context: EncryptionContext, old: str, new: str) -> bool:
            return False

    return [
        Key("k1", KEY1),
        ring,
        cipher,
        Tokenizer(ring),
        Pseudonymizer(ring),
        Reencryptor(cipher, Column()),
        _Entry(Key("k1", KEY1)),
        LocalKeyEncryptionService(KEY2),
    ]


@pytest.mark.parametrize("holder", secret_holders(), ids=lambda h: type(h).__name__)
def test_repr_and_str_show_ids_only(holder: object) -> None:
    for text in (repr(holder), str(holder), format(holder)):
        for secret in secret_forms(KEY1) + secret_forms(KEY2):
            assert secret not in text


@pytest.mark.parametrize("holder", secret_holders(), ids=lambda h: type(h).__name__)
def test_pickle_and_copy_refused(holder: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled") as info:
            pickle.dumps(holder, protocol=protocol)
        assert_no_secret(info.value, *secret_forms(KEY1), *secret_forms(KEY2))
    with pytest.raises(TypeError):
        copy.copy(holder)
    with pytest.raises(TypeError):
        copy.deepcopy(holder)


def test_nothing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ring = Keyring([Key("k1", KEY1), Key("k2", KEY2)], primary="k1")
    cipher = FieldCipher(ring)
    token = cipher.encrypt(PAN, context=CTX)
    cipher.decrypt(token, context=CTX)
    for bad in (token[:-3] + "AAA", "garbage"):
        with pytest.raises(CryptoError):
            cipher.decrypt(bad, context=CTX)
    Tokenizer(ring).tokenize(PAN, tenant="t", field="f", purpose="p")
    Pseudonymizer(ring).pseudonymize(PAN, tenant="t")
    ring.to_wrapped(LocalKeyEncryptionService())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PAN not in logged
    for secret in secret_forms(KEY1):
        assert secret not in logged


def test_context_values_are_not_secret_but_plaintext_never_shows() -> None:
    ring = Keyring([Key("k1", KEY1)], primary="k1")
    cipher = FieldCipher(ring)
    token = cipher.encrypt(PAN, context=CTX)
    wrong = EncryptionContext("t_42", "orders", "card_pan", "o_10")
    with pytest.raises(AuthenticationFailed) as info:
        cipher.decrypt(token, context=wrong)
    assert_no_secret(info.value, PAN, *secret_forms(KEY1))
