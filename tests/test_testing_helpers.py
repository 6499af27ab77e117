"""privguard.testing: the helpers hosts use in their own test suites."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from privguard import Categories, PolicyError, Purposes, Scope, Subject
from privguard._context import current_context
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware
from privguard.testing import TEST_EVIDENCE, as_subject, assert_no_personal_data, find_personal_data

ALICE = Subject.customer("u-alice", tenant="acme")
BOB = Subject.business_contact("c-bob", tenant="acme")


# -- assert_no_personal_data -------------------------------------------------------------------
def test_clean_data_passes_in_every_shape() -> None:
    clean = {"email": "j***@example.com", "card": "**** **** **** 1111", "label": "[user.name]"}
    for obj in (clean, [clean], '{"id": 1}', b'{"id": 1}', "hello", b"", None, 42):
        assert_no_personal_data(obj)


def test_keys_and_detectors_find_personal_data_without_showing_it() -> None:
    data = {
        "attendees": [{"id": 1, "email": "jane@example.com", "notes": "card 4111 1111 1111 1111"}],
        "phone": 4155550132,
        "cvv": None,
    }
    found = find_personal_data(data)
    assert found == [
        ("$.attendees[0].email", Categories.EMAIL),
        ("$.attendees[0].notes", Categories.CARD),
        ("$.phone", Categories.PHONE),
    ]
    with pytest.raises(AssertionError) as failure:
        assert_no_personal_data(data)
    message = str(failure.value)
    assert "$.attendees[0].email (user.contact.email)" in message
    assert "jane@example.com" not in message and "4111" not in message


def test_categories_narrow_the_search() -> None:
    data = {"email": "jane@example.com", "notes": "4111 1111 1111 1111"}
    assert find_personal_data(data, [Categories.CARD]) == [("$.notes", Categories.CARD)]
    assert_no_personal_data({"email": "jane@example.com"}, categories=[Categories.FINANCIAL])


def test_responses_text_ndjson_and_headers() -> None:
    response = httpx.Response(
        200,
        json={"contact": "write to jane@example.com"},
        headers={"x-debug-user": "jane@example.com"},
    )
    assert find_personal_data(response) == [
        ("header x-debug-user", Categories.EMAIL),
        ("$.contact", Categories.EMAIL),
    ]
    starlette_response = Response(b"<p>4111 1111 1111 1111</p>", media_type="text/html")
    assert find_personal_data(starlette_response) == [("$", Categories.CARD)]
    ndjson = b'{"email": "a***@example.com"}\n{"email": "bob@example.com"}\n'
    assert find_personal_data(ndjson) == [("$[1].email", Categories.EMAIL)]


def test_dataclasses_and_models() -> None:
    @dataclasses.dataclass
    class Attendee:
        name: str
        email: str

    assert find_personal_data(Attendee("Jane", "jane@example.com")) == [
        ("$.email", Categories.EMAIL)
    ]


# -- as_subject ------------------------------------------------------------------------------------
@privacy(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL])
async def newsletter(request: Request) -> JSONResponse:
    ctx = current_context()
    assert ctx is not None and ctx.subject is not None
    return JSONResponse({"subject": ctx.subject.id, "email": "jane@example.com"})


@privacy(
    Purposes.EXHIBITOR_DISCLOSURE,
    categories=[Categories.EMAIL],
    recipient="exhibitor",
    scope=Scope(event="e1", exhibitor="acme"),
)
async def share(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def nobody(scope: object) -> None:
    return None  # production: nobody is signed in


@pytest.fixture
def guard() -> Iterator[Privguard]:
    made = Privguard()
    yield made
    made.close()


def make_app(guard: Privguard) -> Starlette:
    return Starlette(
        routes=[
            Route("/newsletter", newsletter),
            Route("/share", share),
            Mount(
                "/sub",
                app=Starlette(
                    routes=[Route("/newsletter", newsletter)],
                    middleware=[
                        Middleware(PrivacyMiddleware, guard=guard, subject_resolver=nobody)
                    ],
                ),
            ),
        ],
        middleware=[Middleware(PrivacyMiddleware, guard=guard, subject_resolver=nobody)],
    )


async def get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


async def test_as_subject_runs_requests_as_the_subject_with_consents(guard: Privguard) -> None:
    app = make_app(guard)
    assert (await get(app, "/newsletter")).status_code == 401
    with as_subject(app, ALICE) as used:
        assert used is guard
        assert (await get(app, "/newsletter")).status_code == 403
    with as_subject(app, ALICE, consents=[Purposes.MARKETING_EMAIL]):
        response = await get(app, "/newsletter")
        mounted = await get(app, "/sub/newsletter")
    assert response.status_code == 200 and mounted.status_code == 200
    assert response.json() == {"subject": ALICE.id, "email": "j***@example.com"}
    assert (await get(app, "/newsletter")).status_code == 401  # restored afterwards
    [event] = guard.ledger.history(ALICE)
    assert event.evidence == TEST_EVIDENCE


async def test_as_subject_with_scoped_consents_and_nesting(guard: Privguard) -> None:
    app = make_app(guard)
    scope = {"event": "e1", "exhibitor": "acme"}
    with as_subject(app, BOB, consents=[(Purposes.EXHIBITOR_DISCLOSURE, scope)]):
        assert (await get(app, "/share")).status_code == 200
        with as_subject(app, None):
            assert (await get(app, "/share")).status_code == 401
        assert (await get(app, "/share")).status_code == 200


async def test_as_subject_on_a_bare_middleware(guard: Privguard) -> None:
    middleware = PrivacyMiddleware(
        Starlette(routes=[Route("/newsletter", newsletter)]), guard, subject_resolver=nobody
    )
    with as_subject(middleware, ALICE, consents=[Purposes.MARKETING_EMAIL]):
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/newsletter")).status_code == 200


def test_as_subject_needs_a_middleware_and_a_subject_for_consents(guard: Privguard) -> None:
    with pytest.raises(PolicyError, match="no PrivacyMiddleware"), as_subject(Starlette(), ALICE):
        pass
    with (
        pytest.raises(PolicyError, match="need a subject"),
        as_subject(make_app(guard), None, consents=[Purposes.MARKETING_EMAIL]),
    ):
        pass
