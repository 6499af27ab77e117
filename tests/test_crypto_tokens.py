"""Tokenizer (deterministic AES-SIV) and Pseudonymizer (keyed HMAC-SHA256)."""

from __future__ import annotations

import base64
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privguard._crypto import EncryptionContext, FieldCipher, Key, Keyring, Pseudonymizer, Tokenizer
from privguard._errors import (
    AlreadyEncrypted,
    AuthenticationFailed,
    BadFormat,
    CryptoError,
    RetiredKey,
    UnknownKey,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "crypto.json").read_text(encoding="utf-8")
)
KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
EMAIL = "zoe@example.com"
BIND = {"tenant": "t_42", "field": "email", "purpose": "lookup"}


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([Key("k1", KEY1), Key("k2", KEY2)], primary="k1")


@pytest.fixture
def tokenizer(keyring: Keyring) -> Tokenizer:
    return Tokenizer(keyring)


@pytest.fixture
def pseudonymizer(keyring: Keyring) -> Pseudonymizer:
    return Pseudonymizer(keyring)


def vector_keyring(primary: str) -> Keyring:
    keys = [Key(k["id"], base64.b64decode(k["material_b64"])) for k in VECTORS["keys"]]
    return Keyring(keys, primary=primary)


# -- tokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [EMAIL, "", "Zoë 😀", "x" * 10_000])
def test_tokenize_round_trip_and_determinism(tokenizer: Tokenizer, plaintext: str) -> None:
    token = tokenizer.tokenize(plaintext, **BIND)
    assert token == tokenizer.tokenize(plaintext, **BIND)
    assert token.startswith("pg1.s.k1.")
    assert tokenizer.detokenize(token, **BIND) == plaintext


@pytest.mark.parametrize("changed", ["tenant", "field", "purpose"])
def test_token_binding(tokenizer: Tokenizer, changed: str) -> None:
    token = tokenizer.tokenize(EMAIL, **BIND)
    other = {**BIND, changed: BIND[changed] + "x"}
    assert tokenizer.tokenize(EMAIL, **other) != token
    with pytest.raises(AuthenticationFailed) as info:
        tokenizer.detokenize(token, **other)
    assert EMAIL not in str(info.value)


def test_token_binding_is_length_prefixed(tokenizer: Tokenizer) -> None:
    a = tokenizer.tokenize(EMAIL, tenant="ab", field="c", purpose="p")
    b = tokenizer.tokenize(EMAIL, tenant="a", field="bc", purpose="p")
    assert a != b


def test_different_values_and_keys_give_different_tokens(
    keyring: Keyring, tokenizer: Tokenizer
) -> None:
    assert tokenizer.tokenize(EMAIL, **BIND) != tokenizer.tokenize(EMAIL + ".", **BIND)
    before = tokenizer.tokenize(EMAIL, **BIND)
    keyring.promote("k2")
    after = tokenizer.tokenize(EMAIL, **BIND)
    assert after != before and after.startswith("pg1.s.k2.")
    assert tokenizer.detokenize(before, **BIND) == tokenizer.detokenize(after, **BIND) == EMAIL


def test_tokens_for_lookup_and_retokenize(keyring: Keyring, tokenizer: Tokenizer) -> None:
    before = tokenizer.tokenize(EMAIL, **BIND)
    keyring.promote("k2")
    lookup = tokenizer.tokens_for_lookup(EMAIL, **BIND)
    assert lookup[0].startswith("pg1.s.k2.") and lookup[1] == before and len(lookup) == 2
    moved = tokenizer.retokenize(before, **BIND)
    assert moved == lookup[0]
    assert tokenizer.retokenize(moved, **BIND) == moved
    keyring.retire("k1", remaining=0)
    assert tokenizer.tokens_for_lookup(EMAIL, **BIND) == (moved,)
    with pytest.raises(RetiredKey):
        tokenizer.detokenize(before, **BIND)


def test_tokenizer_errors(keyring: Keyring, tokenizer: Tokenizer) -> None:
    token = tokenizer.tokenize(EMAIL, **BIND)
    with pytest.raises(AlreadyEncrypted):
        tokenizer.tokenize(token, **BIND)
    with pytest.raises(AlreadyEncrypted):
        tokenizer.tokens_for_lookup(token, **BIND)
    ciphertext = FieldCipher(keyring).encrypt(EMAIL, context=EncryptionContext("t", "u", "f", "r"))
    with pytest.raises(BadFormat):
        tokenizer.detokenize(ciphertext, **BIND)
    with pytest.raises(UnknownKey):
        tokenizer.detokenize(token.replace("pg1.s.k1.", "pg1.s.k7."), **BIND)
    for empty in ("tenant", "field", "purpose"):
        with pytest.raises(CryptoError, match=f"{empty} must be a non-empty string"):
            tokenizer.tokenize(EMAIL, **{**BIND, empty: ""})


def test_tokenizer_tamper_every_character(tokenizer: Tokenizer) -> None:
    token = tokenizer.tokenize(EMAIL, **BIND)
    for i in range(len(token)):
        for alt in "Aa0-_=.+":
            if alt == token[i]:
                continue
            tampered = token[:i] + alt + token[i + 1 :]
            with pytest.raises((AuthenticationFailed, BadFormat, UnknownKey)):
                tokenizer.detokenize(tampered, **BIND)


@settings(max_examples=200, deadline=None)
@given(plaintext=st.text(), tenant=st.text(min_size=1, max_size=20))
def test_tokenize_property(plaintext: str, tenant: str) -> None:
    tokenizer = Tokenizer(Keyring([Key("k1", KEY1)], primary="k1"))
    token = tokenizer.tokenize(plaintext, tenant=tenant, field="f", purpose="p")
    assert tokenizer.tokenize(plaintext, tenant=tenant, field="f", purpose="p") == token
    assert tokenizer.detokenize(token, tenant=tenant, field="f", purpose="p") == plaintext


@pytest.mark.parametrize("vector", VECTORS["tokens"], ids=lambda v: v["token"][:24])
def test_token_vectors(vector: dict[str, Any]) -> None:
    tokenizer = Tokenizer(vector_keyring(vector["key_id"]))
    bind = {k: vector[k] for k in ("tenant", "field", "purpose")}
    assert tokenizer.tokenize(vector["plaintext"], **bind) == vector["token"]
    assert tokenizer.detokenize(vector["token"], **bind) == vector["plaintext"]


# -- pseudonymizer -----------------------------------------------------------------------


def test_pseudonym_stable_per_key_and_tenant(
    keyring: Keyring, pseudonymizer: Pseudonymizer
) -> None:
    p = pseudonymizer.pseudonymize(EMAIL, tenant="t_42")
    assert p == pseudonymizer.pseudonymize(EMAIL, tenant="t_42")
    assert p == Pseudonymizer(keyring).pseudonymize(EMAIL, tenant="t_42")
    assert p.startswith("pg1.h.k1.") and len(p) == len("pg1.h.k1.") + 44
    assert EMAIL not in p
    assert p != pseudonymizer.pseudonymize(EMAIL, tenant="t_43")
    assert p != pseudonymizer.pseudonymize(EMAIL, tenant="t_42", namespace="crm")
    assert p != pseudonymizer.pseudonymize(EMAIL.upper(), tenant="t_42")
    keyring.promote("k2")
    q = pseudonymizer.pseudonymize(EMAIL, tenant="t_42")
    assert q != p and q.startswith("pg1.h.k2.")
    assert pseudonymizer.pseudonyms_for_lookup(EMAIL, tenant="t_42") == (q, p)


def test_pseudonym_is_the_documented_hmac(pseudonymizer: Pseudonymizer) -> None:
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(SHA256(), 32, None, b"privguard/v1/hmac-sha256").derive(KEY1)

    def lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    for value in [EMAIL, "", "Zoë", "a" * 1000]:
        message = lp(b"pg1.h.k1.") + lp(b"t_42") + lp(b"ns") + lp(value.encode())
        mac = hmac.digest(key, message, "sha256")
        expected = "pg1.h.k1." + base64.urlsafe_b64encode(mac).decode()
        assert pseudonymizer.pseudonymize(value, tenant="t_42", namespace="ns") == expected


def test_pseudonymizer_refuses_protected_values(
    keyring: Keyring, pseudonymizer: Pseudonymizer
) -> None:
    pseudonym = pseudonymizer.pseudonymize(EMAIL, tenant="t")
    for value in (pseudonym, Tokenizer(keyring).tokenize(EMAIL, **BIND)):
        with pytest.raises(AlreadyEncrypted):
            pseudonymizer.pseudonymize(value, tenant="t")
        with pytest.raises(AlreadyEncrypted):
            pseudonymizer.pseudonyms_for_lookup(value, tenant="t")
    with pytest.raises(CryptoError, match="tenant must be a non-empty string"):
        pseudonymizer.pseudonymize(EMAIL, tenant="")
    with pytest.raises(CryptoError) as info:
        pseudonymizer.pseudonymize("Jane \udc80", tenant="t")
    assert "Jane" not in str(info.value) and info.value.__context__ is None


def test_pseudonymizer_is_thread_safe(pseudonymizer: Pseudonymizer) -> None:
    import concurrent.futures

    expected = pseudonymizer.pseudonymize(EMAIL, tenant="t")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: pseudonymizer.pseudonymize(EMAIL, tenant="t"), range(2000))
        )
    assert set(results) == {expected}


@pytest.mark.parametrize("vector", VECTORS["pseudonyms"], ids=lambda v: v["pseudonym"][:24])
def test_pseudonym_vectors(vector: dict[str, Any]) -> None:
    pseudonymizer = Pseudonymizer(vector_keyring(vector["key_id"]))
    out = pseudonymizer.pseudonymize(
        vector["value"], tenant=vector["tenant"], namespace=vector["namespace"]
    )
    assert out == vector["pseudonym"]


def test_random_keys_differ() -> None:
    a = Pseudonymizer(Keyring([Key("k1", os.urandom(32))], primary="k1"))
    b = Pseudonymizer(Keyring([Key("k1", os.urandom(32))], primary="k1"))
    assert a.pseudonymize(EMAIL, tenant="t") != b.pseudonymize(EMAIL, tenant="t")
