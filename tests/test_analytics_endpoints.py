"""The opt-out endpoints a host mounts: opt out (no account needed), opt back in
(protected against cross-site requests), status, and /.well-known/gpc.json (C22)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from privguard import (
    AnalyticsConfig,
    ConsentAction,
    ConsentMethod,
    PrivacyMiddleware,
    Privguard,
    Purposes,
    Subject,
    Undeclared,
    analytics_app,
    gpc_endpoint,
)

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
SITE = "https://shop.example"
CSRF_COOKIE = "__Host-privguard_csrf"


def signed_in(scope: Any) -> Subject | None:
    token = dict(scope["headers"]).get(b"authorization", b"")
    return ALICE if token == b"Bearer alice" else None


def make_app(guard: Privguard, **config: Any) -> Starlette:
    config.setdefault("subject_resolver", signed_in)
    cfg = AnalyticsConfig(**config)
    return Starlette(
        routes=[
            Route("/.well-known/gpc.json", gpc_endpoint(cfg)),
            Mount("/privacy/analytics", app=analytics_app(guard, cfg)),
        ],
        middleware=[
            # Every privguard route is declared: it works where undeclared routes are refused.
            Middleware(
                PrivacyMiddleware,
                guard=guard,
                subject_resolver=signed_in,
                undeclared=Undeclared.REFUSE,
            )
        ],
    )


@pytest.fixture
def guard() -> Privguard:
    return Privguard()


@pytest.fixture
async def client(guard: Privguard) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(guard)), base_url=SITE
    ) as c:
        yield c


async def csrf_token(client: httpx.AsyncClient) -> str:
    r = await client.get("/privacy/analytics/status")
    assert r.status_code == 200
    return str(r.json()["csrf_token"])


SAME_ORIGIN = {"origin": SITE, "sec-fetch-site": "same-origin"}


# -- gpc.json ------------------------------------------------------------------------------------
async def test_gpc_json(client: httpx.AsyncClient) -> None:
    for path in ("/.well-known/gpc.json", "/privacy/analytics/.well-known/gpc.json"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["gpc"] is True
        assert date.fromisoformat(body["lastUpdate"])
        assert set(body) == {"gpc", "lastUpdate"}


async def test_gpc_json_when_gpc_is_not_honoured(guard: Privguard) -> None:
    app = make_app(guard, honor_gpc=False, gpc_last_update=date(2025, 1, 31))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE) as c:
        assert (await c.get("/.well-known/gpc.json")).json() == {
            "gpc": False,
            "lastUpdate": "2025-01-31",
        }


# -- status ----------------------------------------------------------------------------------------
async def test_status_tells_the_signal_and_hands_out_a_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/privacy/analytics/status", headers={"sec-gpc": "1"})
    body = r.json()
    assert (body["opted_out"], body["signal"], body["gpc_honored"]) == (True, "gpc", True)
    assert body["csrf_token"] and r.cookies[CSRF_COOKIE] == body["csrf_token"]
    assert r.headers["cache-control"] == "no-store"
    # The token is reused while its cookie is valid.
    assert (await client.get("/privacy/analytics/status")).json()["csrf_token"] == body[
        "csrf_token"
    ]


# -- opting out ------------------------------------------------------------------------------------
async def test_opt_out_without_an_account(client: httpx.AsyncClient, guard: Privguard) -> None:
    client.cookies.set("_ga", "GA1.2.3.4", domain="shop.example")
    r = await client.post("/privacy/analytics/opt-out")  # no token, no account
    assert r.status_code == 200 and r.json()["opted_out"] is True
    cookies = r.headers.get_list("set-cookie")
    choice = next(c for c in cookies if c.startswith("privguard_analytics="))
    assert choice.startswith("privguard_analytics=out;")
    for attribute in ("Path=/", "SameSite=lax", "Secure", "Max-Age=31536000"):
        assert attribute in choice
    assert any(c.startswith("_ga=; Max-Age=0") for c in cookies)
    status = (await client.get("/privacy/analytics/status")).json()
    assert (status["opted_out"], status["signal"]) == (True, "cookie")


async def test_opt_out_signed_in_records_an_objection(
    client: httpx.AsyncClient, guard: Privguard
) -> None:
    r = await client.post(
        "/privacy/analytics/opt-out", headers={"authorization": "Bearer alice"}, json={}
    )
    assert r.status_code == 200
    (event,) = guard.ledger.history(ALICE)
    assert (event.action, event.purpose) == (ConsentAction.WITHDRAW, Purposes.ANALYTICS)
    assert event.evidence.method is ConsentMethod.API
    assert (event.evidence.actor, event.evidence.jurisdiction) == ("u-alice", "DE")
    assert event.evidence.notice_version == guard.policy.version
    assert not guard.check(ALICE, Purposes.ANALYTICS).allowed
    # The objection holds on another device, with no cookie.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(guard)), base_url=SITE
    ) as other_device:
        status = await other_device.get(
            "/privacy/analytics/status", headers={"authorization": "Bearer alice"}
        )
        assert (status.json()["opted_out"], status.json()["signal"]) == (True, "stored")


async def test_form_opt_out_goes_back_to_the_page(client: httpx.AsyncClient) -> None:
    r = await client.post("/privacy/analytics/opt-out", data={"next": "/account/privacy"})
    assert r.status_code == 303 and r.headers["location"] == "/account/privacy"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = await client.post("/privacy/analytics/opt-out", data={"next": evil})
        assert r.status_code == 200  # never a redirect to another site


# -- opting back in: cross-site protection -----------------------------------------------------
async def test_opt_in_with_a_valid_token(client: httpx.AsyncClient, guard: Privguard) -> None:
    await client.post("/privacy/analytics/opt-out", headers={"authorization": "Bearer alice"})
    token = await csrf_token(client)
    r = await client.post(
        "/privacy/analytics/opt-in",
        headers={**SAME_ORIGIN, "x-csrf-token": token, "authorization": "Bearer alice"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"opted_in": True, "opted_out": False, "signals": []}
    assert any(c.startswith("privguard_analytics=in;") for c in r.headers.get_list("set-cookie"))
    grant = guard.ledger.history(ALICE)[-1]
    assert (grant.action, grant.purpose) == (ConsentAction.GRANT, Purposes.ANALYTICS)
    assert guard.check(ALICE, Purposes.ANALYTICS).allowed


async def test_opt_in_by_form_with_the_token_field(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client)
    r = await client.post(
        "/privacy/analytics/opt-in",
        headers=SAME_ORIGIN,
        data={"csrf_token": token, "next": "/account"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/account"


async def test_opt_in_while_gpc_is_on_says_gpc_still_holds(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client)
    r = await client.post(
        "/privacy/analytics/opt-in",
        headers={**SAME_ORIGIN, "x-csrf-token": token, "sec-gpc": "1"},
    )
    assert r.json() == {"opted_in": True, "opted_out": True, "signals": ["gpc"]}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"origin": "https://evil.example", "sec-fetch-site": "cross-site"}, "sec-fetch-site"),
        ({"origin": "https://evil.example"}, "origin"),
        ({"origin": "null"}, "origin"),
        ({"origin": "http://shop.example"}, "origin"),  # another scheme is another origin
        ({"origin": "https://sub.shop.example", "sec-fetch-site": "same-site"}, "sec-fetch-site"),
        ({"sec-fetch-site": "none"}, "sec-fetch-site"),
    ],
)
async def test_opt_in_from_another_site_is_refused(
    client: httpx.AsyncClient, guard: Privguard, headers: dict[str, str], reason: str
) -> None:
    token = await csrf_token(client)  # even with a valid token
    r = await client.post(
        "/privacy/analytics/opt-in",
        headers={**headers, "x-csrf-token": token, "authorization": "Bearer alice"},
    )
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == reason
    assert "privguard_analytics=in" not in " ".join(r.headers.get_list("set-cookie"))
    assert guard.ledger.history(ALICE) == ()


async def test_opt_in_without_a_matching_token_is_refused(client: httpx.AsyncClient) -> None:
    opt_in = "/privacy/analytics/opt-in"
    # No token at all.
    assert (await client.post(opt_in, headers=SAME_ORIGIN)).json()["reason"] == "csrf-token"
    token = await csrf_token(client)
    # A header that does not match the cookie.
    r = await client.post(opt_in, headers={**SAME_ORIGIN, "x-csrf-token": token + "x"})
    assert r.status_code == 403
    # A well-formed pair the attacker made up (cookie tossing): the signature fails.
    forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    client.cookies.set(CSRF_COOKIE, forged, domain="shop.example")
    r = await client.post(opt_in, headers={**SAME_ORIGIN, "x-csrf-token": forged})
    assert r.status_code == 403
    # A token signed by another deployment's secret.
    other = analytics_app(None, AnalyticsConfig(csrf_secret=b"o" * 32))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=SITE) as c:
        foreign = (await c.get("/status")).json()["csrf_token"]
    client.cookies.set(CSRF_COOKIE, foreign, domain="shop.example")
    r = await client.post(opt_in, headers={**SAME_ORIGIN, "x-csrf-token": foreign})
    assert r.status_code == 403


async def test_trusted_origins_and_a_shared_secret(guard: Privguard) -> None:
    secret = b"k" * 32
    app = make_app(guard, trusted_origins=["https://www.shop.example"], csrf_secret=secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE) as c:
        token = await csrf_token(c)
        r = await c.post(
            "/privacy/analytics/opt-in",
            headers={"origin": "https://www.shop.example", "x-csrf-token": token},
        )
        assert r.status_code == 200
    # Another worker with the same secret accepts the same token.
    again = make_app(guard, trusted_origins=["https://www.shop.example"], csrf_secret=secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=again), base_url=SITE) as c:
        c.cookies.set(CSRF_COOKIE, token, domain="shop.example")
        r = await c.post("/privacy/analytics/opt-in", headers={"x-csrf-token": token})
        assert r.status_code == 200


async def test_plain_http_deployments_use_a_plain_cookie_name(guard: Privguard) -> None:
    app = make_app(guard, cookie_secure=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as c:
        r = await c.get("/privacy/analytics/status")
        assert "privguard_csrf" in r.cookies
        token = r.json()["csrf_token"]
        r = await c.post(
            "/privacy/analytics/opt-in",
            headers={"origin": "http://localhost", "x-csrf-token": token},
        )
        assert r.status_code == 200


async def test_answers_hold_no_personal_data(client: httpx.AsyncClient) -> None:
    r = await client.get("/privacy/analytics/status", headers={"authorization": "Bearer alice"})
    assert "u-alice" not in json.dumps(r.json())
