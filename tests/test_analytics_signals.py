"""Who is opted out of analytics, and which signal said so (C22).

Real Starlette apps behind ``AnalyticsOptOutMiddleware``, driven over HTTP with httpx's
ASGITransport; an endpoint reports ``current_analytics()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from privguard import (
    AnalyticsConfig,
    AnalyticsOptOutMiddleware,
    AnalyticsStatus,
    ConsentMethod,
    Evidence,
    OptOutSignal,
    PolicyError,
    PrivacyMiddleware,
    Privguard,
    Purposes,
    StoreUnavailable,
    Subject,
    Undeclared,
    bound_analytics,
    current_analytics,
)

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="US-CA")
BERND = Subject.business_contact("c-bernd", tenant="acme", jurisdiction="DE")
VISITOR = Subject.visitor("v-cookie-1")
USERS = {"alice": ALICE, "bernd": BERND, "visitor": VISITOR}
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")


def signed_in(scope: Any) -> Subject | None:
    token = dict(scope["headers"]).get(b"authorization", b"").decode()
    return USERS.get(token.removeprefix("Bearer "))


async def status_endpoint(request: Request) -> JSONResponse:
    status = current_analytics()
    assert status is not None
    return JSONResponse(status.as_dict())


def make_app(guard: Privguard | None = None, **config: Any) -> Starlette:
    config.setdefault("subject_resolver", signed_in)
    return Starlette(
        routes=[Route("/", status_endpoint)],
        middleware=[
            Middleware(AnalyticsOptOutMiddleware, guard=guard, config=AnalyticsConfig(**config))
        ],
    )


async def status_of(
    app: Starlette, headers: Sequence[tuple[str, str]] = (), cookies: dict[str, str] | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.example", cookies=cookies
    ) as client:
        r = await client.get("/", headers=list(headers))
        assert r.status_code == 200
        return dict(r.json())


@pytest.fixture
def guard() -> Privguard:
    return Privguard()


# -- Global Privacy Control ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "opted_out"),
    [
        ([("Sec-GPC", "1")], True),
        ([("sec-gpc", "1")], True),
        ([("SEC-GPC", "1")], True),
        ([("Sec-GPC", " 1 ")], True),  # whitespace around a field value is not part of it
        ([("Sec-GPC", "0"), ("Sec-GPC", "1")], True),  # a repeated header with a 1 counts
        ([("Sec-GPC", "1"), ("Sec-GPC", "0")], True),
        ([("Sec-GPC", "0, 1")], True),  # repeated fields folded by a proxy
        ([("Sec-GPC", "0")], False),
        ([("Sec-GPC", "true")], False),  # the spec's value is exactly "1"
        ([("Sec-GPC", "yes")], False),
        ([("Sec-GPC", "01")], False),
        ([("Sec-GPC", "1.0")], False),
        ([("Sec-GPC", "")], False),
        ([], False),
    ],
)
async def test_gpc_header_variants(headers: list[tuple[str, str]], opted_out: bool) -> None:
    got = await status_of(make_app(), headers)
    assert got["opted_out"] is opted_out
    assert got["signal"] == ("gpc" if opted_out else None)


async def test_gpc_header_name_case_at_the_asgi_level() -> None:
    # ASGI servers lower-case header names; the middleware does not rely on it.
    seen: list[AnalyticsStatus | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_analytics())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = AnalyticsOptOutMiddleware(app, config=AnalyticsConfig())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    for name in (b"Sec-GPC", b"SEC-GPC", b"sec-gpc"):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"host", b"shop.example"), (name, b"1")],
            "query_string": b"",
        }
        await mw(scope, receive, send)
    assert [s.signal for s in seen if s is not None] == [OptOutSignal.GPC] * 3


async def test_gpc_can_be_configured_not_to_count() -> None:
    got = await status_of(make_app(honor_gpc=False), [("Sec-GPC", "1")])
    assert got["opted_out"] is False


# -- Do Not Track -----------------------------------------------------------------------------
async def test_dnt_is_off_by_default_and_counts_when_configured() -> None:
    assert (await status_of(make_app(), [("DNT", "1")]))["opted_out"] is False
    got = await status_of(make_app(honor_dnt=True), [("DNT", "1")])
    assert (got["opted_out"], got["signal"]) == (True, "dnt")
    assert (await status_of(make_app(honor_dnt=True), [("DNT", "0")]))["opted_out"] is False


# -- privguard's cookie --------------------------------------------------------------------------
async def test_opt_out_cookie() -> None:
    got = await status_of(make_app(), cookies={"privguard_analytics": "out"})
    assert (got["opted_out"], got["signal"]) == (True, "cookie")
    got = await status_of(make_app(), cookies={"privguard_analytics": "in"})
    assert (got["opted_out"], got["opted_in"]) == (False, True)
    got = await status_of(make_app(), cookies={"privguard_analytics": "maybe"})
    assert (got["opted_out"], got["opted_in"]) == (False, False)


async def test_an_opt_in_cookie_does_not_outvote_gpc() -> None:
    got = await status_of(make_app(), [("Sec-GPC", "1")], cookies={"privguard_analytics": "in"})
    assert (got["opted_out"], got["signal"]) == (True, "gpc")


async def test_every_signal_is_listed_in_order() -> None:
    got = await status_of(
        make_app(honor_dnt=True),
        [("Sec-GPC", "1"), ("DNT", "1")],
        cookies={"privguard_analytics": "out"},
    )
    assert got["signals"] == ["cookie", "gpc", "dnt"]
    assert got["signal"] == "cookie"


# -- the stored preference of a signed-in subject -------------------------------------------------
async def test_stored_objection_opts_a_signed_in_subject_out(guard: Privguard) -> None:
    app = make_app(guard)
    bearer = [("authorization", "Bearer alice")]
    assert (await status_of(app, bearer))["opted_out"] is False
    guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    got = await status_of(app, bearer)
    assert (got["opted_out"], got["signal"]) == (True, "stored")
    # Another person on the same app is not affected.
    assert (await status_of(app, [("authorization", "Bearer bernd")]))["opted_out"] is False
    # Objecting to analytics covers its sub-purposes; a later grant ends the objection.
    guard.ledger.grant(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    got = await status_of(app, bearer)
    assert (got["opted_out"], got["opted_in"]) == (False, True)


async def test_stored_objection_beats_an_opt_in_cookie(guard: Privguard) -> None:
    guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    got = await status_of(
        make_app(guard), [("authorization", "Bearer alice")], cookies={"privguard_analytics": "in"}
    )
    assert (got["opted_out"], got["signal"], got["opted_in"]) == (True, "stored", False)


async def test_the_subject_comes_from_the_privacy_context_without_a_resolver(
    guard: Privguard,
) -> None:
    guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    app = Starlette(
        routes=[Route("/", status_endpoint)],
        middleware=[
            Middleware(
                PrivacyMiddleware,
                guard=guard,
                subject_resolver=signed_in,
                undeclared=Undeclared.SKIP,
            ),
            Middleware(AnalyticsOptOutMiddleware, guard=guard, config=AnalyticsConfig()),
        ],
    )
    got = await status_of(app, [("authorization", "Bearer alice")])
    assert (got["opted_out"], got["signal"]) == (True, "stored")


async def test_an_unreadable_preference_fails_closed() -> None:
    class StoreDown(Privguard):
        async def acheck(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the consent store is down")

    got = await status_of(make_app(StoreDown()), [("authorization", "Bearer alice")])
    assert (got["opted_out"], got["signal"]) == (True, "unavailable")


async def test_a_header_signal_spares_the_ledger_lookup() -> None:
    calls: list[str] = []

    class Counting(Privguard):
        async def acheck(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("check")
            return await super().acheck(*args, **kwargs)

    counting = Counting()
    await status_of(make_app(counting), [("authorization", "Bearer alice"), ("Sec-GPC", "1")])
    assert calls == []
    await status_of(make_app(counting), [("authorization", "Bearer alice")])
    assert calls == ["check"]


# -- jurisdictions where analytics need an opt-in ------------------------------------------------
async def test_opt_in_jurisdiction_without_an_opt_in(guard: Privguard) -> None:
    app = make_app(guard, opt_in_jurisdictions={"EEA", "UK"})
    bernd = [("authorization", "Bearer bernd")]  # DE: in the EEA
    got = await status_of(app, bernd)
    assert (got["opted_out"], got["signal"]) == (True, "jurisdiction")
    # Opted in by the cookie, or by a recorded consent:
    assert (await status_of(app, bernd, cookies={"privguard_analytics": "in"}))[
        "opted_out"
    ] is False
    guard.ledger.grant(BERND, Purposes.ANALYTICS, evidence=EVIDENCE)
    assert (await status_of(app, bernd))["opted_out"] is False
    # California is not an opt-in jurisdiction here.
    assert (await status_of(app, [("authorization", "Bearer alice")]))["opted_out"] is False


async def test_jurisdiction_from_a_resolver_and_unknown_is_strictest() -> None:
    def country(scope: Any) -> str | None:
        value = dict(scope["headers"]).get(b"cf-ipcountry")
        return value.decode() if value else None

    app = make_app(opt_in_jurisdictions={"EEA", "UK"}, jurisdiction_resolver=country)
    assert (await status_of(app, [("cf-ipcountry", "GB")]))["signal"] == "jurisdiction"
    assert (await status_of(app, [("cf-ipcountry", "fr")]))["signal"] == "jurisdiction"
    assert (await status_of(app, [("cf-ipcountry", "US")]))["opted_out"] is False
    assert (await status_of(app))["signal"] == "jurisdiction"  # unknown: the strictest
    lenient = make_app(
        opt_in_jurisdictions={"EEA"},
        jurisdiction_resolver=country,
        unknown_jurisdiction_opt_in=False,
    )
    assert (await status_of(lenient))["opted_out"] is False


async def test_no_opt_in_jurisdictions_by_default() -> None:
    # The policy makes analytics an opt-out (C22): no jurisdiction rule unless configured.
    assert (await status_of(make_app(), [("authorization", "Bearer bernd")]))["opted_out"] is False


# -- the context ----------------------------------------------------------------------------------
async def test_status_is_reset_after_the_request() -> None:
    await status_of(make_app(), [("Sec-GPC", "1")])
    assert current_analytics() is None


def test_bound_analytics_for_jobs() -> None:
    with bound_analytics(True) as status:
        assert current_analytics() is status and status.opted_out
    with bound_analytics(False):
        assert current_analytics() == AnalyticsStatus(False)
    assert current_analytics() is None


async def test_lifespan_and_websocket_pass_through() -> None:
    scopes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope["type"])

    mw = AnalyticsOptOutMiddleware(app)
    for kind in ("lifespan", "websocket"):
        await mw({"type": kind}, None, None)  # type: ignore[arg-type]
    assert scopes == ["lifespan", "websocket"]


# -- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"measurement_ids": ["not-an-id"]},
        {"measurement_ids": "G-ABC123"},
        {"mixpanel_tokens": ["<script>"]},
        {"opt_in_jurisdictions": {"Germany!"}},
        {"cookie_name": "bad name"},
        {"cookie_max_age": 0},
        {"cookie_domains": ["not a domain"]},
        {"analytics_cookies": ["_ga; Domain=evil"]},
        {"remove_loaders": {"gtag", "nope"}},
        {"extra_loaders": ["("]},
        {"csp": "sometimes"},
        {"collector_paths": ["collect"]},
        {"trusted_origins": ["https://shop.example/path"]},
        {"csrf_secret": b"short"},
        {"honor_gpc": "yes"},
        {"subject_resolver": "not callable"},
    ],
)
def test_bad_configuration_is_a_policy_error(bad: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        AnalyticsConfig(**bad)


def test_the_config_repr_hides_the_csrf_secret() -> None:
    config = AnalyticsConfig(csrf_secret=b"s" * 32)
    assert "sss" not in repr(config)


async def test_an_async_subject_resolver(guard: Privguard) -> None:
    async def resolver(scope: Any) -> Subject | None:
        return signed_in(scope)

    guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    got = await status_of(
        make_app(guard, subject_resolver=resolver), [("authorization", "Bearer alice")]
    )
    assert got["signal"] == "stored"


async def test_a_resolver_must_return_a_subject() -> None:
    app = make_app(subject_resolver=lambda scope: "u-alice")
    with pytest.raises(TypeError):
        await status_of(app)
