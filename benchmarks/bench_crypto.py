"""Per-field cost of privguard's crypto operations against one raw AESGCM.encrypt.

Run: .venv/bin/python benchmarks/bench_crypto.py [--rounds N] [--number N]

Each operation is timed in rounds interleaved with the raw baseline (the same plaintext,
encoded once, through ``AESGCM.encrypt`` with a reused key object and a fixed nonce), so
a change in machine load moves both. The ratio of each round is taken and the median of
the rounds reported, with median nanoseconds per call. A deliberately straightforward
wrapper (fresh ``os.urandom`` nonce, ``struct`` AAD, ``urlsafe_b64encode``, f-string)
is measured the same way, as the yardstick for what the precomputation buys.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hmac
import os
import platform
import statistics
import struct
import sys
import timeit
from collections.abc import Callable

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from privguard._crypto import EncryptionContext, FieldCipher, Key, Keyring, Pseudonymizer, Tokenizer

PLAINTEXTS = {
    "card PAN (16 B)": "4111111111111111",
    "e-mail (24 B)": "jane.doe@example-mail.com",
    "address (1 KiB)": "Hauptstraße 1, 10115 Berlin; " * 35,
}


def naive_encrypt(aead: AESGCM, plaintext: str, ctx: EncryptionContext) -> str:
    # What a first version looks like: correct, but nothing precomputed.
    header = "pg1.g.k2026a."
    aad = b"".join(
        struct.pack(">I", len(p)) + p
        for p in (
            header.encode(),
            ctx.tenant.encode(),
            ctx.table.encode(),
            ctx.field.encode(),
            ctx.record_id.encode(),
        )
    )
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), aad)
    return f"{header}{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def per_call_ns(fn: Callable[[], object], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e9


def measure(
    ops: dict[str, Callable[[], object]], baseline: Callable[[], object], rounds: int, number: int
) -> dict[str, tuple[float, float]]:
    times: dict[str, list[float]] = {name: [] for name in ops}
    ratios: dict[str, list[float]] = {name: [] for name in ops}
    base_times: list[float] = []
    for _ in range(rounds):
        for name, fn in ops.items():
            before = per_call_ns(baseline, number)
            t = per_call_ns(fn, number)
            after = per_call_ns(baseline, number)
            base = (before + after) / 2
            base_times.append(base)
            times[name].append(t)
            ratios[name].append(t / base)
    result = {
        name: (statistics.median(times[name]), statistics.median(ratios[name])) for name in ops
    }
    result["raw AESGCM.encrypt"] = (statistics.median(base_times), 1.0)
    return result


class Setup:
    """Keys, contexts and raw primitives shared by every measurement."""

    def __init__(self) -> None:
        keyring = Keyring([Key.generate("k2026a")], primary="k2026a")
        self.cipher = FieldCipher(keyring)
        self.tokenizer = Tokenizer(keyring)
        self.pseudonymizer = Pseudonymizer(keyring)
        self.ctx = EncryptionContext(
            tenant="t_42", table="orders", field="card_pan", record_id="o_123456"
        )
        self.raw_aead = AESGCM(AESGCM.generate_key(256))
        self.raw_siv = AESSIV(AESSIV.generate_key(512))
        self.raw_hmac_key = os.urandom(32)
        self.nonce = os.urandom(12)

    def baseline(self, text: str) -> Callable[[], object]:
        aead, nonce, data = self.raw_aead, self.nonce, text.encode()
        return lambda: aead.encrypt(nonce, data, None)

    def ops(self, text: str) -> dict[str, Callable[[], object]]:
        cipher, tokenizer, pseudonymizer, ctx = (
            self.cipher,
            self.tokenizer,
            self.pseudonymizer,
            self.ctx,
        )
        aead, siv, hmac_key, nonce = self.raw_aead, self.raw_siv, self.raw_hmac_key, self.nonce
        data = text.encode()
        token = cipher.encrypt(text, context=ctx)
        sealed = aead.encrypt(nonce, data, None)
        aad = bytes(59)  # the size of FieldCipher's associated data for this context
        return {
            "FieldCipher.encrypt": lambda: cipher.encrypt(text, context=ctx),
            "FieldCipher.decrypt": lambda: cipher.decrypt(token, context=ctx),
            "Tokenizer.tokenize": lambda: tokenizer.tokenize(
                text, tenant="t_42", field="email", purpose="lookup"
            ),
            "Pseudonymizer.pseudonymize": lambda: pseudonymizer.pseudonymize(text, tenant="t_42"),
            "straightforward wrapper": lambda: naive_encrypt(aead, text, ctx),
            "raw AESGCM.encrypt, 59 B AAD": lambda: aead.encrypt(nonce, data, aad),
            "raw AESGCM.decrypt": lambda: aead.decrypt(nonce, sealed, None),
            "raw AESSIV.encrypt": lambda: siv.encrypt(data, None),
            "raw hmac.digest": lambda: hmac.digest(hmac_key, data, "sha256"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    setup = Setup()

    print(f"privguard crypto benchmark, {datetime.date.today().isoformat()}")
    print(
        f"Python {platform.python_version()} ({sys.implementation.name}), cryptography "
        f"{cryptography.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds x {args.number} calls, medians"
    )
    summary = []
    for label, text in PLAINTEXTS.items():
        ops = setup.ops(text)
        results = measure(ops, setup.baseline(text), args.rounds, args.number)
        print(f"\n{label}: ratio to one raw AESGCM.encrypt (same plaintext, reused key)")
        for name in ["raw AESGCM.encrypt", *ops]:
            ns, ratio = results[name]
            print(f"  {name:28} {ns:8.0f} ns  {ratio:5.2f}x")
        summary.append(f"{label} {results['FieldCipher.encrypt'][1]:.2f}x")
    print("\nFieldCipher.encrypt vs raw AESGCM.encrypt: " + ", ".join(summary))


if __name__ == "__main__":
    main()
