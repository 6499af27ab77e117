"""FieldCipher: round trips, the format, associated data, tampering, nonces, vectors."""

from __future__ import annotations

import base64
import ctypes
import json
import mmap
import os
import platform
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from privguard._crypto import (
    EncryptionContext,
    FieldCipher,
    Key,
    Keyring,
    Pseudonymizer,
    Tokenizer,
    _cipher,
    _format,
)
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
CTX = EncryptionContext(tenant="t_42", table="orders", field="card_pan", record_id="o_9")
PAN = "4111111111111111"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([Key("k1", KEY1), Key("k2", KEY2)], primary="k1")


@pytest.fixture
def cipher(keyring: Keyring) -> FieldCipher:
    return FieldCipher(keyring)


def lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def hkdf(master: bytes, info: str, length: int) -> bytes:
    return HKDF(SHA256(), length, None, info.encode()).derive(master)


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [PAN, "", "Zoë Ångström", "☎ +49 30 1234567 😀", "a" * 100_000, "\x00\n\t", "pg1.not ours"],
)
def test_round_trip(cipher: FieldCipher, plaintext: str) -> None:
    token = cipher.encrypt(plaintext, context=CTX)
    assert plaintext not in token or plaintext == ""
    assert cipher.decrypt(token, context=CTX) == plaintext


def test_format_and_header(cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    magic, alg, key_id, payload = token.split(".")
    assert (magic, alg, key_id) == ("pg1", "g", "k1")
    raw = base64.urlsafe_b64decode(payload)
    assert len(raw) == 12 + len(PAN) + 16
    assert cipher.key_id_of(token) == "k1"
    assert cipher.is_encrypted(token)
    assert token.isascii() and " " not in token


def test_encryption_is_randomized(cipher: FieldCipher) -> None:
    assert cipher.encrypt(PAN, context=CTX) != cipher.encrypt(PAN, context=CTX)


def test_decrypts_with_non_primary_active_key(keyring: Keyring, cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    keyring.promote("k2")
    assert cipher.key_id_of(cipher.encrypt(PAN, context=CTX)) == "k2"
    assert cipher.decrypt(token, context=CTX) == PAN


def test_reencrypt_moves_to_primary(keyring: Keyring, cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    assert cipher.reencrypt(token, context=CTX) == token
    keyring.promote("k2")
    moved = cipher.reencrypt(token, context=CTX)
    assert cipher.key_id_of(moved) == "k2"
    assert cipher.decrypt(moved, context=CTX) == PAN


@settings(max_examples=300, deadline=None)
@given(
    plaintext=st.text(),
    ids=st.tuples(*[st.text(min_size=1, max_size=40)] * 4),
)
def test_round_trip_property(plaintext: str, ids: tuple[str, str, str, str]) -> None:
    cipher = FieldCipher(Keyring([Key("k1", KEY1)], primary="k1"))
    ctx = EncryptionContext(*ids)
    token = cipher.encrypt(plaintext, context=ctx)
    assert cipher.decrypt(token, context=ctx) == plaintext
    other = EncryptionContext(ids[0], ids[1], ids[2], ids[3] + "x")
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(token, context=other)


# -- associated data ---------------------------------------------------------------------


@pytest.mark.parametrize("changed", ["tenant", "table", "field", "record_id"])
def test_each_context_field_is_bound(cipher: FieldCipher, changed: str) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    values = {"tenant": "t_42", "table": "orders", "field": "card_pan", "record_id": "o_9"}
    values[changed] += "x"
    with pytest.raises(AuthenticationFailed) as info:
        cipher.decrypt(token, context=EncryptionContext(**values))
    assert PAN not in str(info.value)


def test_length_prefixing_makes_boundaries_unambiguous(cipher: FieldCipher) -> None:
    a = EncryptionContext(tenant="ab", table="c", field="f", record_id="r")
    b = EncryptionContext(tenant="a", table="bc", field="f", record_id="r")
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(cipher.encrypt(PAN, context=a), context=b)


def test_rows_swapped_between_records_and_tenants(cipher: FieldCipher) -> None:
    rows = {
        ("t1", "r1"): "4111111111111111",
        ("t1", "r2"): "5500000000000004",
        ("t2", "r1"): "340000000000009",
    }
    stored = {
        k: cipher.encrypt(v, context=EncryptionContext(k[0], "orders", "card_pan", k[1]))
        for k, v in rows.items()
    }
    for target in rows:
        for source in rows:
            ctx = EncryptionContext(target[0], "orders", "card_pan", target[1])
            if source == target:
                assert cipher.decrypt(stored[source], context=ctx) == rows[target]
            else:
                with pytest.raises(AuthenticationFailed):
                    cipher.decrypt(stored[source], context=ctx)


def test_header_is_authenticated(keyring: Keyring, cipher: FieldCipher) -> None:
    # A ciphertext made with the right key and context but without the header in the
    # associated data must not decrypt: the header is part of what is authenticated.
    aead = AESGCM(hkdf(KEY1, "privguard/v1/aes-256-gcm", 32))
    nonce = os.urandom(12)
    context_only = b"".join(lp(s.encode()) for s in ("t_42", "orders", "card_pan", "o_9"))
    forged = (
        "pg1.g.k1."
        + base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, PAN.encode(), context_only)).decode()
    )
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(forged, context=CTX)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": "", "table": "t", "field": "f", "record_id": "r"},
        {"tenant": "t", "table": "t", "field": "f", "record_id": ""},
        {"tenant": 1, "table": "t", "field": "f", "record_id": "r"},
        {"tenant": "t", "table": None, "field": "f", "record_id": "r"},
    ],
)
def test_context_needs_non_empty_string_ids(kwargs: dict[str, Any]) -> None:
    with pytest.raises(CryptoError):
        EncryptionContext(**kwargs)


def test_context_is_hashable_and_comparable() -> None:
    same = EncryptionContext(tenant="t_42", table="orders", field="card_pan", record_id="o_9")
    assert same == CTX and hash(same) == hash(CTX)
    assert "_aad" not in repr(CTX)


# -- tampering ---------------------------------------------------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/!"


@pytest.mark.parametrize("plaintext", [PAN, "", "Zoë"])
def test_tamper_every_character(cipher: FieldCipher, plaintext: str) -> None:
    token = cipher.encrypt(plaintext, context=CTX)
    outcomes: set[type[Exception]] = set()
    for i, original in enumerate(token):
        for replacement in ALPHABET:
            if replacement == original:
                continue
            tampered = token[:i] + replacement + token[i + 1 :]
            with pytest.raises((AuthenticationFailed, BadFormat, UnknownKey)) as info:
                cipher.decrypt(tampered, context=CTX)
            outcomes.add(type(info.value))
            if plaintext:
                assert plaintext not in str(info.value)
    assert outcomes >= {AuthenticationFailed, BadFormat, UnknownKey}


def test_tamper_every_bit_of_the_payload(cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    head, payload = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(payload)
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            tampered = f"{head}.{base64.urlsafe_b64encode(bytes(flipped)).decode()}"
            with pytest.raises(AuthenticationFailed):
                cipher.decrypt(tampered, context=CTX)


def test_truncated_and_extended(cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    for n in range(len(token)):
        with pytest.raises((AuthenticationFailed, BadFormat, UnknownKey)):
            cipher.decrypt(token[:n], context=CTX)
    for suffix in ["A", "AAAA", "====", ".", "\n"]:
        with pytest.raises((AuthenticationFailed, BadFormat)):
            cipher.decrypt(token + suffix, context=CTX)


def test_non_canonical_base64_is_refused(cipher: FieldCipher) -> None:
    # Two texts for the same bytes would let a changed stored value still decrypt.
    for plaintext in ["", "a", "ab", "abc"]:
        token = cipher.encrypt(plaintext, context=CTX)
        head, payload = token.rsplit(".", 1)
        raw = base64.urlsafe_b64decode(payload)
        for i in range(len(payload)):
            for alt in ALPHABET[:64]:
                variant = payload[:i] + alt + payload[i + 1 :]
                if variant == payload:
                    continue
                try:
                    same = base64.urlsafe_b64decode(variant) == raw
                except ValueError:
                    same = False
                if same:  # decodes to identical bytes: must be refused as malformed
                    with pytest.raises(BadFormat):
                        cipher.decrypt(f"{head}.{variant}", context=CTX)


def test_a_token_or_pseudonym_is_not_a_ciphertext(keyring: Keyring, cipher: FieldCipher) -> None:
    token = Tokenizer(keyring).tokenize(PAN, tenant="t", field="f", purpose="p")
    pseudonym = Pseudonymizer(keyring).pseudonymize(PAN, tenant="t")
    for value in (token, pseudonym):
        with pytest.raises(BadFormat):
            cipher.decrypt(value, context=CTX)


# -- errors ------------------------------------------------------------------------------


def test_unknown_key(cipher: FieldCipher) -> None:
    other = FieldCipher(Keyring([Key("k9", os.urandom(32))], primary="k9"))
    with pytest.raises(UnknownKey) as info:
        cipher.decrypt(other.encrypt(PAN, context=CTX), context=CTX)
    assert info.value.key_id == "k9"
    assert PAN not in str(info.value)


def test_wrong_key_same_id_fails_authentication(cipher: FieldCipher) -> None:
    impostor = FieldCipher(Keyring([Key("k1", os.urandom(32))], primary="k1"))
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(impostor.encrypt(PAN, context=CTX), context=CTX)


def test_retired_key(keyring: Keyring, cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    keyring.promote("k2")
    keyring.retire("k1", remaining=0)
    with pytest.raises(RetiredKey) as info:
        cipher.decrypt(token, context=CTX)
    assert info.value.key_id == "k1"
    assert PAN not in str(info.value)


@pytest.mark.parametrize("value", VECTORS["malformed"])
def test_malformed_values(value: str) -> None:
    keys = [Key(k["id"], base64.b64decode(k["material_b64"])) for k in VECTORS["keys"]]
    cipher = FieldCipher(Keyring(keys, primary="kat-1"))
    ctx = EncryptionContext(**VECTORS["ciphertexts"][0]["context"])
    with pytest.raises(BadFormat) as info:
        cipher.decrypt(value, context=ctx)
    assert not cipher.is_encrypted(value)
    if value.strip():
        assert value not in str(info.value)


@pytest.mark.parametrize("value", [None, b"pg1.g.k1.AAAA", 42])
def test_non_strings_are_bad_format(cipher: FieldCipher, value: Any) -> None:
    with pytest.raises(BadFormat):
        cipher.decrypt(value, context=CTX)
    with pytest.raises(BadFormat):
        cipher.key_id_of(value)
    assert not cipher.is_encrypted(value)


def test_decrypt_follows_key_changes_made_after_the_cipher(keyring: Keyring) -> None:
    # decrypt keeps an index of the usable keys by header; it must follow the keyring.
    cipher = FieldCipher(keyring)
    old = cipher.encrypt(PAN, context=CTX)
    assert cipher.decrypt(old, context=CTX) == PAN
    keyring.add(Key("k3", bytes(range(50, 82))))
    keyring.promote("k3")
    new = cipher.encrypt(PAN, context=CTX)
    assert cipher.key_id_of(new) == "k3"
    assert cipher.decrypt(new, context=CTX) == PAN
    keyring.retire("k1", remaining=0)
    with pytest.raises(RetiredKey):
        cipher.decrypt(old, context=CTX)
    keyring.reactivate("k1")
    assert cipher.decrypt(old, context=CTX) == PAN
    other = FieldCipher(Keyring([Key("k9", KEY1)], primary="k9"))
    with pytest.raises(UnknownKey):
        cipher.decrypt(other.encrypt(PAN, context=CTX), context=CTX)


@pytest.mark.parametrize(
    "value", ["pg1.g.k1.a.b", "pg1.g.k1.", "x.pg1.g.k1.AAAA", "pg1.s.k1.AAAAAAAAAAAAAAAAAAAAAA=="]
)
def test_decrypt_fast_path_refuses_what_the_format_refuses(cipher: FieldCipher, value: str) -> None:
    with pytest.raises(BadFormat):
        cipher.decrypt(value, context=CTX)


def test_key_id_of_rejects_plaintext_without_echo(cipher: FieldCipher) -> None:
    with pytest.raises(BadFormat) as info:
        cipher.key_id_of("jane.doe@example.com")
    assert "jane" not in str(info.value)


def test_already_encrypted(keyring: Keyring, cipher: FieldCipher) -> None:
    token = cipher.encrypt(PAN, context=CTX)
    with pytest.raises(AlreadyEncrypted) as info:
        cipher.encrypt(token, context=CTX)
    assert token not in str(info.value)
    # also values of any key id and kind: a token, a pseudonym, another keyring's value
    foreign = FieldCipher(Keyring([Key("zz", os.urandom(32))], primary="zz"))
    for value in (
        Tokenizer(keyring).tokenize(PAN, tenant="t", field="f", purpose="p"),
        Pseudonymizer(keyring).pseudonymize(PAN, tenant="t"),
        foreign.encrypt(PAN, context=CTX),
    ):
        with pytest.raises(AlreadyEncrypted):
            cipher.encrypt(value, context=CTX)
    # a value that only looks similar is plaintext
    for lookalike in ["pg1.", "pg1.g.k1.", "pg1.g.k1.not base64!", token[:-5]]:
        assert cipher.decrypt(cipher.encrypt(lookalike, context=CTX), context=CTX) == lookalike


def test_lone_surrogate_is_refused_without_echo(cipher: FieldCipher) -> None:
    secret = "Jane Doe \ud800 4111"
    with pytest.raises(CryptoError) as info:
        cipher.encrypt(secret, context=CTX)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "Jane" not in repr(info.value)


# -- nonces ------------------------------------------------------------------------------


def test_nonces_unique_over_100k_encryptions(cipher: FieldCipher) -> None:
    nonces = {
        base64.urlsafe_b64decode(cipher.encrypt("x", context=CTX).rsplit(".", 1)[1])[:12]
        for _ in range(100_000)
    }
    assert len(nonces) == 100_000


def test_nonces_unique_across_threads(cipher: FieldCipher) -> None:
    results: list[list[bytes]] = [[] for _ in range(4)]

    def work(out: list[bytes]) -> None:
        for _ in range(10_000):
            out.append(base64.urlsafe_b64decode(cipher.encrypt("x", context=CTX)[9:])[:12])

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({n for out in results for n in out}) == 40_000


def _nonce_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rsplit(".", 1)[1])[:12]


def _in_child(fork: Callable[[], int], child: Callable[[], bytes]) -> bytes:
    """Fork with ``fork``, run ``child`` there and return what it wrote to a pipe."""
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - child
        status = 1
        try:
            os.close(read_end)
            out = child()
            while out:
                out = out[os.write(write_end, out) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    received = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if select.select([read_end], [], [], 1)[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                received += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child did not finish")
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return received


def _pieces(data: bytes, size: int = 12) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _fill_pool(cipher: FieldCipher) -> list[bytes]:
    """Make the shared pool hold at least 64 nonces; return them (the next the parent uses)."""
    cipher.encrypt("x", context=CTX)
    while len(_format.NONCE_POOL) < 64:
        _format.take_nonce()
    return list(_format.NONCE_POOL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reuse_parent_nonces(cipher: FieldCipher) -> None:
    parents_pool = _fill_pool(cipher)

    def child() -> bytes:
        return b"".join(_format.take_nonce() for _ in range(10))

    from_child = _pieces(_in_child(os.fork, child))
    parent = [_format.take_nonce() for _ in range(10)]
    assert len(from_child) == 10
    assert not set(parent) & set(from_child)
    assert not set(parents_pool) & set(from_child)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="forks through the C library's fork() with ctypes; written for Linux glibc",
)
def test_c_level_fork_without_python_hooks_does_not_reuse_parent_nonces(
    cipher: FieldCipher,
) -> None:
    # The uWSGI case: fork() called from C, so os.register_at_fork hooks never run and
    # the child starts with the parent's pool. PyDLL keeps the GIL across the call.
    parents_pool = _fill_pool(cipher)
    c_fork = ctypes.PyDLL(None).fork
    c_fork.restype = ctypes.c_int

    def child() -> bytes:
        inherited = len(_format.NONCE_POOL).to_bytes(4, "big")  # hooks skipped: not empty
        encrypted = [_nonce_of(cipher.encrypt("x", context=CTX)) for _ in range(10)]
        return inherited + b"".join(encrypted + [_format.take_nonce() for _ in range(10)])

    out = _in_child(c_fork, child)
    assert int.from_bytes(out[:4], "big") == len(parents_pool)  # the hook did not run
    from_child = _pieces(out[4:])
    assert len(from_child) == 20
    parent = [_nonce_of(cipher.encrypt("x", context=CTX)) for _ in range(20)]
    assert parent == parents_pool[::-1][:20]  # the parent keeps its pool
    assert not set(parents_pool) & set(from_child)


def _linux_at_least(major: int, minor: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    release = platform.release().split("-", 1)[0].split(".")
    return tuple(int(x) for x in release[:2] if x.isdigit()) >= (major, minor)


@pytest.mark.skipif(
    not _linux_at_least(4, 14) or platform.machine() not in ("x86_64", "aarch64"),
    reason="MADV_WIPEONFORK is checked on Linux 4.14+, x86_64 and aarch64",
)
def test_the_pool_mark_is_a_wipe_on_fork_page_on_linux() -> None:
    # The cheap check (no getpid system call) is in use, and the kernel agrees.
    mark = _format.POOL_MARK
    assert isinstance(mark, mmap.mmap)
    flags = _format._mapping_vm_flags(_format._page_address(mark))
    assert flags is not None and "wf" in flags


@pytest.mark.parametrize("flags", [None, ["rd", "wr", "mr", "mw", "me", "ac"]])
def test_an_unconfirmed_wipe_on_fork_page_falls_back_to_the_pid(
    monkeypatch: pytest.MonkeyPatch, flags: list[str] | None
) -> None:
    # madvise succeeded (or so an emulator says), but smaps shows no "wf" flag, or
    # cannot be read: the page is closed and the pid check is used.
    seen: list[int] = []
    made: list[mmap.mmap] = []

    class SpyPage(mmap.mmap):
        def __new__(cls, *args: Any, **kwargs: Any) -> SpyPage:
            page = super().__new__(cls, *args, **kwargs)
            made.append(page)
            return page

    def no_wf(address: int, smaps_path: str = "") -> list[str] | None:
        seen.append(address)
        return flags

    monkeypatch.setattr(_format, "_mapping_vm_flags", no_wf)
    monkeypatch.setattr(mmap, "mmap", SpyPage)
    assert _format._wipe_on_fork_page() is None
    assert isinstance(_format._choose_pool_mark(), _format._PidMark)
    if _linux_at_least(4, 14) and platform.machine() in ("x86_64", "aarch64"):
        assert len(seen) == 2  # smaps was asked, once per page
        assert len(made) == 2
    assert all(page.closed for page in made)


@pytest.mark.skipif(
    not _linux_at_least(4, 14) or platform.machine() not in ("x86_64", "aarch64"),
    reason="MADV_WIPEONFORK is checked on Linux 4.14+, x86_64 and aarch64",
)
def test_a_confirmed_wipe_on_fork_page_is_kept() -> None:
    page = _format._wipe_on_fork_page()
    assert isinstance(page, mmap.mmap)
    assert isinstance(_format._choose_pool_mark(), mmap.mmap)
    page.close()


_SMAPS_TEXT = """\
00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/python3
Size:                328 kB
VmFlags: rd ex mr mw me dw
7f0000000000-7f0000002000 rw-p 00000000 00:00 0
Size:                  8 kB
Anonymous:             4 kB
VmFlags: rd wr mr mw me ac wf
7f0000003000-7f0000004000 rw-p 00000000 00:00 0
Size:                  4 kB
7f0000005000-7f0000006000 r--p 00000000 08:02 4242        /opt/caf\u00e9-lib.so
VmFlags: rd mr mw me
"""


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (0x00400000, ["rd", "ex", "mr", "mw", "me", "dw"]),
        (0x7F0000001FFF, ["rd", "wr", "mr", "mw", "me", "ac", "wf"]),
        (0x7F0000002000, None),  # between mappings
        (0x7F0000003000, None),  # a mapping without a VmFlags line
        (0x7F0000005000, ["rd", "mr", "mw", "me"]),  # past a non-ASCII path
        (0x10, None),  # below every mapping
        (0x7FFF00000000, None),  # above every mapping
    ],
)
def test_mapping_vm_flags_reads_the_mapping_that_holds_the_address(
    tmp_path: Path, address: int, expected: list[str] | None
) -> None:
    smaps = tmp_path / "smaps"
    smaps.write_text(_SMAPS_TEXT, encoding="utf-8")
    assert _format._mapping_vm_flags(address, str(smaps)) == expected


def test_mapping_vm_flags_is_none_when_smaps_cannot_be_read(tmp_path: Path) -> None:
    assert _format._mapping_vm_flags(0x1000, str(tmp_path / "missing")) is None
    garbled = tmp_path / "garbled"
    garbled.write_bytes(b"zz-yy rw-p 0 0 0\nVmFlags: rd wf\n")
    assert _format._mapping_vm_flags(0x1000, str(garbled)) is None


def _use_pool(monkeypatch: pytest.MonkeyPatch, pool: list[bytes], mark: _format.PoolMark) -> None:
    # The hot path in FieldCipher.encrypt binds both names at import.
    for module in (_format, _cipher):
        monkeypatch.setattr(module, "NONCE_POOL", pool)
        monkeypatch.setattr(module, "POOL_MARK", mark)


@pytest.mark.parametrize("kind", ["pid", "wipe-on-fork page"])
def test_a_fork_without_hooks_discards_the_parents_pool(
    cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    pool: list[bytes] = []
    mark: _format.PoolMark = _format._PidMark() if kind == "pid" else bytearray(1)
    _use_pool(monkeypatch, pool, mark)
    cipher.encrypt("x", context=CTX)  # the parent fills the pool
    parents_next = list(pool)  # every nonce the parent has yet to use
    assert len(parents_next) == 1023
    assert _format.take_nonce() == parents_next[-1]  # in the parent, the pool stays

    # The child of a fork that ran no Python hook: same pool, but a new pid, or the
    # wipe-on-fork page zeroed by the kernel.
    if kind == "pid":
        parent_pid = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: parent_pid + 1)
    else:
        mark[0] = 0
    first = _nonce_of(cipher.encrypt("x", context=CTX))
    assert not set(pool) & set(parents_next)  # all of the parent's pool is gone
    child = [first]
    child += [_nonce_of(cipher.encrypt("x", context=CTX)) for _ in range(1500)]
    child += [_format.take_nonce() for _ in range(1500)]  # across another refill
    assert not set(child) & set(parents_next)
    assert len(set(child)) == len(child)


def test_pid_mark_reads_set_only_in_the_process_that_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mark = _format._PidMark()
    assert mark[0] == 0
    mark[0] = 1
    assert mark[0] == 1
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    assert mark[0] == 0
    mark[0] = 0
    monkeypatch.setattr(os, "getpid", lambda: pid)
    assert mark[0] == 0


def test_encrypt_draws_its_nonce_from_the_pool(
    cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hot path inlines the nonce pool; it must produce exactly what the seam does.
    nonce = bytes(range(12))
    _use_pool(monkeypatch, [nonce], bytearray(b"\x01"))  # a pool filled in this process
    token = cipher.encrypt(PAN, context=CTX)
    assert token == cipher._encrypt_with_nonce(PAN, context=CTX, nonce=nonce)


def test_a_refill_is_one_batch_of_distinct_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = b"".join(i.to_bytes(12, "big") for i in range(1024))  # distinct 12-byte pieces
    monkeypatch.setattr(_format.os, "urandom", lambda n: batch[:n])
    _use_pool(monkeypatch, [], bytearray(1))
    first = _format.refill_nonces()
    nonces = [first, *_format.NONCE_POOL]
    assert len(nonces) == 1024
    assert all(len(n) == 12 for n in nonces)
    assert sorted(nonces) == sorted(batch[i : i + 12] for i in range(0, len(batch), 12))
    assert len(set(nonces)) == 1024
    assert _format.POOL_MARK[0] == 1


def test_nonce_seam_checks_length(cipher: FieldCipher) -> None:
    with pytest.raises(CryptoError):
        cipher._encrypt_with_nonce(PAN, context=CTX, nonce=b"short")


# -- known-answer vectors ----------------------------------------------------------------


def _vector_keyring(primary: str) -> Keyring:
    keys = [Key(k["id"], base64.b64decode(k["material_b64"])) for k in VECTORS["keys"]]
    return Keyring(keys, primary=primary)


def test_vectors_derived_keys_follow_the_documented_hkdf() -> None:
    info = VECTORS["hkdf"]["info"]
    for k in VECTORS["keys"]:
        master = base64.b64decode(k["material_b64"])
        assert hkdf(master, info["aead"], 32).hex() == k["aead_key_hex"]
        assert hkdf(master, info["siv"], 64).hex() == k["siv_key_hex"]
        assert hkdf(master, info["hmac"], 32).hex() == k["hmac_key_hex"]


@pytest.mark.parametrize("vector", VECTORS["ciphertexts"], ids=lambda v: v["ciphertext"][:24])
def test_ciphertext_vectors(vector: dict[str, Any]) -> None:
    cipher = FieldCipher(_vector_keyring(vector["key_id"]))
    ctx = EncryptionContext(**vector["context"])
    nonce = bytes.fromhex(vector["nonce_hex"])
    assert (
        cipher._encrypt_with_nonce(vector["plaintext"], context=ctx, nonce=nonce)
        == (vector["ciphertext"])
    )
    assert cipher.decrypt(vector["ciphertext"], context=ctx) == vector["plaintext"]
    # the documented AAD, rebuilt independently
    header = f"pg1.g.{vector['key_id']}."
    parts = [header, *(vector["context"][f] for f in ("tenant", "table", "field", "record_id"))]
    assert b"".join(lp(p.encode()) for p in parts).hex() == vector["aad_hex"]
    # and from raw primitives: only the documented inputs go into the value
    key = next(k for k in VECTORS["keys"] if k["id"] == vector["key_id"])
    raw = base64.urlsafe_b64decode(vector["ciphertext"][len(header) :])
    assert raw[:12] == nonce
    aead = AESGCM(bytes.fromhex(key["aead_key_hex"]))
    assert aead.decrypt(nonce, raw[12:], bytes.fromhex(vector["aad_hex"])) == (
        vector["plaintext"].encode()
    )


def test_vectors_decrypt_under_a_keyring_with_another_primary() -> None:
    cipher = FieldCipher(_vector_keyring("kat_2"))
    for vector in VECTORS["ciphertexts"]:
        ctx = EncryptionContext(**vector["context"])
        assert cipher.decrypt(vector["ciphertext"], context=ctx) == vector["plaintext"]


def test_repr_shows_ids_only(cipher: FieldCipher) -> None:
    assert repr(cipher) == "FieldCipher(primary='k1')"
