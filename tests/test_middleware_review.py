"""PrivacyMiddleware: defects an independent review found, each driven over HTTP.

A raising subject resolver, gzip and deflate bodies that end early or hold more than one
member, form bodies and HTML / JavaScript bodies whose personal data is escaped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from privguard import Categories, Purposes, Subject
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware
from privguard.testing import assert_no_personal_data

ALICE = Subject.customer("u-alice", tenant="acme")
EMAIL = "jane@example.com"
PAN = "4111 1111 1111 1111"
PROBLEM = "https://privguard.dev/problems/"


# -- helpers -------------------------------------------------------------------------------
def endpoint_for(
    body: bytes | list[bytes], media_type: str | None, **headers: str
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint sending ``body`` as it is (a list: streamed, one message per part)."""

    async def endpoint(request: Request) -> Response:
        if isinstance(body, list):
            parts = body

            async def gen() -> AsyncIterator[bytes]:
                for part in parts:
                    yield part

            return StreamingResponse(gen(), media_type=media_type, headers=headers or None)
        return Response(body, media_type=media_type, headers=headers or None)

    return endpoint


def app_for(
    endpoint: Callable[[Request], Awaitable[Response]],
    *,
    resolver: Any = None,
    debug: bool = False,
    **options: Any,
) -> Starlette:
    declared = privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.CARD])(endpoint)
    return Starlette(
        debug=debug,
        routes=[Route("/r", declared), Route("/undeclared", endpoint)],
        middleware=[
            Middleware(
                PrivacyMiddleware,
                guard=Privguard(),
                subject_resolver=resolver or (lambda scope: ALICE),
                **options,
            )
        ],
    )


class Recorder:
    """Records what the middleware sends to the server, under an httpx client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording(message: Message) -> None:
            self.messages.append(message)
            await send(message)

        await self.app(scope, receive, recording)

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


async def get(app: ASGIApp, path: str = "/r") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


def run(coro: Awaitable[httpx.Response]) -> httpx.Response:
    """For hypothesis tests, which are synchronous."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["type"] == PROBLEM + slug
    assert EMAIL not in response.text
    assert_no_personal_data(response)
    return doc


def luhn_complete(digits: str) -> str:
    """``digits`` plus the check digit that makes them Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


# -- 1. a subject resolver that raises -----------------------------------------------------
def raising_resolver(scope: Scope) -> Subject | None:
    raise ValueError(f"no user {EMAIL}")


async def async_raising_resolver(scope: Scope) -> Subject | None:
    await asyncio.sleep(0)
    raise LookupError(f"no user {EMAIL}")


class CallableResolver:
    async def __call__(self, scope: Scope) -> Subject | None:
        raise KeyError(EMAIL)


@pytest.mark.parametrize(
    "resolver",
    [raising_resolver, async_raising_resolver, CallableResolver()],
    ids=["sync", "async", "async-callable"],
)
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("path", ["/r", "/undeclared"])
async def test_a_raising_resolver_fails_closed_with_a_problem(
    resolver: Any, debug: bool, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    called: list[str] = []

    async def endpoint(request: Request) -> Response:
        called.append("ran")
        return JSONResponse({"email": EMAIL})

    caplog.set_level(logging.DEBUG)
    response = await get(app_for(endpoint, resolver=resolver, debug=debug), path)
    doc = assert_problem(response, 503, "decision-unavailable")
    assert doc["reason"] == "decision_unavailable"
    assert response.headers["cache-control"] == "no-store"
    assert called == []
    failures = [r for r in caplog.records if r.name == "privguard.middleware"]
    assert failures and failures[0].levelno == logging.ERROR
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info!r}" for r in caplog.records
    )
    assert EMAIL not in logged
    assert re.search(r"\b(ValueError|LookupError|KeyError)\b", logged)


async def test_a_resolver_returning_something_else_fails_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(request: Request) -> Response:
        raise AssertionError("must not run")

    response = await get(app_for(endpoint, resolver=lambda scope: EMAIL))
    assert_problem(response, 503, "decision-unavailable")
    assert "neither a Subject nor None" in caplog.text
    assert EMAIL not in caplog.text
