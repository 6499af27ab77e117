"""Disclosure records written per second to SQLite for a 100 000-subject export.

    .venv/bin/python benchmarks/bench_disclosures.py            # --subjects 100000 --rounds 5

Each round writes into fresh database files, so every insert meets indexes of the same
size. Measured in the same run:

(a) bare: one ``executemany`` of the same rows (already tuples) into an identical
    ``disclosures`` table (same migration, same pragmas), in one transaction: the floor;
(b) ``SQLiteStore.append_disclosures``: ``DisclosureRecord`` objects in, one
    ``executemany`` in one transaction. Aim: at least 0.5x the bare rate;
(c) ``Privguard.disclose`` end to end, to an acquirer (no consent lookup): reduce and
    protect each record, decide, build the records, write them;
(d) the same to an exhibitor, where every subject's consent is read from SQLite.

Prints the median rate of each and its ratio to (a).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from privguard import (
    Categories,
    Evidence,
    Privguard,
    Purposes,
    Recipient,
    RecipientKind,
    Scope,
    SQLiteStore,
    Subject,
    Telemetry,
)
from privguard._stores import _sqlite

TENANT = "acme-events"
ACQUIRER = Recipient(
    "megacorp",
    RecipientKind.ACQUIRER,
    purposes=[Purposes.CORPORATE_TRANSACTION],
    categories=[Categories.USER],
)


def _lead(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "first_name": "Jane",
        "last_name": f"Doe{i}",
        "email": f"jane.doe{i}@example.com",
        "phone": "+49 30 1234567",
        "company": "Globex",
        "ticket": "VIP",
    }


def _bare(path: Path, rows: list[tuple[object, ...]]) -> float:
    """Seconds for one bare executemany of ``rows`` into a fresh, identical table."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    for migration in _sqlite.MIGRATIONS:
        for statement in migration.statements:
            db.execute(statement)
    start = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(_sqlite._INSERT_DISCLOSURE, rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n: int = args.subjects

    subjects = [Subject.business_contact(f"c-{i}", tenant=TENANT) for i in range(n)]
    pairs = [(s, _lead(i)) for i, s in enumerate(subjects)]
    times: dict[str, list[float]] = {"bare": [], "store": [], "acquirer": [], "exhibitor": []}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # One export's records, built once: (a) and (b) write exactly these rows.
        seed = Privguard(recipients=[ACQUIRER], telemetry=Telemetry.disabled())
        template = seed.disclose(pairs, to=ACQUIRER, purpose=Purposes.CORPORATE_TRANSACTION)
        records = list(seed.disclosures.for_recipient("megacorp"))
        assert len(records) == n == template.disclosed
        rows = list(_sqlite._disclosure_rows(records))

        # Exhibitor consent for every subject, granted once into a file copied per round.
        consents = root / "consents.sqlite3"
        granting = Privguard(store=SQLiteStore(consents), telemetry=Telemetry.disabled())
        booth = Scope(event="E1", exhibitor="globex")
        evidence = Evidence("form", actor="bench", notice_version=granting.policy.version)
        with granting.store.transaction():
            for s in subjects:
                granting.ledger.grant(
                    s, Purposes.EXHIBITOR_DISCLOSURE, scope=booth, evidence=evidence
                )
        granting.close()

        for r in range(args.rounds):
            times["bare"].append(_bare(root / f"bare-{r}.sqlite3", rows))

            store = SQLiteStore(root / f"store-{r}.sqlite3")
            times["store"].append(_timed(lambda s=store: s.append_disclosures(records)))
            store.close()

            guard = Privguard(
                store=SQLiteStore(root / f"acq-{r}.sqlite3"),
                recipients=[ACQUIRER],
                telemetry=Telemetry.disabled(),
            )
            times["acquirer"].append(
                _timed(
                    lambda g=guard: g.disclose(
                        pairs, to=ACQUIRER, purpose=Purposes.CORPORATE_TRANSACTION
                    )
                )
            )
            guard.close()

            copy = root / f"exh-{r}.sqlite3"
            src = sqlite3.connect(consents)
            dst = sqlite3.connect(copy)
            src.backup(dst)
            src.close()
            dst.close()
            guard = Privguard(store=SQLiteStore(copy), telemetry=Telemetry.disabled())
            globex = guard.recipients.register_exhibitor(event="E1", name="globex")
            result = None

            def export(g: Privguard = guard, to: Recipient = globex) -> None:
                nonlocal result
                result = g.disclose(pairs, to=to, purpose=Purposes.EXHIBITOR_DISCLOSURE)

            times["exhibitor"].append(_timed(export))
            assert result is not None and result.disclosed == n
            guard.close()

    bare = statistics.median(times["bare"])
    print(f"{n} subjects, median of {args.rounds} rounds, fresh SQLite files (WAL, FULL sync)")
    labels = {
        "bare": "(a) bare executemany of the rows",
        "store": "(b) SQLiteStore.append_disclosures",
        "acquirer": "(c) Privguard.disclose, acquirer",
        "exhibitor": "(d) Privguard.disclose, exhibitor",
    }
    for key, label in labels.items():
        seconds = statistics.median(times[key])
        aim = "  (aim >= 0.50)" if key == "store" else ""
        print(
            f"{label:40s} {n / seconds:10,.0f} records/s  {seconds * 1000:8.0f} ms"
            f"  = {bare / seconds:4.2f}x bare{aim}"
        )


if __name__ == "__main__":
    main()
