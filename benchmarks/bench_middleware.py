"""Requests per second through PrivacyMiddleware, against the same app without it.

Run: .venv/bin/python benchmarks/bench_middleware.py [--rounds N] [--requests N]

The Starlette app is called directly over ASGI with a minimal ``receive``/``send`` (no
HTTP client, no server), so what is measured is the middleware, not httpx. Rounds with
and without the middleware are interleaved so machine load moves both; the median of
the per-round ratios is reported, with the median requests per second.

Routes:

(a)  ``/ping``: a small JSON body with no personal data, declared so
     (``@privacy(Purposes.SERVICE, redact=False)``): decided, never read.
(a') ``/ping-undeclared``: the same body on an undeclared route: the safe default
     (parsed and redacted like any JSON), shown for the trade-off.
(b)  ``/attendees``: a 10 KB JSON list of 50 attendees (e-mail, phone, card number),
     declared with categories: parsed, redacted, re-serialised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import starlette
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from privguard import Categories, Purposes, Subject
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
PING = {"status": "ok", "version": "1.4.2", "uptime": 12345}
ATTENDEES = [
    {
        "id": f"att-{i:03d}",
        "name": f"Attendee {i}",
        "email": f"attendee{i}@example.com",
        "phone": f"+1 415 555 {i:04d}",
        "card_number": "4111 1111 1111 1111",
        "company": "ACME Corporation",
        "checked_in": i % 2 == 0,
    }
    for i in range(50)
]


@privacy(Purposes.SERVICE, redact=False)
async def ping(request: Request) -> JSONResponse:
    return JSONResponse(PING)


async def ping_undeclared(request: Request) -> JSONResponse:
    return JSONResponse(PING)


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.PHONE, Categories.CARD])
async def attendees(request: Request) -> JSONResponse:
    return JSONResponse(ATTENDEES)


ROUTES = [
    Route("/ping", ping),
    Route("/ping-undeclared", ping_undeclared),
    Route("/attendees", attendees),
]


def make_apps() -> tuple[Starlette, Starlette, Privguard]:
    guard = Privguard()
    plain = Starlette(routes=ROUTES)
    guarded = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(PrivacyMiddleware, guard=guard, subject_resolver=lambda s: s["user"])
        ],
    )
    return plain, guarded, guard


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
        "extensions": {},
        "state": {},
        "user": ALICE,  # what the host's authentication would have put there
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def run(app: Starlette, path: str, requests: int, check: Callable[[bytes], None]) -> float:
    body: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    template = scope_for(path)
    await app(dict(template), receive, send)  # warm caches, check the output
    check(b"".join(body))
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(template), receive, send)
    return requests / (time.perf_counter() - started)


def no_check(body: bytes) -> None:
    return None


def redacted(body: bytes) -> None:
    data = json.loads(body)
    if data[0]["email"] == ATTENDEES[0]["email"] or "4111 1111 1111 1111" in body.decode():
        raise SystemExit("the guarded /attendees response was not redacted")


async def measure(rounds: int, requests: int) -> dict[str, tuple[float, float, float]]:
    plain, guarded, guard = make_apps()
    cases = {
        "(a)  no personal data, declared redact=False": ("/ping", no_check),
        "(a') same body, undeclared (safe default)": ("/ping-undeclared", no_check),
        "(b)  10 KB JSON, 50 attendees, redacted": ("/attendees", redacted),
    }
    results: dict[str, tuple[float, float, float]] = {}
    for label, (path, check) in cases.items():
        ratios, base_rps, guard_rps = [], [], []
        n = requests if path != "/attendees" else max(requests // 4, 100)
        for _ in range(rounds):
            base = await run(plain, path, n, no_check)
            mine = await run(guarded, path, n, check)
            base_rps.append(base)
            guard_rps.append(mine)
            ratios.append(mine / base)
        results[label] = (
            statistics.median(base_rps),
            statistics.median(guard_rps),
            statistics.median(ratios),
        )
    guard.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    size = len(json.dumps(ATTENDEES, separators=(",", ":")))
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), "
        f"starlette {starlette.__version__}, {platform.machine()}; "
        f"{args.rounds} rounds; /attendees body {size} bytes"
    )
    results = asyncio.run(measure(args.rounds, args.requests))
    print(f"{'route':48} {'without':>12} {'with':>12} {'ratio':>7}")
    for label, (base, mine, ratio) in results.items():
        print(f"{label:48} {base:>10.0f}/s {mine:>10.0f}/s {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
