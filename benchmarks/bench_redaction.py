"""Structured redaction of a 10 KB JSON document, as a ratio to an orjson round trip.

    .venv/bin/python benchmarks/bench_redaction.py

The document: 50 attendees, each with an e-mail, a phone, a card number and a few
fields that are not personal. Baseline in the same run: one ``orjson.loads`` +
``orjson.dumps`` of the same bytes. Measured:
  - ``Redactor.redact(obj)`` on the parsed object (what the middleware does after parsing)
  - ``Redactor.redact_json(bytes)`` end to end (parse + redact + serialise)
  - a naive recursive walk that checks every key against the same key list, for scale.
Aim: redact ≤ 4x the round trip.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from _util import per_call_ns

from privguard import DEFAULT_KEY_NAMES, Redactor
from privguard._operators import mask_card, mask_email, mask_phone


def document() -> bytes:
    rng = random.Random(7)
    attendees = []
    for i in range(50):
        attendees.append(
            {
                "id": f"att-{i:04d}",
                "first_name": rng.choice(["Jane", "Lukas", "Ana", "Wei", "Amara"]),
                "email": f"user{i}@example.com",
                "phone": f"+1 415 555 {1000 + i:04d}",
                "card_number": "4111 1111 1111 1111",
                "ticket": rng.choice(["standard", "vip", "speaker"]),
                "checked_in": rng.random() < 0.5,
                "sessions": [rng.randrange(100) for _ in range(3)],
            }
        )
    return orjson.dumps({"event": "devcon-2026", "attendees": attendees})


NAIVE_KEYS = {k.replace("_", "").lower(): c for k, c in DEFAULT_KEY_NAMES.items()}


def naive_walk(value: Any) -> Any:
    keys = NAIVE_KEYS
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            cat = keys.get(k.replace("_", "").replace("-", "").lower())
            if cat and isinstance(v, str):
                if "email" in cat:
                    out[k] = mask_email(v)
                elif "credit_card" in cat:
                    out[k] = mask_card(v)
                else:
                    out[k] = mask_phone(v)
            else:
                out[k] = naive_walk(v)
        return out
    if isinstance(value, list):
        return [naive_walk(v) for v in value]
    return value


def main() -> None:
    body = document()
    obj = orjson.loads(body)
    redactor = Redactor()
    redacted = redactor.redact(obj)
    assert "4111 1111 1111 1111" not in orjson.dumps(redacted).decode()

    no_text = Redactor(detect_text=False)
    ops = {
        "redact(obj), keys + free-text detectors": lambda: redactor.redact(obj),
        "redact(obj), keys only": lambda: no_text.redact(obj),
        "redact_json(bytes), end to end": lambda: redactor.redact_json(body),
        "naive recursive walk (keys only)": lambda: naive_walk(obj),
    }

    def round_trip() -> object:
        return orjson.dumps(orjson.loads(body))

    # Each operation is timed between two timings of the baseline, in several rounds;
    # the median of the per-round ratios is reported (the machine's speed drifts).
    rounds, n = 9, 200
    base_times: list[float] = []
    times: dict[str, list[float]] = {label: [] for label in ops}
    ratios: dict[str, list[float]] = {label: [] for label in ops}
    for _ in range(rounds):
        for label, fn in ops.items():
            before = per_call_ns(round_trip, number=n * 4, repeat=3)
            t = per_call_ns(fn, number=n, repeat=3)
            after = per_call_ns(round_trip, number=n * 4, repeat=3)
            base_times.extend((before, after))
            times[label].append(t)
            ratios[label].append(t / ((before + after) / 2))

    print(f"document: {len(body)} bytes, 50 attendees; {rounds} rounds, medians")
    print(
        f"orjson loads+dumps (baseline)            {statistics.median(base_times) / 1000:8.1f} us"
    )
    for label in ops:
        ns, ratio = statistics.median(times[label]), statistics.median(ratios[label])
        print(f"{label:40s} {ns / 1000:8.1f} us = {ratio:5.2f}x  (aim <= 4x)")


if __name__ == "__main__":
    main()
