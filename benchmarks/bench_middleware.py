"""Requests per second through PrivacyMiddleware, against the same app without it.

Run: .venv/bin/python benchmarks/bench_middleware.py [--rounds N] [--requests N]

The Starlette app is called directly over ASGI with a minimal ``receive``/``send`` (no
HTTP client, no server), so what is measured is the middleware, not httpx. Rounds with
and without the middleware are interleaved so machine load moves both; each variant runs
between two runs of the bare app and is compared with their mean; the median of the
per-round ratios is reported, with the median requests per second.

Routes:

(a)  ``/ping``: a small JSON body with no personal data, declared so
     (``@privacy(Purposes.SERVICE, redact=False)``): decided, never read.
(a') ``/ping-undeclared``: the same body on an undeclared route: the safe default
     (parsed and redacted like any JSON), shown for the trade-off.
(b)  ``/attendees``: a 10 KB JSON list of 50 attendees (e-mail, phone, card number),
     declared with categories: parsed, redacted, re-serialised.
(b') ``/api/attendees``: the same attendees as a typical JSON API sends them, with a
     UUID id, two timestamps and an entity tag each (18 KB), for what real documents cost.

For scale, two reference middlewares run in the same rounds: a do-nothing pure ASGI
middleware, and a naive one that buffers every JSON body, parses it with orjson, walks
it masking values by key name (no free-text detection, no decision) and serialises it
again: the "parse, walk, re-serialise" yardstick the aims were set against.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import starlette
from bench_redaction import naive_walk
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


# The same attendees as a typical JSON API sends them: UUID ids, timestamps, an entity tag.
API_ATTENDEES = [
    {
        **attendee,
        "id": str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)),
        "created_at": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T09:{i % 60:02d}:00Z",
        "updated_at": f"2026-11-26T10:{i % 60:02d}:{(7 * i) % 60:02d}.{i:03d}+01:00",
        "etag": f"{random.Random(-i).getrandbits(160):040x}",
    }
    for i, attendee in enumerate(ATTENDEES)
]


@privacy(Purposes.SERVICE, redact=False)
async def ping(request: Request) -> JSONResponse:
    return JSONResponse(PING)


async def ping_undeclared(request: Request) -> JSONResponse:
    return JSONResponse(PING)


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.PHONE, Categories.CARD])
async def attendees(request: Request) -> JSONResponse:
    return JSONResponse(ATTENDEES)


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.PHONE, Categories.CARD])
async def api_attendees(request: Request) -> JSONResponse:
    return JSONResponse(API_ATTENDEES)


ROUTES = [
    Route("/ping", ping),
    Route("/ping-undeclared", ping_undeclared),
    Route("/attendees", attendees),
    Route("/api/attendees", api_attendees),
]


class DoNothing:
    """A pure ASGI middleware that does nothing: the cost of one more layer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class NaiveRedact:
    """Buffers every JSON body, orjson-parses it, masks values by key name, re-serialises."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def buffered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            if (b"content-type", b"application/json") in start["headers"]:
                body = orjson.dumps(naive_walk(orjson.loads(body)))
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)


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


def reference_apps() -> dict[str, Starlette]:
    return {
        "do-nothing": Starlette(routes=ROUTES, middleware=[Middleware(DoNothing)]),
        "naive": Starlette(routes=ROUTES, middleware=[Middleware(NaiveRedact)]),
    }


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

    async def keep(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    async def drop(message: dict[str, Any]) -> None:
        return None

    template = scope_for(path)
    await app(dict(template), receive, keep)  # warm caches, check the output
    check(b"".join(body))
    gc.collect()  # garbage left by the previous run is not charged to this one
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(template), receive, drop)
    return requests / (time.perf_counter() - started)


def no_check(body: bytes) -> None:
    return None


def redacted(body: bytes) -> None:
    data = json.loads(body)
    if data[0]["email"] == ATTENDEES[0]["email"] or "4111 1111 1111 1111" in body.decode():
        raise SystemExit("the guarded /attendees response was not redacted")


async def measure(rounds: int, requests: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Per case and variant: (median requests per second, median ratio to the bare app)."""
    plain, guarded, guard = make_apps()
    variants = {**reference_apps(), "privguard": guarded}
    cases = {
        "(a)  no personal data, declared redact=False": ("/ping", no_check),
        "(a') same body, undeclared (safe default)": ("/ping-undeclared", no_check),
        "(b)  10 KB JSON, 50 attendees, redacted": ("/attendees", redacted),
        "(b') the same with UUIDs and timestamps": ("/api/attendees", redacted),
    }
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for label, (path, check) in cases.items():
        rps: dict[str, list[float]] = {name: [] for name in ["bare", *variants]}
        ratios: dict[str, list[float]] = {name: [] for name in variants}
        n = requests if "attendees" not in path else max(requests // 4, 100)
        for _ in range(rounds):
            for name, app in variants.items():
                # Each variant between two runs of the bare app: load that drifts during
                # the round moves both sides of its ratio.
                before = await run(plain, path, n, no_check)
                mine = await run(app, path, n, check if name == "privguard" else no_check)
                after = await run(plain, path, n, no_check)
                rps["bare"].extend((before, after))
                rps[name].append(mine)
                ratios[name].append(mine / ((before + after) / 2))
        results[label] = {"bare": (statistics.median(rps["bare"]), 1.0)} | {
            name: (statistics.median(rps[name]), statistics.median(ratios[name]))
            for name in variants
        }
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
    print("requests per second (ratio to the bare app, median of per-round ratios)")
    names = ["bare", "do-nothing", "naive", "privguard"]
    print(f"{'route':46}" + "".join(f"{name:>18}" for name in names))
    for label, row in results.items():
        cells = "".join(
            f"{row[name][0]:>9.0f}/s {row[name][1]:>5.2f}x"
            if name != "bare"
            else f"{row[name][0]:>16.0f}/s"
            for name in names
        )
        print(f"{label:46}{cells}")
    print("aims: (a) >= 0.9x, (b) >= 0.5x the bare app")


if __name__ == "__main__":
    main()
