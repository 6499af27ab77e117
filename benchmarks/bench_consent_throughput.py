"""Consent decisions per second, SQLite against PostgreSQL, one and several processes.

    .venv/bin/python benchmarks/bench_consent_throughput.py [--seconds 5] [--workers 4]

Each worker process builds what an app process builds (a store, a ConsentLedger and a
Decider) and checks an exhibitor disclosure (a consent purpose, so every decision needs the
subject's consent state) as fast as it can for ``--seconds``. The subjects are a mix:
``--hit-ratio`` of the checks go to 200 "hot" subjects (cache hits after the first read,
validated by the store's change token) and the rest to subjects never checked before in
the run (cache misses: one read of the store each). Both stores hold the same
``--subjects`` granted subjects; the PostgreSQL server is ``PRIVGUARD_BENCH_PG_DSN``
(default: the test server), in a schema of the run's own, dropped afterwards.

Printed: decisions per second (all workers together), p50 and p99 latency of one decision,
for SQLite, PostgreSQL, and PostgreSQL with prepared statements (``prepare=True``), with 1
process (the baseline) and with ``--workers``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from privguard import (
    Categories,
    ConsentEvent,
    ConsentLedger,
    Decider,
    Evidence,
    Policy,
    PostgresStore,
    Purposes,
    Scope,
    SQLiteStore,
    Store,
    Subject,
)
from privguard._records import ConsentAction

DSN = os.environ.get(
    "PRIVGUARD_BENCH_PG_DSN",
    os.environ.get("PRIVGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
)
HOT = 200
BOOTH = Scope(event="devcon", exhibitor="globex")
PURPOSE = Purposes.EXHIBITOR_DISCLOSURE
CATEGORIES = (Categories.EMAIL, Categories.NAME)


def subject(i: int) -> Subject:
    return Subject.business_contact(f"att-{i}", tenant="acme", jurisdiction="US")


def seed(store: Store, count: int, policy: Policy) -> None:
    evidence = Evidence("import", actor="bench", notice_version=policy.version)
    at = datetime.now(UTC)
    batch = []
    for i in range(count):
        controller, kind, sid = subject(i).key
        batch.append(
            ConsentEvent(
                event_id=str(uuid.uuid4()),
                consent_id=str(uuid.uuid4()),
                controller=controller,
                subject_kind=kind,
                subject_id=sid,
                purpose=PURPOSE,
                scope=BOOTH,
                action=ConsentAction.GRANT,
                policy_version=policy.version,
                at=at,
                evidence=evidence,
            )
        )
        if len(batch) == 20_000:
            store.append_consent_events(batch)
            batch = []
    store.append_consent_events(batch)


def open_store(kind: str, where: str) -> Store:
    if kind == "sqlite":
        return SQLiteStore(where, create=False)
    # Prepared statements save the server a parse and plan per read; only on a direct
    # connection or a pooler that supports them (see docs/postgresql.md).
    return PostgresStore(DSN, schema=where, max_size=2, prepare=kind.endswith("prepared"))


def worker(
    queue: Any,
    kind: str,
    where: str,
    index: int,
    cold: range,
    seconds: float,
    hit_ratio: float,
    line: Any,
) -> None:
    try:
        policy = Policy.default()
        store = open_store(kind, where)
        decider = Decider(policy, ConsentLedger(store, policy))
        check = decider.check
        hot = [subject(i) for i in range(HOT)]
        cold_subjects = iter([subject(i) for i in cold])
        for s in hot:  # warm the cache, as a running app has
            check(s, PURPOSE, CATEGORIES, recipient="exhibitor", scope=BOOTH)
        # A fixed pattern of hits and misses, the misses spread evenly over each 100.
        misses = round(100 * (1 - hit_ratio))
        pattern = [i * misses // 100 != (i + 1) * misses // 100 for i in range(100)]
        latencies = array("q")
        allowed = 0
        line.wait()
        clock = time.perf_counter_ns
        stop = clock() + int(seconds * 1e9)
        n = 0
        while True:
            miss = pattern[n % 100]
            s = next(cold_subjects) if miss else hot[n % HOT]
            started = clock()
            decision = check(s, PURPOSE, CATEGORIES, recipient="exhibitor", scope=BOOTH)
            ended = clock()
            latencies.append(ended - started)
            allowed += decision.allowed
            n += 1
            if ended >= stop:
                break
        store.close()
        queue.put((index, n, allowed, latencies.tobytes()))
    except BaseException as exc:
        queue.put((index, -1, 0, repr(exc).encode()))


def run(
    kind: str, where: str, workers: int, seconds: float, hit_ratio: float, subjects: int
) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    line = ctx.Barrier(workers)
    share = (subjects - HOT) // workers
    procs = [
        ctx.Process(
            target=worker,
            args=(
                queue,
                kind,
                where,
                i,
                range(HOT + i * share, HOT + (i + 1) * share),
                seconds,
                hit_ratio,
                line,
            ),
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = array("q")
    total = allowed = 0
    for _, n, ok, raw in results:
        if n < 0:
            raise RuntimeError(f"a {kind} worker failed: {raw.decode()}")
        total += n
        allowed += ok
        latencies.frombytes(raw)
    assert allowed == total, "every seeded subject has consent: every decision allows"
    ordered = sorted(latencies)
    return {
        "rate": total / seconds,
        "p50": ordered[len(ordered) // 2] / 1000,
        "p99": ordered[int(len(ordered) * 0.99)] / 1000,
        "mean": statistics.fmean(ordered) / 1000,
        "checks": total,
    }


def postgres_problem() -> str | None:
    """Why the PostgreSQL rows cannot run, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'privguard[postgresql]')"
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no server at PRIVGUARD_BENCH_PG_DSN ({type(exc).__name__})"
    return None


def drop(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--hit-ratio", type=float, default=0.8)
    parser.add_argument("--subjects", type=int, default=200_000)
    args = parser.parse_args()

    problem = postgres_problem()
    if problem:
        print(f"PostgreSQL rows skipped: {problem}")
    stores = [("sqlite", "")]
    if not problem:
        stores += [("postgresql", ""), ("postgresql, prepared", "")]

    policy = Policy.default()
    schema = f"bench_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite3")
        where = {"sqlite": path, "postgresql": schema, "postgresql, prepared": schema}
        with SQLiteStore(path) as store:
            seed(store, args.subjects, policy)
        if not problem:
            with PostgresStore(DSN, schema=schema, migrate=True) as store:
                seed(store, args.subjects, policy)
        try:
            rows = []
            for workers in (1, args.workers):
                for kind, _ in stores:
                    result = run(
                        kind, where[kind], workers, args.seconds, args.hit_ratio, args.subjects
                    )
                    rows.append((kind, workers, result))
        finally:
            if not problem:
                drop(schema)

    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    print(
        f"consent decisions, {args.hit_ratio:.0%} cache hits / {1 - args.hit_ratio:.0%} misses,"
        f" {args.seconds:g} s per row, {args.subjects} subjects, {cpus} CPUs shared with the"
        f" PostgreSQL server (load average {load:.1f} at the end)"
    )
    print(f"{'store':<21} {'processes':>9} {'decisions/s':>12} {'p50 µs':>8} {'p99 µs':>8}")
    for kind, workers, r in rows:
        print(f"{kind:<21} {workers:>9} {r['rate']:>12,.0f} {r['p50']:>8.1f} {r['p99']:>8.1f}")


if __name__ == "__main__":
    main()
