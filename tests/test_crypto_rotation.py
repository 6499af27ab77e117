"""Key rotation: re-encryption over host data, counts, retirement, concurrent writes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from privguard._crypto import (
    EncryptedColumn,
    EncryptionContext,
    FieldCipher,
    Key,
    Keyring,
    Reencryptor,
)
from privguard._errors import CryptoError, KeyringError, RetiredKey


def ctx(record_id: str, tenant: str = "t_42") -> EncryptionContext:
    return EncryptionContext(tenant=tenant, table="contacts", field="email", record_id=record_id)


class MemoryTable:
    """An in-memory encrypted column with a compare-and-set, like a database row update."""

    def __init__(self, yield_every: int = 0) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.plaintexts: dict[str, str] = {}  # what each record should decrypt to
        self.yield_every = yield_every

    def write(self, record_id: str, token: str, plaintext: str) -> None:
        with self.lock:
            self.values[record_id] = token
            self.plaintexts[record_id] = plaintext

    def rows(self) -> Iterator[tuple[EncryptionContext, str]]:
        with self.lock:
            snapshot = list(self.values.items())
        for n, (record_id, token) in enumerate(snapshot):
            if self.yield_every and n % self.yield_every == 0:
                time.sleep(0)  # let writers in, as a database cursor would
            yield ctx(record_id), token

    def replace(self, context: EncryptionContext, old: str, new: str) -> bool:
        with self.lock:
            if self.values.get(context.record_id) != old:
                return False
            self.values[context.record_id] = new
            return True


def fill(cipher: FieldCipher, table: MemoryTable, n: int) -> None:
    for i in range(n):
        plaintext = f"person{i}@example.com"
        table.write(f"r{i}", cipher.encrypt(plaintext, context=ctx(f"r{i}")), plaintext)


def assert_all_decrypt(cipher: FieldCipher, table: MemoryTable) -> None:
    with table.lock:
        items = list(table.values.items())
        expected = dict(table.plaintexts)
    for record_id, token in items:
        assert cipher.decrypt(token, context=ctx(record_id)) == expected[record_id]


def test_memory_table_is_an_encrypted_column() -> None:
    assert isinstance(MemoryTable(), EncryptedColumn)


def test_rotation_step_by_step() -> None:
    keyring = Keyring([Key.generate("k1")], primary="k1")
    cipher = FieldCipher(keyring)
    table = MemoryTable()
    fill(cipher, table, 500)
    old_token = table.values["r0"]
    rotation = Reencryptor(cipher, table)
    assert rotation.counts_by_key() == {"k1": 500}

    keyring.add(Key.generate("k2"))
    keyring.promote("k2")
    with pytest.raises(KeyringError, match="500 values are still encrypted"):
        rotation.retire("k1")

    report = rotation.run()
    assert report.reencrypted == 500
    assert report.changed_meanwhile == 0
    assert dict(report.failed) == {}
    assert dict(report.remaining) == {"k2": 500}
    assert report.passes == 2  # one that moved everything, one that found nothing left
    assert rotation.counts_by_key() == {"k2": 500}

    rotation.retire("k1")
    assert keyring.state_of("k1") == "retired"
    assert_all_decrypt(cipher, table)
    with pytest.raises(RetiredKey):
        cipher.decrypt(old_token, context=ctx("r0"))
    again = rotation.run()
    assert again.reencrypted == 0 and again.passes == 1


def test_rotation_under_concurrent_writes() -> None:
    keyring = Keyring([Key.generate("k1")], primary="k1")
    cipher = FieldCipher(keyring)
    table = MemoryTable(yield_every=25)
    fill(cipher, table, 3000)
    stop = threading.Event()
    writes = {"count": 0, "new_primary": 0, "after_promotion": 0}
    promoted = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(7)
        n = 3000
        try:
            while not stop.is_set():
                was_promoted = promoted.is_set()
                if rng.random() < 0.5:  # update an existing record
                    record_id = f"r{rng.randrange(n)}"
                else:  # insert a new one
                    record_id, n = f"r{n}", n + 1
                plaintext = f"v{writes['count']}@example.com"
                token = cipher.encrypt(plaintext, context=ctx(record_id))
                table.write(record_id, token, plaintext)
                writes["count"] += 1
                if was_promoted:
                    writes["after_promotion"] += 1
                    writes["new_primary"] += cipher.key_id_of(token) == "k2"
                time.sleep(0)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while writes["count"] < 200:
            time.sleep(0.001)
        keyring.add(Key.generate("k2"))
        keyring.promote("k2")
        promoted.set()
        before_run = writes["count"]
        rotation = Reencryptor(cipher, table)
        report = rotation.run(max_passes=10)
        during_run = writes["count"] - before_run
        # Writes go on; the old key is empty and can be retired while they do.
        assert rotation.counts_by_key().get("k1", 0) == 0
        rotation.retire("k1")
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert during_run > 0, "the writer must have written while the rotation ran"
    assert writes["after_promotion"] == writes["new_primary"]  # new writes use the new key
    assert report.reencrypted > 0
    assert dict(report.failed) == {}
    counts = Reencryptor(cipher, table).counts_by_key()
    assert set(counts) == {"k2"} and counts["k2"] == len(table.values)
    assert_all_decrypt(cipher, table)


def test_lost_compare_and_set_is_counted_not_overwritten() -> None:
    keyring = Keyring([Key.generate("k1")], primary="k1")
    cipher = FieldCipher(keyring)

    class RacingTable(MemoryTable):
        def replace(self, context: EncryptionContext, old: str, new: str) -> bool:
            if context.record_id == "r1" and not getattr(self, "raced", False):
                self.raced = True  # a writer got there first, with the new primary
                self.write("r1", cipher.encrypt("newer", context=context), "newer")
            return super().replace(context, old, new)

    table = RacingTable()
    fill(cipher, table, 5)
    keyring.add(Key.generate("k2"))
    keyring.promote("k2")
    report = Reencryptor(cipher, table).run()
    assert report.changed_meanwhile == 1
    assert report.reencrypted == 4
    assert dict(report.remaining) == {"k2": 5}
    assert cipher.decrypt(table.values["r1"], context=ctx("r1")) == "newer"


def test_values_that_cannot_move_are_reported() -> None:
    keyring = Keyring([Key.generate("k0"), Key.generate("k1")], primary="k0")
    cipher = FieldCipher(keyring)
    table = MemoryTable()
    table.write("r5", cipher.encrypt("a", context=ctx("r5")), "a")
    keyring.promote("k1")
    fill(cipher, table, 3)  # r0..r2
    table.write("r7", cipher.encrypt("x", context=ctx("r0")), "x")  # stored at the wrong row
    table.write("r8", "not a ciphertext", "not a ciphertext")
    keyring.add(Key.generate("k2"))
    keyring.promote("k2")
    keyring.retire("k0", remaining=0)  # wrongly: r5 is still under it
    report = Reencryptor(cipher, table).run()
    assert report.reencrypted == 3
    assert dict(report.failed) == {"RetiredKey": 1, "AuthenticationFailed": 1, "BadFormat": 1}
    assert dict(report.remaining) == {"k0": 1, "k1": 1, "k2": 3}
    keyring.reactivate("k0")
    report = Reencryptor(cipher, table).run()
    assert report.reencrypted == 1
    assert dict(report.failed) == {"AuthenticationFailed": 1, "BadFormat": 1}
    assert dict(report.remaining) == {"k1": 1, "k2": 4}


def test_stop_event_and_max_passes() -> None:
    keyring = Keyring([Key.generate("k1")], primary="k1")
    cipher = FieldCipher(keyring)
    table = MemoryTable()
    fill(cipher, table, 10)
    keyring.add(Key.generate("k2"))
    keyring.promote("k2")
    stop = threading.Event()
    stop.set()
    report = Reencryptor(cipher, table).run(stop=stop)
    assert report.passes == 0 and report.reencrypted == 0
    report = Reencryptor(cipher, table).run(max_passes=1)
    assert report.passes == 1 and report.reencrypted == 10
    with pytest.raises(CryptoError):
        Reencryptor(cipher, table).run(max_passes=0)


def test_report_holds_counts_only() -> None:
    keyring = Keyring([Key.generate("k1")], primary="k1")
    cipher = FieldCipher(keyring)
    table = MemoryTable()
    fill(cipher, table, 3)
    report = Reencryptor(cipher, table).run()
    assert "example.com" not in repr(report)
    assert repr(Reencryptor(cipher, table)) == "Reencryptor(primary='k1')"
