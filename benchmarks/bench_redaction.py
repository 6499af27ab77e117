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
import uuid
from collections.abc import Callable
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


def api_document() -> bytes:
    """The same attendees as a typical JSON API sends them: UUID ids, timestamps and
    an entity tag, values whose digit runs send them to the free-text detectors."""
    rng = random.Random(11)
    data = orjson.loads(document())
    for i, attendee in enumerate(data["attendees"]):
        attendee["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        attendee["created_at"] = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T09:{i % 60:02d}:00Z"
        attendee["updated_at"] = f"2026-11-26T10:{i % 60:02d}:{(7 * i) % 60:02d}.{i:03d}+01:00"
        attendee["etag"] = f"{rng.getrandbits(160):040x}"
    return orjson.dumps(data)


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

    api_body = api_document()
    api_obj = orjson.loads(api_body)
    assert "4111 1111 1111 1111" not in orjson.dumps(redactor.redact(api_obj)).decode()

    no_text = Redactor(detect_text=False)

    def round_trip() -> object:
        return orjson.dumps(orjson.loads(body))

    def api_round_trip() -> object:
        return orjson.dumps(orjson.loads(api_body))

    # label: (operation, its baseline: the round trip of the document it works on)
    ops: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "redact(obj), keys + free-text detectors": (lambda: redactor.redact(obj), round_trip),
        "redact(obj), keys only": (lambda: no_text.redact(obj), round_trip),
        "redact_json(bytes), end to end": (lambda: redactor.redact_json(body), round_trip),
        "naive recursive walk (keys only)": (lambda: naive_walk(obj), round_trip),
        "API document: redact(obj), detectors": (
            lambda: redactor.redact(api_obj),
            api_round_trip,
        ),
    }

    # Each operation is timed between two timings of the baseline, in several rounds;
    # the median of the per-round ratios is reported (the machine's speed drifts).
    rounds, n = 9, 200
    base_times: list[float] = []
    times: dict[str, list[float]] = {label: [] for label in ops}
    ratios: dict[str, list[float]] = {label: [] for label in ops}
    for _ in range(rounds):
        for label, (fn, baseline) in ops.items():
            before = per_call_ns(baseline, number=n * 4, repeat=3)
            t = per_call_ns(fn, number=n, repeat=3)
            after = per_call_ns(baseline, number=n * 4, repeat=3)
            if baseline is round_trip:
                base_times.extend((before, after))
            times[label].append(t)
            ratios[label].append(t / ((before + after) / 2))

    print(
        f"document: {len(body)} bytes, 50 attendees (API document: {len(api_body)} bytes, "
        f"UUIDs and timestamps added; its own round trip is its baseline); "
        f"{rounds} rounds, medians"
    )
    print(
        f"orjson loads+dumps (baseline)            {statistics.median(base_times) / 1000:8.1f} us"
    )
    for label in ops:
        ns, ratio = statistics.median(times[label]), statistics.median(ratios[label])
        print(f"{label:40s} {ns / 1000:8.1f} us = {ratio:5.2f}x  (aim <= 4x)")


if __name__ == "__main__":
    main()
