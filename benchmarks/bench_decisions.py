"""Cost of one decision, as ratios to baselines measured in the same run.

    .venv/bin/python benchmarks/bench_decisions.py

(a) a decision with a warm consent cache, against a plain Python function call;
(b) a decision that reads consent from SQLite (cold cache), against a bare
    ``SELECT`` by primary key on the same SQLite file.
Aims: (a) at most 20 plain calls; (b) at most 2x the bare SELECT.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _util import per_call_ns, per_item_ns

from privguard import (
    Categories,
    ConsentLedger,
    Decider,
    Evidence,
    Policy,
    Purposes,
    Scope,
    Subject,
)
from privguard._stores import SQLiteStore

SUBJECTS = 20_000


def main() -> None:
    policy = Policy.default()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite3"
        store = SQLiteStore(path)
        seed = ConsentLedger(store, policy)
        booth = Scope(event="devcon", exhibitor="globex")
        evidence = Evidence("form", actor="bench", notice_version=policy.version)
        subjects = [
            Subject.business_contact(f"att-{i}", tenant="acme", jurisdiction="US")
            for i in range(SUBJECTS)
        ]
        with store.transaction():
            for s in subjects:
                seed.grant(s, Purposes.EXHIBITOR_DISCLOSURE, evidence=evidence, scope=booth)

        cats = (Categories.EMAIL, Categories.NAME)
        purpose = Purposes.EXHIBITOR_DISCLOSURE

        # -- (a) warm cache -------------------------------------------------------------
        def plain(
            subject: object,
            purpose: object,
            categories: object,
            *,
            recipient: object,
            scope: object,
        ) -> object:
            return subject

        one = subjects[0]
        baseline_call = per_call_ns(
            lambda: plain(one, purpose, cats, recipient="exhibitor", scope=booth), number=200_000
        )
        results = {}
        for label, ttl in (("exact (change token checked)", 0.0), ("cache_ttl=1s", 1.0)):
            decider = Decider(policy, ConsentLedger(store, policy, cache_ttl=ttl))
            assert decider.check(one, purpose, cats, recipient="exhibitor", scope=booth).allowed
            results[label] = per_call_ns(
                lambda d=decider: d.check(one, purpose, cats, recipient="exhibitor", scope=booth),
                number=100_000,
            )

        # -- (b) cold cache: every check reads SQLite ---------------------------------------
        decider = Decider(policy, ConsentLedger(store, policy))

        def cold() -> None:
            check = decider.check
            for s in subjects:
                check(s, purpose, cats, recipient="exhibitor", scope=booth)
                decider.ledger._cache.clear()  # no warm entries: a lookup every time

        assert decider.check(subjects[5], purpose, cats, recipient="exhibitor", scope=booth)
        uncached = per_item_ns(cold, items=SUBJECTS, repeat=5)

        conn = sqlite3.connect(path)
        keys = [(s.controller, s.kind.value, s.id, purpose, booth.key) for s in subjects]

        def bare() -> None:
            execute = conn.execute
            for key in keys:
                execute(
                    "SELECT consent_id, granted, policy_version, at_us, seq FROM consent_state "
                    "WHERE controller=? AND subject_kind=? AND subject_id=? AND purpose=? "
                    "AND scope=?",
                    key,
                ).fetchone()

        bare_select = per_item_ns(bare, items=SUBJECTS, repeat=5)
        conn.close()
        store.close()

    print(f"plain function call          {baseline_call:8.0f} ns")
    for label, ns in results.items():
        print(
            f"cached decision, {label:28s} {ns:8.0f} ns = {ns / baseline_call:5.1f} plain calls"
            f"  (aim <= 20)"
        )
    print(f"bare SELECT by primary key   {bare_select:8.0f} ns")
    print(
        f"uncached decision (SQLite)   {uncached:8.0f} ns = {uncached / bare_select:5.2f}x "
        f"the bare SELECT  (aim <= 2)"
    )


if __name__ == "__main__":
    main()
