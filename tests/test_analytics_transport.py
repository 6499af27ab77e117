"""Server-side analytics through ``AnalyticsGuardTransport`` (C21, C22): respx stands in
for Google Analytics, Adobe and Mixpanel, and the tests read what was *sent*.

An opted-out person (by any signal) causes zero hits; everyone else's hits go out with
no e-mail, phone, name, card number or raw IP in them, and user ids pseudonymised.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
import respx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from privguard import (
    AnalyticsConfig,
    AnalyticsGuardTransport,
    AnalyticsOptOutMiddleware,
    AnalyticsScrubRules,
    BlockedHit,
    ConsentMethod,
    Evidence,
    IpHandling,
    Key,
    Keyring,
    Privguard,
    Pseudonymizer,
    Purposes,
    Subject,
    bound_analytics,
    hit_user_id,
)

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
KEYRING = Keyring([Key("k1", os.urandom(32))], primary="k1")

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0132"
CARD = "4111 1111 1111 1111"
IP = "203.0.113.77"
NAME = "Jane"
USER_ID = "u-alice"
#: What must never reach an analytics platform, in every spelling a payload could use.
FORBIDDEN = (
    EMAIL,
    "jane.doe%40example.com",
    "jane.doe%2540example.com",
    "4111111111111111",
    CARD,
    "4155550132",
    "415 555 0132",
    IP,
    f'"{NAME}"',
    f"={NAME}&",
)


def page_url() -> str:
    return (
        f"https://shop.example/account?email={EMAIL}&utm_source=newsletter"
        f"&utm_term=call%20{PHONE.replace(' ', '%20')}&utm_campaign=card%20{CARD.replace(' ', '')}"
    )


def server_hits() -> list[tuple[str, str, dict[str, Any]]]:
    """The hits the app sends server-side, each full of personal data."""
    url = page_url()
    mixpanel_events = [
        {
            "event": "Checkout",
            "properties": {
                "token": "0123456789abcdef",
                "distinct_id": USER_ID,
                "$email": EMAIL,
                "$name": f"{NAME} Doe",
                "ip": IP,
                "$current_url": url,
                "note": f"call me on {PHONE}",
            },
        }
    ]
    return [
        (
            "POST",
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345&api_secret=s3",
            {
                "json": {
                    "client_id": "1234.5678",
                    "user_id": USER_ID,
                    "ip_override": IP,
                    "user_properties": {"email": {"value": EMAIL}, "plan": {"value": "pro"}},
                    "user_data": {"email_address": EMAIL, "sha256_email_address": "a" * 64},
                    "events": [
                        {
                            "name": "purchase",
                            "params": {
                                "page_location": url,
                                "page_title": f"Receipt for {EMAIL}",
                                "first_name": NAME,
                                "card": CARD,
                                "session_id": "1700000000",
                            },
                        }
                    ],
                }
            },
        ),
        (
            "GET",
            "https://region1.google-analytics.com/g/collect",
            {
                "params": {
                    "v": "2",
                    "tid": "G-SHOP12345",
                    "cid": "1234.5678",
                    "uid": USER_ID,
                    "dl": url,
                    "dt": f"Hello {EMAIL}",
                    "ep.email": EMAIL,
                    "up.first_name": NAME,
                    "_uip": IP,
                    "en": "page_view",
                }
            },
        ),
        (
            "POST",
            "https://www.google-analytics.com/collect",
            {
                "content": (
                    f"v=1&tid=UA-1234567-1&cid=1234.5678&uid={USER_ID}&uip={IP}&t=pageview"
                    f"&dl={httpx.QueryParams({'x': url})['x']}&dt=Hi%20{EMAIL}&first_name={NAME}&"
                ).encode()
            },
        ),
        (
            "GET",
            "https://shop.sc.omtrdc.net/b/ss/shoprsid/1/JS-2.3.0/s123",
            {
                "params": {
                    "AQB": "1",
                    "pageName": f"Profile {EMAIL}",
                    "g": url,
                    "vid": USER_ID,
                    "v1": PHONE,
                    "AQE": "1",
                }
            },
        ),
        (
            "POST",
            "https://metrics.shop.example/b/ss/shoprsid/1/JS-2.3.0/s124",  # a first-party CNAME
            {"content": f"AQB=1&pageName=Checkout&c.&email={EMAIL}&.c&AQE=1".encode()},
        ),
        (
            "POST",
            "https://edge.adobedc.net/ee/v2/interact?configId=abc",
            {
                "json": {
                    "events": [
                        {
                            "xdm": {
                                "identityMap": {
                                    "ECID": [{"id": "12345678901234567890"}],
                                    "Email": [{"id": EMAIL}],
                                    "CRMID": [{"id": USER_ID}],
                                },
                                "web": {"webPageDetails": {"URL": url, "name": "checkout"}},
                                "environment": {"ipV4": IP},
                                "person": {"name": {"firstName": NAME}},
                            }
                        }
                    ]
                }
            },
        ),
        (
            "POST",
            "https://api-eu.mixpanel.com/track",
            {"data": {"data": base64.b64encode(json.dumps(mixpanel_events).encode()).decode()}},
        ),
        (
            "POST",
            "https://api-in.mixpanel.com/engage",
            {
                "json": [
                    {
                        "$token": "0123456789abcdef",
                        "$distinct_id": USER_ID,
                        "$ip": IP,
                        "$set": {
                            "$email": EMAIL,
                            "$phone": PHONE,
                            "$first_name": NAME,
                            "plan": "pro",
                        },
                    }
                ]
            },
        ),
        ("POST", "https://api.mixpanel.com/import", {"json": mixpanel_events}),
    ]


N_HITS = len(server_hits())


def signed_in(scope: Any) -> Subject | None:
    return ALICE if dict(scope["headers"]).get(b"authorization") == b"Bearer alice" else None


async def checkout(request: Request) -> JSONResponse:
    guard: Privguard = request.app.state.guard
    transport = AnalyticsGuardTransport(httpx.AsyncHTTPTransport(), guard=guard)
    async with httpx.AsyncClient(transport=transport) as client:
        codes = [
            (await client.request(method, url, **kwargs)).status_code
            for method, url, kwargs in server_hits()
        ]
        # Not analytics: passes untouched, personal data and all.
        await client.post("https://api.payments.example/charge", json={"email": EMAIL})
    return JSONResponse({"codes": codes})


def make_app(guard: Privguard, **config: Any) -> Starlette:
    app = Starlette(
        routes=[Route("/checkout", checkout, methods=["POST"])],
        middleware=[
            Middleware(
                AnalyticsOptOutMiddleware,
                guard=guard,
                config=AnalyticsConfig(subject_resolver=signed_in, **config),
            )
        ],
    )
    app.state.guard = guard
    return app


@pytest.fixture
def guard() -> Privguard:
    return Privguard(keyring=KEYRING)


@pytest.fixture
def network() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host__regex=r"(^|\.)google-analytics\.com$", name="ga").respond(204)
        mock.route(
            host__regex=r"(omtrdc\.net|adobedc\.net|metrics\.shop\.example)$", name="adobe"
        ).respond(204)
        mock.route(host__regex=r"mixpanel\.com$", name="mixpanel").respond(204)
        mock.route(host="api.payments.example", name="payments").respond(200, json={})
        yield mock


def analytics_calls(network: respx.MockRouter) -> list[httpx.Request]:
    return [
        call.request for name in ("ga", "adobe", "mixpanel") for call in network.routes[name].calls
    ]


def sent_text(request: httpx.Request) -> str:
    """Everything a hit carried, decoded every way it could be read."""
    body = request.content
    parts = [str(request.url), body.decode("utf-8", "replace")]
    for text in list(parts):
        for _ in range(3):
            text = unquote_plus(text)
            parts.append(text)
    for source in (request.url.params.get("data"), httpx.QueryParams(body.decode()).get("data")):
        if source:
            parts.append(base64.b64decode(source + "==").decode("utf-8", "replace"))
    if body[:1] in (b"{", b"["):
        parts.append(json.dumps(json.loads(body), ensure_ascii=False))
    return "\n".join(parts)


async def post(
    app: Starlette, headers: list[tuple[str, str]], cookies: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.example", cookies=cookies
    ) as client:
        r = await client.post("/checkout", headers=headers)
        assert r.status_code == 200
        return r


# -- opted out: nothing is sent ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "cookies", "config", "stored"),
    [
        pytest.param([], {"privguard_analytics": "out"}, {}, False, id="cookie"),
        pytest.param([("Sec-GPC", "1")], None, {}, False, id="gpc"),
        pytest.param([("SEC-GPC", "1")], None, {}, False, id="gpc-upper-case"),
        pytest.param([("Sec-GPC", "0"), ("Sec-GPC", "1")], None, {}, False, id="gpc-repeated"),
        pytest.param([("authorization", "Bearer alice")], None, {}, True, id="stored"),
        pytest.param(
            [("authorization", "Bearer alice")],
            None,
            {"opt_in_jurisdictions": {"EEA"}},
            False,
            id="jurisdiction",
        ),
        pytest.param([("DNT", "1")], None, {"honor_dnt": True}, False, id="dnt-configured"),
    ],
)
async def test_c22_zero_hits_for_an_opted_out_person(
    guard: Privguard,
    network: respx.MockRouter,
    headers: list[tuple[str, str]],
    cookies: dict[str, str] | None,
    config: dict[str, Any],
    stored: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if stored:
        guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    caplog.set_level(logging.INFO, logger="privguard.analytics")
    r = await post(make_app(guard, **config), headers, cookies)
    assert analytics_calls(network) == []
    assert r.json()["codes"] == [204] * N_HITS  # analytics code carries on
    assert network.routes["payments"].call_count == 1  # not analytics: untouched
    blocked = [rec.getMessage() for rec in caplog.records if "not sent" in rec.getMessage()]
    assert len(blocked) == N_HITS
    for line in blocked:
        assert "opted_out:" in line
        assert EMAIL not in line and USER_ID not in line and IP not in line


# -- not opted out: hits go out, without personal data ------------------------------------------
@pytest.mark.parametrize(
    ("headers", "cookies"),
    [
        pytest.param([], None, id="no-signal"),
        pytest.param([("Sec-GPC", "0")], None, id="gpc-0"),
        pytest.param([("Sec-GPC", "true")], None, id="gpc-not-1"),
        pytest.param([("DNT", "1")], None, id="dnt-off-by-default"),
        pytest.param([], {"privguard_analytics": "in"}, id="opted-in"),
        pytest.param([("authorization", "Bearer alice")], None, id="signed-in"),
    ],
)
async def test_c21_hits_without_personal_data_for_everyone_else(
    guard: Privguard,
    network: respx.MockRouter,
    headers: list[tuple[str, str]],
    cookies: dict[str, str] | None,
) -> None:
    await post(make_app(guard), headers, cookies)
    sent = analytics_calls(network)
    assert len(sent) == N_HITS
    pseudonym = Pseudonymizer(KEYRING).pseudonymize(
        USER_ID, tenant="platform", namespace="analytics"
    )
    for request in sent:
        text = sent_text(request)
        for value in FORBIDDEN:
            assert value not in text, (request.url.host, request.url.path, value)
        assert USER_ID not in text.replace(pseudonym, "")
    # The payments API is not analytics: it got what the app sent.
    assert EMAIL in network.routes["payments"].calls[0].request.content.decode()


async def test_what_each_hit_keeps(guard: Privguard, network: respx.MockRouter) -> None:
    await post(make_app(guard), [])
    pseudonym = Pseudonymizer(KEYRING).pseudonymize(
        USER_ID, tenant="platform", namespace="analytics"
    )
    by_path = {(r.url.host, r.url.path): r for r in analytics_calls(network)}
    mp = json.loads(by_path["www.google-analytics.com", "/mp/collect"].content)
    assert mp["user_id"] == pseudonym
    assert mp["client_id"] == "1234.5678"  # a cookie id: analytics may have it
    assert "ip_override" not in mp and "user_data" not in mp
    assert mp["user_properties"] == {"plan": {"value": "pro"}}
    params = mp["events"][0]["params"]
    assert "first_name" not in params and params["session_id"] == "1700000000"
    assert "utm_source=newsletter" in params["page_location"]
    assert "email=" not in params["page_location"]
    gtag = by_path["region1.google-analytics.com", "/g/collect"].url.params
    assert gtag["uid"] == pseudonym and gtag["tid"] == "G-SHOP12345"
    assert "ep.email" not in gtag and "up.first_name" not in gtag and "_uip" not in gtag
    assert gtag["dt"] == "Hello [user.contact.email]"
    adobe = by_path["shop.sc.omtrdc.net", "/b/ss/shoprsid/1/JS-2.3.0/s123"].url.params
    assert adobe["vid"] == pseudonym and adobe["v1"] == "[user.contact.phone_number]"
    cname = by_path["metrics.shop.example", "/b/ss/shoprsid/1/JS-2.3.0/s124"].content.decode()
    assert cname == "AQB=1&pageName=Checkout&c.&.c&AQE=1"
    edge = json.loads(by_path["edge.adobedc.net", "/ee/v2/interact"].content)
    identities = edge["events"][0]["xdm"]["identityMap"]
    assert set(identities) == {"ECID", "CRMID"} and identities["CRMID"][0]["id"] == pseudonym
    for path in ("/track", "/engage", "/import"):
        request = next(r for r in analytics_calls(network) if r.url.path == path)
        assert request.url.params["ip"] == "0"  # Mixpanel: no geolocation from our IP
    engage = json.loads(
        next(r for r in analytics_calls(network) if r.url.path == "/engage").content
    )
    assert engage == [
        {"$token": "0123456789abcdef", "$distinct_id": pseudonym, "$set": {"plan": "pro"}}
    ]


# -- what cannot be scrubbed is not sent ---------------------------------------------------------
async def test_a_payload_that_still_holds_an_email_is_blocked_and_recorded(
    network: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    records: list[BlockedHit] = []
    transport = AnalyticsGuardTransport(httpx.AsyncHTTPTransport(), on_block=records.append)
    hidden = base64.b64encode(f"contact={EMAIL}".encode()).decode()
    async with httpx.AsyncClient(transport=transport) as client:
        r1 = await client.post(
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345",
            content=f"not json, but {EMAIL}".encode(),
            headers={"content-type": "text/plain"},
        )
        r2 = await client.post(
            "https://api-js.mixpanel.com/track",
            data={"data": hidden},  # base64, not JSON
        )
        r3 = await client.post(
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345",
            content=b"\x00binary",
            headers={"content-encoding": "br"},
        )
    assert analytics_calls(network) == []
    assert (r1.status_code, r1.headers["x-privguard-analytics"]) == (204, "blocked")
    assert [(b.host, b.reason) for b in records] == [
        ("www.google-analytics.com", "personal_data:email"),
        ("api-js.mixpanel.com", "personal_data:email"),
        ("www.google-analytics.com", "unreadable_body"),
    ]
    assert r2.status_code == 204 and r3.status_code == 204
    for rec in caplog.records:
        assert EMAIL not in rec.getMessage()
    assert EMAIL not in repr(records)


async def test_a_card_number_in_an_unknown_shape_is_blocked(network: respx.MockRouter) -> None:
    transport = AnalyticsGuardTransport(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as client:
        # An unknown binary format on a collector host: it cannot be taken apart.
        await client.post(
            "https://www.google-analytics.com/something/new",
            content=b"\x01\x02pan:4111111111111111\x03",
            headers={"content-type": "application/octet-stream"},
        )
        # JSON can: the number, percent-encoded once more than JSON needs, is found.
        await client.post(
            "https://www.google-analytics.com/something/new",
            json={"blob": "4111%2D1111%2D1111%2D1111", "ok": "yes"},
        )
    (sent,) = analytics_calls(network)
    assert json.loads(sent.content) == {"blob": "[redacted]", "ok": "yes"}


async def test_gzip_compressed_hits_are_read_and_scrubbed(network: respx.MockRouter) -> None:
    transport = AnalyticsGuardTransport(httpx.AsyncHTTPTransport())
    body = json.dumps({"client_id": "1.2", "events": [{"name": "x", "params": {"email": EMAIL}}]})
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post(
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345",
            content=gzip.compress(body.encode()),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
    (sent,) = analytics_calls(network)
    assert "content-encoding" not in sent.headers
    assert json.loads(sent.content) == {"client_id": "1.2", "events": [{"name": "x", "params": {}}]}


# -- options -------------------------------------------------------------------------------------
async def test_user_data_only_hashed_and_only_with_ad_user_data_consent(
    network: respx.MockRouter,
) -> None:
    def payload(consent: str) -> dict[str, Any]:
        return {
            "client_id": "1.2",
            "consent": {"ad_user_data": consent},
            "user_data": {
                "sha256_email_address": "a" * 64,
                "sha256_phone_number": "not a hash",
                "address": [{"sha256_first_name": "b" * 64, "city": "Berlin"}],
            },
            "events": [{"name": "purchase"}],
        }

    url = "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345"
    allowed = AnalyticsGuardTransport(
        httpx.AsyncHTTPTransport(), rules=AnalyticsScrubRules(ad_user_data=True)
    )
    default = AnalyticsGuardTransport(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=allowed) as client:
        await client.post(url, json=payload("GRANTED"))
        await client.post(url, json=payload("DENIED"))
    async with httpx.AsyncClient(transport=default) as client:
        await client.post(url, json=payload("GRANTED"))
    sent = [json.loads(r.content) for r in analytics_calls(network)]
    assert sent[0]["user_data"] == {
        "sha256_email_address": "a" * 64,
        "address": [{"sha256_first_name": "b" * 64}],
    }
    assert "user_data" not in sent[1] and "user_data" not in sent[2]


async def test_ip_truncated_when_configured(network: respx.MockRouter) -> None:
    transport = AnalyticsGuardTransport(
        httpx.AsyncHTTPTransport(), rules=AnalyticsScrubRules(ip=IpHandling.TRUNCATE)
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post(
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345",
            json={"client_id": "1.2", "ip_override": IP, "events": []},
        )
        await client.get(
            "https://www.google-analytics.com/collect",
            params={
                "v": "1",
                "tid": "UA-1234567-1",
                "cid": "1",
                "uip": "2001:db8:85a3::8a2e:370:7334",
            },
        )
    mp, ua = analytics_calls(network)
    assert json.loads(mp.content)["ip_override"] == "203.0.113.0"
    assert ua.url.params["uip"] == "2001:db8:85a3::"


def test_without_a_keyring_user_ids_are_dropped(network: respx.MockRouter) -> None:
    transport = AnalyticsGuardTransport(httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client:
        client.get(
            "https://www.google-analytics.com/collect",
            params={"v": "1", "tid": "UA-1234567-1", "cid": "1", "uid": USER_ID},
        )
    (sent,) = analytics_calls(network)
    assert "uid" not in sent.url.params and USER_ID not in str(sent.url)


# -- outside a request: sync clients, jobs, hits about someone else -------------------------------
def test_sync_client_in_a_job_bound_to_an_opt_out(network: respx.MockRouter) -> None:
    transport = AnalyticsGuardTransport(httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client, bound_analytics(True):
        for method, url, kwargs in server_hits():
            assert client.request(method, url, **kwargs).status_code == 204
    assert analytics_calls(network) == []


@pytest.mark.parametrize("use_async", [False, True])
async def test_subject_of_maps_a_hit_to_its_person(
    guard: Privguard, network: respx.MockRouter, use_async: bool
) -> None:
    people = {USER_ID: ALICE}

    def subject_of(hit: Any) -> Subject | None:
        uid = hit_user_id(hit)
        return people.get(uid) if uid else None

    guard.ledger.withdraw(ALICE, Purposes.ANALYTICS, evidence=EVIDENCE)
    records: list[BlockedHit] = []
    hits = server_hits()
    if use_async:
        transport = AnalyticsGuardTransport(
            httpx.AsyncHTTPTransport(), guard=guard, subject_of=subject_of, on_block=records.append
        )
        async with httpx.AsyncClient(transport=transport) as client:
            for method, url, kwargs in hits:
                await client.request(method, url, **kwargs)
    else:
        sync = AnalyticsGuardTransport(
            httpx.HTTPTransport(), guard=guard, subject_of=subject_of, on_block=records.append
        )
        with httpx.Client(transport=sync) as client:
            for method, url, kwargs in hits:
                client.request(method, url, **kwargs)
    # Every hit names u-alice somewhere (uid, user_id, vid, distinct_id, CRMID) except the
    # first-party Adobe one, which names nobody and goes out scrubbed.
    assert {r.reason for r in records} == {"opted_out:stored"}
    assert [(r.url.host, r.url.path) for r in analytics_calls(network)] == [
        ("metrics.shop.example", "/b/ss/shoprsid/1/JS-2.3.0/s124")
    ]


def test_wrong_kind_of_inner_transport() -> None:
    with (
        pytest.raises(TypeError),
        httpx.Client(transport=AnalyticsGuardTransport(httpx.AsyncHTTPTransport())) as client,
    ):
        client.get("https://example.com/")


# -- telemetry ------------------------------------------------------------------------------------
async def test_blocked_hits_are_reported_to_telemetry_without_personal_data(
    network: respx.MockRouter,
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import privguard._telemetry as names
    from privguard import Telemetry

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    transport = AnalyticsGuardTransport(httpx.AsyncHTTPTransport(), telemetry=telemetry)
    async with httpx.AsyncClient(transport=transport) as client:
        with bound_analytics(True):
            await client.request(*server_hits()[0][:2], **server_hits()[0][2])
        await client.post(
            "https://www.google-analytics.com/mp/collect?measurement_id=G-SHOP12345",
            content=f"not json {EMAIL}".encode(),
        )
    assert analytics_calls(network) == []
    attributes = [dict(span.attributes or {}) for span in spans.get_finished_spans()]
    assert [a[names.ATTR_BLOCK_REASON] for a in attributes] == [
        "opted_out:stored",
        "personal_data:email",
    ]
    for attrs in attributes:
        assert attrs[names.ATTR_RECIPIENT_KIND] == "analytics_provider"
        assert attrs[names.ATTR_PURPOSE] == Purposes.ANALYTICS
        assert attrs[names.ATTR_SERVER_ADDRESS] == "www.google-analytics.com"
        assert attrs[names.ATTR_OUTCOME] == "blocked"
        assert EMAIL not in json.dumps(attrs) and USER_ID not in json.dumps(attrs)
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == names.METRIC_BLOCKED
        for point in metric.data.data_points
    ]
    assert sum(p.value for p in points) == 2  # type: ignore[attr-defined]
