"""PrivacyMiddleware: decisions, the privacy context, pass-through, configuration.

Real Starlette apps over HTTP (httpx's ASGITransport, Starlette's TestClient). Response
bodies (streams, encodings, limits) are in test_middleware_bodies.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope
from starlette.websockets import WebSocket

from privguard import (
    Categories,
    ConsentMethod,
    Evidence,
    MemoryStore,
    PolicyError,
    Purposes,
    RecipientKind,
    Scope,
    StoreUnavailable,
    Subject,
    Taxonomy,
    UnknownCategory,
    UnknownPurpose,
)
from privguard._context import configure, current_context
from privguard._decorators import ROUTE_ATTRIBUTE, PathScope, RouteSpec, privacy
from privguard._guard import Privguard
from privguard._middleware import (
    Anonymous,
    PrivacyMiddleware,
    RouteMatch,
    RouteMatcher,
    Undeclared,
)
from privguard._policy import Policy
from privguard.testing import assert_no_personal_data

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
BOB = Subject.business_contact("c-bob", tenant="acme", jurisdiction="DE")
USERS = {"alice-token": ALICE, "bob-token": BOB}
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
ATTENDEE = {
    "id": "a1",
    "email": "jane.doe@example.com",
    "phone": "+1 415 555 0132",
    "card_number": "4111 1111 1111 1111",
    "notes": "call me on +44 20 7946 0958",
}
PROBLEM_BASE = "https://privguard.dev/problems/"


class FakeAuth:
    """The host's authentication: puts the user in the scope (never privguard's job)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            token = dict(scope["headers"]).get(b"authorization", b"").decode()
            scope["user"] = USERS.get(token.removeprefix("Bearer "))
        await self.app(scope, receive, send)


def user_subject(scope: ASGIScope) -> Subject | None:
    user = scope.get("user")
    return user if isinstance(user, Subject) else None


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# -- the app -------------------------------------------------------------------------------
calls: list[str] = []


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.CARD])
async def profile(request: Request) -> JSONResponse:
    calls.append("profile")
    ctx = current_context()
    assert ctx is not None
    return JSONResponse(
        {
            "subject": ctx.subject.id if ctx.subject else None,
            "purpose": ctx.purpose,
            "reason": ctx.decision.reason.value if ctx.decision else None,
            "attendee": ATTENDEE,
        }
    )


@privacy(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL])
async def newsletter(request: Request) -> JSONResponse:
    calls.append("newsletter")
    return JSONResponse({"email": ATTENDEE["email"]})


@privacy(Purposes.SALE, categories=[Categories.EMAIL])
async def sell(request: Request) -> JSONResponse:
    calls.append("sell")
    return JSONResponse({"email": ATTENDEE["email"]})


@privacy(
    Purposes.EXHIBITOR_DISCLOSURE,
    categories=[Categories.EMAIL],
    recipient=RecipientKind.EXHIBITOR,
    scope=PathScope(event="event_id", exhibitor="exhibitor"),
)
async def share(request: Request) -> JSONResponse:
    calls.append("share")
    ctx = current_context()
    assert ctx is not None
    return JSONResponse({"scope": ctx.scope.key, "email": ATTENDEE["email"]})


@privacy(
    Purposes.PAYMENT,
    categories=[Categories.CARD],
    recipient=RecipientKind.PAYMENT_PROCESSOR,
)
async def payment(request: Request) -> JSONResponse:
    return JSONResponse({"card_number": ATTENDEE["card_number"]})


async def undeclared(request: Request) -> JSONResponse:
    ctx = current_context()
    assert ctx is not None
    return JSONResponse(
        {"subject": ctx.subject.id if ctx.subject else None, "purpose": ctx.purpose, **ATTENDEE}
    )


@privacy(Purposes.SERVICE, redact=False)
async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok " + ATTENDEE["email"])


seen_in_background: list[Any] = []


def remember_context() -> None:
    seen_in_background.append(current_context())


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL])
async def with_task(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True}, background=BackgroundTask(remember_context))


@privacy(Purposes.SERVICE, categories=[Categories.EMAIL])
def sync_endpoint(request: Request) -> JSONResponse:
    ctx = current_context()
    assert ctx is not None
    return JSONResponse({"subject": ctx.subject.id if ctx.subject else None, "thread": True})


class Badges(HTTPEndpoint):
    @privacy(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL])
    async def get(self, request: Request) -> JSONResponse:
        return JSONResponse({"email": ATTENDEE["email"]})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text)
    await websocket.close()


@privacy(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL])
async def sub_newsletter(request: Request) -> JSONResponse:
    return JSONResponse({"email": ATTENDEE["email"]})


def make_app(guard: Privguard, **options: Any) -> Starlette:
    options.setdefault("subject_resolver", user_subject)
    return Starlette(
        routes=[
            Route("/profile", profile),
            Route("/newsletter", newsletter),
            Route("/sell", sell),
            Route("/events/{event_id}/exhibitors/{exhibitor}/share", share),
            Route("/payment", payment),
            Route("/undeclared", undeclared),
            Route("/health", health),
            Route("/task", with_task),
            Route("/sync", sync_endpoint),
            Route("/badges", Badges),
            WebSocketRoute("/ws", echo),
            Mount("/v1", routes=[Route("/newsletter", sub_newsletter)]),
        ],
        middleware=[
            Middleware(FakeAuth),
            Middleware(PrivacyMiddleware, guard=guard, **options),
        ],
    )


@pytest.fixture
def guard() -> Iterator[Privguard]:
    made = Privguard()
    yield made
    made.close()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    calls.clear()
    seen_in_background.clear()
    yield
    configure(None)


@contextlib.asynccontextmanager
async def client_for(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def assert_problem(
    response: httpx.Response, status: int, slug: str, *, base: str = PROBLEM_BASE
) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["content-length"]) == len(response.content)
    doc: dict[str, Any] = response.json()
    assert doc["type"] == base + slug
    assert doc["status"] == status
    assert doc["title"]
    assert doc["detail"]
    assert_no_personal_data(response)
    assert ALICE.id not in response.text and BOB.id not in response.text
    return doc


# -- decisions -----------------------------------------------------------------------------
async def test_allowed_route_runs_and_its_response_is_redacted(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/profile", headers=auth("alice-token"))
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == ALICE.id
    assert body["purpose"] == Purposes.SERVICE
    assert body["reason"] == "allowed"
    assert body["attendee"]["email"] == "j***@example.com"
    assert body["attendee"]["card_number"] == "**** **** **** 1111"
    assert body["attendee"]["notes"] == "call me on +** ** **** **58"
    assert int(response.headers["content-length"]) == len(response.content)
    assert_no_personal_data(response)


async def test_missing_consent_is_a_403_problem_and_the_endpoint_never_runs(
    guard: Privguard,
) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/newsletter", headers=auth("alice-token"))
    doc = assert_problem(response, 403, "consent-required")
    assert doc["purpose"] == Purposes.MARKETING_EMAIL
    assert doc["reason"] == "consent_missing"
    assert set(doc) == {"type", "title", "status", "detail", "purpose", "reason"}
    assert calls == []


async def test_forbidden_purpose_is_purpose_denied(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/sell", headers=auth("alice-token"))
    doc = assert_problem(response, 403, "purpose-denied")
    assert (doc["purpose"], doc["reason"]) == (Purposes.SALE, "forbidden")
    assert calls == []


async def test_consent_withdrawn_between_two_requests_denies_the_second(guard: Privguard) -> None:
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    async with client_for(make_app(guard)) as client:
        first = await client.get("/newsletter", headers=auth("alice-token"))
        assert first.status_code == 200
        assert first.json() == {"email": "j***@example.com"}
        guard.ledger.withdraw(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
        second = await client.get("/newsletter", headers=auth("alice-token"))
    doc = assert_problem(second, 403, "consent-required")
    assert doc["reason"] == "consent_withdrawn"
    assert calls == ["newsletter"]


async def test_consent_scope_comes_from_path_parameters(guard: Privguard) -> None:
    guard.ledger.grant(
        BOB,
        Purposes.EXHIBITOR_DISCLOSURE,
        evidence=EVIDENCE,
        scope=Scope(event="e1", exhibitor="acme"),
    )
    async with client_for(make_app(guard)) as client:
        allowed = await client.get("/events/e1/exhibitors/acme/share", headers=auth("bob-token"))
        other_event = await client.get(
            "/events/e2/exhibitors/acme/share", headers=auth("bob-token")
        )
        again = await client.get("/events/e1/exhibitors/acme/share", headers=auth("bob-token"))
    assert allowed.status_code == 200
    assert allowed.json()["scope"] == "event=e1;exhibitor=acme"
    # The exhibitor audience still gets contact data masked by the default operators.
    assert allowed.json()["email"] == "j***@example.com"
    assert_problem(other_event, 403, "consent-required")
    assert again.status_code == 200


async def test_the_recipient_is_the_audience_of_the_redaction(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/payment", headers=auth("alice-token"))
    assert response.status_code == 200
    assert response.json() == {"card_number": "4111 1111 1111 1111"}


async def test_store_down_is_a_503_and_nothing_leaks(
    guard: Privguard, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(guard.store, MemoryStore)
    guard.store.unavailable = True
    with caplog.at_level(logging.ERROR, logger="privguard.middleware"):
        async with client_for(make_app(guard)) as client:
            response = await client.get("/newsletter", headers=auth("alice-token"))
    doc = assert_problem(response, 503, "decision-unavailable")
    assert doc["purpose"] == Purposes.MARKETING_EMAIL
    assert "example.com" not in response.text
    assert calls == []
    assert "failing closed" in caplog.text


async def test_a_corrupted_sqlite_store_fails_closed(tmp_path: Path) -> None:
    guard = Privguard.sqlite(tmp_path / "privguard.db")
    try:
        guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
        async with client_for(make_app(guard)) as client:
            assert (await client.get("/newsletter", headers=auth("alice-token"))).status_code == 200
            for name in os.listdir(tmp_path):
                with open(tmp_path / name, "r+b") as f:
                    f.write(b"not a database" * 1024)
            response = await client.get("/newsletter", headers=auth("alice-token"))
        assert_problem(response, 503, "decision-unavailable")
        assert calls == ["newsletter"]
    finally:
        guard.close()


async def test_a_check_that_raises_anything_fails_closed(guard: Privguard) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    guard.acheck = broken  # type: ignore[method-assign]
    async with client_for(make_app(guard)) as client:
        response = await client.get("/profile", headers=auth("alice-token"))
    assert_problem(response, 503, "decision-unavailable")
    assert calls == []


async def test_a_scope_factory_that_raises_fails_closed(guard: Privguard) -> None:
    spec = RouteSpec(
        Purposes.EXHIBITOR_DISCLOSURE,
        categories=(Categories.EMAIL,),
        scope=PathScope(event="no_such_param"),
    )
    app = make_app(guard, routes={("GET", "/events/{event_id}/exhibitors/{exhibitor}/share"): spec})
    async with client_for(app) as client:
        response = await client.get("/events/e1/exhibitors/acme/share", headers=auth("bob-token"))
    assert_problem(response, 503, "decision-unavailable")


# -- subjects ------------------------------------------------------------------------------
async def test_anonymous_on_a_personal_route_is_401(guard: Privguard) -> None:
    async with client_for(make_app(guard, www_authenticate="Bearer")) as client:
        response = await client.get("/profile")
    doc = assert_problem(response, 401, "subject-required")
    assert doc["reason"] == "subject_required"
    assert response.headers["www-authenticate"] == "Bearer"
    assert calls == []


async def test_anonymous_allowed_runs_without_a_check_and_redacts(guard: Privguard) -> None:
    async with client_for(make_app(guard, anonymous=Anonymous.ALLOW)) as client:
        response = await client.get("/profile")
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] is None and body["reason"] is None
    assert_no_personal_data(response)


async def test_a_client_header_never_sets_the_subject(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get(
            "/profile", headers={"x-privguard-subject": "u-alice", "x-subject": "u-alice"}
        )
    assert response.status_code == 401


async def test_an_async_resolver_works(guard: Privguard) -> None:
    async def resolver(scope: ASGIScope) -> Subject | None:
        await asyncio.sleep(0)
        return user_subject(scope)

    async with client_for(make_app(guard, subject_resolver=resolver)) as client:
        response = await client.get("/profile", headers=auth("alice-token"))
    assert response.json()["subject"] == ALICE.id


async def test_a_resolver_returning_something_else_fails_closed(
    guard: Privguard, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(guard, subject_resolver=lambda scope: "u-alice")
    async with client_for(app) as client:
        response = await client.get("/profile")
    assert_problem(response, 503, "decision-unavailable")
    assert "neither a Subject nor None" in caplog.text
    assert calls == []


# -- undeclared routes ---------------------------------------------------------------------
async def test_undeclared_routes_are_redacted_by_default(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/undeclared", headers=auth("alice-token"))
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == ALICE.id and body["purpose"] is None
    assert_no_personal_data(response)


async def test_undeclared_routes_can_be_refused(guard: Privguard) -> None:
    async with client_for(make_app(guard, undeclared=Undeclared.REFUSE)) as client:
        response = await client.get("/undeclared", headers=auth("alice-token"))
        declared = await client.get("/profile", headers=auth("alice-token"))
    assert_problem(response, 403, "undeclared-route")
    assert declared.status_code == 200


async def test_undeclared_routes_can_skip_privguard_explicitly(guard: Privguard) -> None:
    async with client_for(make_app(guard, undeclared="skip")) as client:
        response = await client.get("/undeclared", headers=auth("alice-token"))
    assert response.json()["email"] == ATTENDEE["email"]


async def test_a_route_declared_without_personal_data_passes_through(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/health", headers=auth("alice-token"))
    assert response.text == "ok " + ATTENDEE["email"]  # the host vouched: redact=False


async def test_not_found_and_wrong_method_reach_the_router(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        missing = await client.get("/nowhere", headers=auth("alice-token"))
        wrong = await client.post("/profile", headers=auth("alice-token"))
    assert missing.status_code == 404
    assert wrong.status_code == 405


# -- where declarations come from ----------------------------------------------------------
async def test_route_table_declares_routes(guard: Privguard) -> None:
    routes = {("GET", "/undeclared"): RouteSpec(Purposes.MARKETING_EMAIL, (Categories.EMAIL,))}
    async with client_for(make_app(guard, routes=routes)) as client:
        response = await client.get("/undeclared", headers=auth("alice-token"))
        post = await client.post("/undeclared", headers=auth("alice-token"))
    assert_problem(response, 403, "consent-required")
    assert post.status_code == 405  # the table names GET only


async def test_route_table_wins_over_the_decorator(guard: Privguard) -> None:
    routes = {("*", "/newsletter"): RouteSpec(Purposes.SERVICE, (Categories.EMAIL,))}
    async with client_for(make_app(guard, routes=routes)) as client:
        response = await client.get("/newsletter", headers=auth("alice-token"))
    assert response.status_code == 200


async def test_mounted_routes_and_endpoint_classes_are_found(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        mounted = await client.get("/v1/newsletter", headers=auth("alice-token"))
        badges = await client.get("/badges", headers=auth("alice-token"))
    assert_problem(mounted, 403, "consent-required")
    assert_problem(badges, 403, "consent-required")


async def test_host_routes_are_matched_per_request(guard: Privguard) -> None:
    app = Starlette(
        routes=[
            Host("admin.example.com", app=Router(routes=[Route("/x", newsletter)])),
            Host("{sub}.example.com", app=Router(routes=[Route("/x", undeclared)])),
        ],
        middleware=[
            Middleware(FakeAuth),
            Middleware(PrivacyMiddleware, guard=guard, subject_resolver=user_subject),
        ],
    )
    async with client_for(app) as client:
        admin = await client.get("http://admin.example.com/x", headers=auth("alice-token"))
        www = await client.get("http://www.example.com/x", headers=auth("alice-token"))
        admin_again = await client.get("http://admin.example.com/x", headers=auth("alice-token"))
    assert admin.status_code == 403 and admin_again.status_code == 403
    assert www.status_code == 200


async def test_a_raw_asgi_app_uses_the_route_table(guard: Privguard) -> None:
    async def raw(scope: ASGIScope, receive: Receive, send: Send) -> None:
        await JSONResponse({"email": ATTENDEE["email"]})(scope, receive, send)

    routes = {("GET", "/a/{id:int}"): RouteSpec(Purposes.MARKETING_EMAIL, (Categories.EMAIL,))}
    app = FakeAuth(PrivacyMiddleware(raw, guard, subject_resolver=user_subject, routes=routes))
    async with client_for(app) as client:
        denied = await client.get("/a/1", headers=auth("alice-token"))
        other = await client.get("/a/x", headers=auth("alice-token"))
    assert_problem(denied, 403, "consent-required")
    assert other.json() == {"email": "j***@example.com"}


# -- configuration errors ------------------------------------------------------------------
def test_unknown_purpose_in_route_table_fails_at_construction(guard: Privguard) -> None:
    with pytest.raises(UnknownPurpose):
        PrivacyMiddleware(
            make_app(guard),
            guard,
            subject_resolver=user_subject,
            routes={("GET", "/x"): RouteSpec("no.such.purpose")},
        )
    with pytest.raises(UnknownCategory):
        PrivacyMiddleware(
            make_app(guard),
            guard,
            subject_resolver=user_subject,
            routes={("GET", "/x"): RouteSpec(Purposes.SERVICE, ("user.nope",))},
        )


def test_unknown_purpose_on_a_decorator_fails_at_decoration() -> None:
    with pytest.raises(UnknownPurpose):
        privacy("no.such.purpose")
    with pytest.raises(UnknownCategory):
        privacy(Purposes.SERVICE, categories=["user.nope"])
    with pytest.raises(PolicyError):
        privacy(categories=[Categories.EMAIL])  # categories without a purpose


@pytest.mark.parametrize(
    "options",
    [
        {"problem_base": "privguard.dev/problems"},
        {"undeclared": "maybe"},
        {"anonymous": "sometimes"},
        {"max_body_size": 0},
        {"safe_media_types": ["pdf"]},
        {"subject_resolver": "user"},
    ],
)
def test_bad_options_fail_at_construction(guard: Privguard, options: dict[str, Any]) -> None:
    options.setdefault("subject_resolver", user_subject)
    with pytest.raises(PolicyError):
        PrivacyMiddleware(make_app(guard), guard, **options)


def _extended_guard() -> Privguard:
    taxonomy = Taxonomy.default().extend(purposes={"event_networking": "Networking"})
    return Privguard(policy=Policy([], version="t1", taxonomy=taxonomy))


async def run_lifespan(app: ASGIApp) -> list[str]:
    """Drive the lifespan protocol as a server does; return what the app sent."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await app(scope, receive, send)
    return sent


async def test_declarations_are_validated_at_lifespan_startup(guard: Privguard) -> None:
    extended = _extended_guard()

    @privacy("event_networking", guard=extended)  # valid for the host's own taxonomy ...
    async def networking(request: Request) -> Response:
        return Response()

    app = Starlette(
        routes=[Route("/n", networking)],
        middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=user_subject)],
    )
    sent: list[str] = []
    with pytest.raises(UnknownPurpose):  # ... not for the middleware's
        sent = await run_lifespan(app)
    assert "lifespan.startup.complete" not in sent


async def test_declarations_are_validated_on_the_first_request_without_lifespan(
    guard: Privguard,
) -> None:
    extended = _extended_guard()

    @privacy("event_networking", guard=extended)
    async def networking(request: Request) -> Response:
        return Response()

    app = Starlette(
        routes=[Route("/n", networking)],
        middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=user_subject)],
    )
    async with client_for(app) as client:
        with pytest.raises(UnknownPurpose):
            await client.get("/n")


async def test_configure_sets_the_taxonomy_decorators_validate_against() -> None:
    extended = _extended_guard()
    with pytest.raises(UnknownPurpose):
        privacy("event_networking")
    configure(extended)
    assert privacy("event_networking") is not None


async def test_problem_base_is_configurable(guard: Privguard) -> None:
    base = "https://events.example.com/problems/"
    async with client_for(make_app(guard, problem_base=base)) as client:
        response = await client.get("/newsletter", headers=auth("alice-token"))
    assert_problem(response, 403, "consent-required", base=base)


# -- contextvars, lifespan, websockets -----------------------------------------------------
async def test_background_tasks_see_the_privacy_context(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/task", headers=auth("alice-token"))
    assert response.status_code == 200
    [ctx] = seen_in_background
    assert ctx.subject == ALICE and ctx.purpose == Purposes.SERVICE
    assert ctx.decision.allowed
    assert current_context() is None  # reset after the request


async def test_sync_endpoints_in_the_threadpool_see_the_context(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        response = await client.get("/sync", headers=auth("alice-token"))
    assert response.json() == {"subject": ALICE.id, "thread": True}


async def test_concurrent_requests_keep_their_own_context(guard: Privguard) -> None:
    async with client_for(make_app(guard)) as client:
        responses = await asyncio.gather(
            *(
                client.get("/undeclared", headers=auth(token))
                for token in ["alice-token", "bob-token"] * 10
            )
        )
    subjects = [r.json()["subject"] for r in responses]
    assert subjects == [ALICE.id, BOB.id] * 10


async def test_lifespan_events_reach_the_app(guard: Privguard) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"shared": "state"}
        events.append("shutdown")

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"shared": request.state.shared})

    app = Starlette(
        routes=[Route("/state", state)],
        lifespan=lifespan,
        middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=user_subject)],
    )
    sent = await run_lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["startup", "shutdown"]


async def test_websockets_pass_through(guard: Privguard) -> None:
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in (
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "jane.doe@example.com"},
    ):
        incoming.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "subprotocols": [],
        "state": {},
    }
    await make_app(guard)(scope, incoming.get, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "jane.doe@example.com"  # websockets are not privguard's


async def test_store_errors_during_check_are_not_raised_to_the_client(guard: Privguard) -> None:
    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("memory store is unavailable")

    guard.ledger.astates = unavailable  # type: ignore[method-assign]
    async with client_for(make_app(guard)) as client:
        response = await client.get("/newsletter", headers=auth("alice-token"))
    assert response.status_code == 503
    assert json.loads(response.content)["reason"] == "decision_unavailable"


@privacy(Purposes.EXHIBITOR_DISCLOSURE, categories=[Categories.EMAIL])
async def unscoped_share(request: Request) -> JSONResponse:
    return JSONResponse({"email": ATTENDEE["email"]})


async def test_a_routes_remembered_decisions_are_per_subject_kind(guard: Privguard) -> None:
    # The middleware remembers, per route, decisions that need no consent lookup, by
    # subject kind and jurisdiction. Here the same route is refused a business contact
    # by the policy alone (no scope) and needs a consent lookup for a customer: the
    # answers must never cross.
    app = FakeAuth(
        Starlette(
            routes=[Route("/share", unscoped_share)],
            middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=user_subject)],
        )
    )
    async with client_for(app) as client:
        answers = [
            (await client.get("/share", headers=auth(token))).json()["reason"]
            for token in ["bob-token", "alice-token", "bob-token", "alice-token"]
        ]
    assert answers == ["scope_required", "consent_missing"] * 2


async def test_a_remembered_decision_never_carries_over_the_subject(guard: Privguard) -> None:
    carol = Subject.customer("u-carol", tenant="acme", jurisdiction="DE")
    people = {"alice-token": ALICE, "carol-token": carol}

    def resolver(scope: ASGIScope) -> Subject | None:
        token = dict(scope["headers"]).get(b"authorization", b"").decode()
        return people.get(token.removeprefix("Bearer "))

    async with client_for(make_app(guard, subject_resolver=resolver)) as client:
        bodies = [
            (await client.get("/profile", headers=auth(token))).json()
            for token in ["alice-token", "alice-token", "carol-token", "alice-token"]
        ]
    assert [b["subject"] for b in bodies] == ["u-alice", "u-alice", "u-carol", "u-alice"]
    assert {(b["purpose"], b["reason"]) for b in bodies} == {(Purposes.SERVICE, "allowed")}
    assert all(b["attendee"]["email"] == "j***@example.com" for b in bodies)


async def test_remembered_decisions_are_never_shared_between_middlewares() -> None:
    # A host's matcher may hand the very same RouteMatch to every middleware that asks.
    # Two apps with different policies behind one such matcher: what one middleware
    # decided for this route must never answer for the other.
    shared = RouteMatch(getattr(profile, ROUTE_ATTRIBUTE), {}, "/profile")

    class SharedMatcher(RouteMatcher):
        def match(self, routes: Any, scope: ASGIScope) -> RouteMatch | None:
            return shared

    def app_with(guard: Privguard) -> ASGIApp:
        return FakeAuth(
            Starlette(
                routes=[Route("/profile", profile)],
                middleware=[
                    Middleware(
                        PrivacyMiddleware,
                        guard=guard,
                        subject_resolver=user_subject,
                        route_matcher=SharedMatcher(),
                    )
                ],
            )
        )

    permissive, empty = Privguard(), Privguard(policy=Policy([], version="t1"))
    statuses = []
    for guard in (permissive, empty, permissive, empty):
        async with client_for(app_with(guard)) as client:
            for _ in range(2):
                statuses.append(
                    (await client.get("/profile", headers=auth("alice-token"))).status_code
                )
    assert statuses == [200, 200, 403, 403] * 2
    assert shared.decided == {}  # the matcher's object is never written to
