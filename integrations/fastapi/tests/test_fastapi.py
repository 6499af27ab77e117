"""privguard-fastapi against real FastAPI apps, over HTTP."""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import StreamingResponse
from privguard_fastapi import (
    PrivacyContextDep,
    PrivacyMiddleware,
    declare,
    privacy,
    privacy_context,
)

from privguard import (
    Categories,
    ConsentMethod,
    Evidence,
    PolicyError,
    Purposes,
    RecipientKind,
    Subject,
    UnknownPurpose,
)
from privguard._guard import Privguard
from privguard.testing import as_subject, assert_no_personal_data

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
ATTENDEE = {"name": "Jane Doe", "email": "jane.doe@example.com", "card": "4111 1111 1111 1111"}


def current_subject(scope: dict[str, Any]) -> Subject | None:
    return ALICE if scope.get("user") == "alice" else None


class FakeAuth:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["user"] = dict(scope["headers"]).get(b"authorization", b"").decode() or None
        await self.app(scope, receive, send)


def build(guard: Privguard) -> FastAPI:
    router = APIRouter(prefix="/events", tags=["events"])

    @router.get("/{event_id}/attendees")
    @privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.CARD])
    async def attendees(event_id: str, ctx: PrivacyContextDep) -> dict[str, Any]:
        return {
            "subject": ctx.subject.id if ctx.subject else None,
            "purpose": ctx.purpose,
            "attendees": [ATTENDEE],
        }

    @privacy(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL])  # above @router.get
    @router.get("/{event_id}/newsletter")
    async def newsletter(event_id: str) -> dict[str, str]:
        return {"email": ATTENDEE["email"]}

    @router.get(
        "/{event_id}/declared",
        dependencies=[Depends(declare(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL]))],
    )
    def declared(event_id: str) -> dict[str, str]:
        return {"email": ATTENDEE["email"]}

    @router.get("/{event_id}/stream")
    @privacy(Purposes.SERVICE, categories=[Categories.CARD])
    async def stream(event_id: str) -> StreamingResponse:
        async def parts() -> AsyncIterator[str]:
            for part in ("card 4111 11", "11 1111 ", "1111 done\n"):
                yield part

        return StreamingResponse(parts(), media_type="text/plain")

    inner = APIRouter()

    @inner.get("/contacts")
    @privacy(Purposes.SERVICE, categories=[Categories.EMAIL], recipient=RecipientKind.PROCESSOR)
    async def contacts() -> list[dict[str, str]]:
        return [{"email": ATTENDEE["email"]}]

    @inner.get("/campaign")
    async def campaign() -> dict[str, str]:
        return {"email": ATTENDEE["email"]}

    outer = APIRouter(prefix="/crm")
    outer.include_router(
        inner,
        prefix="/v2",
        dependencies=[Depends(declare(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL]))],
    )

    app = FastAPI()

    @app.get("/me")
    @privacy(Purposes.SERVICE, categories=[Categories.EMAIL])
    async def me(ctx: Annotated[Any, Depends(privacy_context)]) -> dict[str, str]:
        return {"subject": ctx.subject.id, "email": ATTENDEE["email"]}

    @app.get("/undeclared")
    async def undeclared() -> dict[str, str]:
        return dict(ATTENDEE)

    app.include_router(router, prefix="/api")
    app.include_router(outer)
    app.add_middleware(PrivacyMiddleware, guard=guard, subject_resolver=current_subject)
    app.add_middleware(FakeAuth)
    return app


@pytest.fixture
def guard() -> Iterator[Privguard]:
    made = Privguard()
    yield made
    made.close()


async def get(app: FastAPI, path: str, user: str | None = "alice") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": user} if user else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path, headers=headers)


async def test_decorated_route_on_a_prefixed_router_is_checked_and_redacted(
    guard: Privguard,
) -> None:
    response = await get(build(guard), "/api/events/e1/attendees")
    assert response.status_code == 200
    body = response.json()
    assert (body["subject"], body["purpose"]) == (ALICE.id, Purposes.SERVICE)
    assert body["attendees"][0]["email"] == "j***@example.com"
    assert body["attendees"][0]["card"] == "**** **** **** 1111"
    assert_no_personal_data(response)


@pytest.mark.parametrize(
    "path", ["/api/events/e1/newsletter", "/api/events/e1/declared", "/crm/v2/campaign"]
)
async def test_denied_routes_answer_403_before_fastapi_runs_anything(
    guard: Privguard, path: str
) -> None:
    response = await get(build(guard), path)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["type"] == "https://privguard.dev/problems/consent-required"
    assert (doc["purpose"], doc["reason"]) == (Purposes.MARKETING_EMAIL, "consent_missing")
    assert_no_personal_data(response)


async def test_consent_then_withdrawal(guard: Privguard) -> None:
    app = build(guard)
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    first = await get(app, "/api/events/e1/declared")
    assert first.json() == {"email": "j***@example.com"}
    guard.ledger.withdraw(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    second = await get(app, "/api/events/e1/declared")
    assert second.json()["reason"] == "consent_withdrawn"


async def test_endpoint_declaration_wins_over_include_level_dependency(guard: Privguard) -> None:
    response = await get(build(guard), "/crm/v2/contacts")
    assert response.status_code == 200
    assert response.json() == [{"email": "j***@example.com"}]


async def test_app_routes_dependency_and_anonymous(guard: Privguard) -> None:
    app = build(guard)
    me = await get(app, "/me")
    assert me.json() == {"subject": ALICE.id, "email": "j***@example.com"}
    anonymous = await get(app, "/me", user=None)
    assert anonymous.status_code == 401
    undeclared = await get(app, "/undeclared")
    assert undeclared.status_code == 200
    assert_no_personal_data(undeclared)


async def test_streams_are_redacted(guard: Privguard) -> None:
    response = await get(build(guard), "/api/events/e1/stream")
    assert response.text == "card **** **** **** 1111 done\n"


async def test_store_down_is_503(guard: Privguard) -> None:
    guard.store.unavailable = True  # type: ignore[attr-defined]
    response = await get(build(guard), "/api/events/e1/newsletter")
    assert response.status_code == 503
    assert response.json()["type"].endswith("/decision-unavailable")


async def test_as_subject_works_on_fastapi_apps(guard: Privguard) -> None:
    app = build(guard)
    with as_subject(app, ALICE, consents=[Purposes.MARKETING_EMAIL]):
        response = await get(app, "/api/events/e1/newsletter", user=None)
    assert response.json() == {"email": "j***@example.com"}


async def test_without_the_middleware_declared_routes_fail_closed() -> None:
    app = FastAPI()

    @app.get("/x", dependencies=[Depends(declare(Purposes.SERVICE))])
    async def x() -> dict[str, str]:
        return {"email": ATTENDEE["email"]}

    @app.get("/y")
    async def y(ctx: PrivacyContextDep) -> dict[str, str]:
        return {}

    for path in ("/x", "/y"):
        with pytest.raises(RuntimeError, match="PrivacyMiddleware"):
            await get(app, path)


async def test_unknown_purposes_fail_at_decoration_and_startup(guard: Privguard) -> None:
    with pytest.raises(UnknownPurpose):
        declare("no.such.purpose")
    with pytest.raises(PolicyError):
        privacy(Purposes.SERVICE, categories=["user.nope"])


def test_a_missing_fastapi_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_fastapi(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "fastapi" or name.startswith("fastapi."):
            raise ImportError("No module named 'fastapi'")
        return real_import(name, *args, **kwargs)

    saved = sys.modules.pop("privguard_fastapi")
    monkeypatch.setattr(builtins, "__import__", no_fastapi)
    try:
        with pytest.raises(ImportError, match="pip install privguard-fastapi"):
            importlib.import_module("privguard_fastapi")
    finally:
        sys.modules["privguard_fastapi"] = saved
