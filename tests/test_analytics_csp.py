"""The second Content-Security-Policy for an opted-out person: it leaves the collectors
out, is added beside the app's own (never changing it), and can only tighten (C22)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from privguard import AnalyticsConfig, AnalyticsOptOutMiddleware, CspMode, PolicyError
from privguard._analytics._collectors import COLLECTOR_HOSTS
from privguard._analytics._csp import parse_policies, source_covers

APP_CSP = (
    "default-src 'self' https://cdn.shop.example https:; "
    "script-src 'self' 'nonce-abc123' 'strict-dynamic' https://cdn.shop.example "
    "https://www.googletagmanager.com 'sha256-AAAA'; "
    "connect-src 'self' https://api.shop.example https://www.google-analytics.com "
    "https://*.google.com wss://live.shop.example; "
    "img-src * data:; style-src 'self' 'unsafe-inline'"
)
GPC = {"sec-gpc": "1"}
COLLECTOR_SAMPLES = (
    "https://www.google-analytics.com/g/collect",
    "https://region1.google-analytics.com/g/collect",
    "https://region1.analytics.google.com/g/collect",
    "https://www.googletagmanager.com/gtag/js",
    "https://stats.g.doubleclick.net/g/collect",
    "https://shop.sc.omtrdc.net/b/ss/x",
    "https://edge.adobedc.net/ee/v1/interact",
    "https://dpm.demdex.net/id",
    "https://assets.adobedtm.com/launch.js",
    "https://api-js.mixpanel.com/track",
    "https://api-eu.mixpanel.com/track",
    "https://cdn.mxpnl.com/libs/mixpanel-2-latest.min.js",
)


async def with_csp(request: Request) -> Response:
    return HTMLResponse("<html><head></head></html>", headers={"content-security-policy": APP_CSP})


async def plain(request: Request) -> Response:
    return HTMLResponse("<html><head></head></html>")


async def worker(request: Request) -> Response:
    return Response("self.onmessage=()=>{}", media_type="text/javascript")


async def data(request: Request) -> Response:
    return JSONResponse({})


def make_app(**config: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/csp", with_csp),
            Route("/plain", plain),
            Route("/worker.js", worker),
            Route("/data", data),
        ],
        middleware=[Middleware(AnalyticsOptOutMiddleware, config=AnalyticsConfig(**config))],
    )


async def get(app: Starlette, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.example"
    ) as client:
        return await client.get(path, headers=headers)


def sources(policy: str, directive: str) -> list[str]:
    (parsed,) = parse_policies([policy])
    return parsed[directive]


def allows_a_collector(policy: str) -> list[str]:
    (parsed,) = parse_policies([policy])
    return [
        f"{d}: {s}" for d, srcs in parsed.items() for s in srcs if source_covers(s, COLLECTOR_HOSTS)
    ]


async def test_added_beside_the_apps_policy_which_is_kept() -> None:
    r = await get(make_app(), "/csp", GPC)
    policies = r.headers.get_list("content-security-policy")
    assert len(policies) == 2
    assert policies[0] == APP_CSP  # the app's own, byte for byte
    added = policies[1]
    assert allows_a_collector(added) == []
    (parsed,) = parse_policies([added])
    assert set(parsed) == {"script-src", "connect-src", "img-src"}  # no default-src


async def test_the_apps_own_sources_minus_the_collectors() -> None:
    added = (await get(make_app(), "/csp", GPC)).headers.get_list("content-security-policy")[1]
    script = sources(added, "script-src")
    assert "https://cdn.shop.example" in script
    assert "https://www.googletagmanager.com" not in script
    assert not any(s.startswith(("'nonce-", "'sha256-", "'strict-dynamic")) for s in script)
    connect = sources(added, "connect-src")
    assert "https://api.shop.example" in connect and "wss://live.shop.example" in connect
    assert "https://www.google-analytics.com" not in connect
    assert "https://*.google.com" not in connect
    img = sources(added, "img-src")
    assert "*" not in img and "data:" in img
    assert "https:" not in " ".join(script + connect + img).split()


async def test_without_an_app_policy() -> None:
    r = await get(make_app(csp_allow=["https://cdn.shop.example"]), "/plain", GPC)
    (added,) = r.headers.get_list("content-security-policy")
    assert sources(added, "script-src")[:2] == ["'self'", "'unsafe-inline'"]
    assert "https://cdn.shop.example" in sources(added, "connect-src")
    assert sources(added, "img-src")[:3] == ["'self'", "data:", "blob:"]
    assert allows_a_collector(added) == []


async def test_not_inherited_when_configured_and_per_directive_sources() -> None:
    r = await get(make_app(csp_inherit=False, csp_img_src=["https://images.example"]), "/csp", GPC)
    added = r.headers.get_list("content-security-policy")[1]
    assert "https://cdn.shop.example" not in added
    assert sources(added, "img-src")[-1] == "https://images.example"
    assert "https://images.example" not in sources(added, "connect-src")


async def test_not_opted_out_gets_no_added_policy() -> None:
    r = await get(make_app(), "/csp")
    assert r.headers.get_list("content-security-policy") == [APP_CSP]


async def test_report_only_and_off_and_report_uri() -> None:
    r = await get(make_app(csp="report_only", csp_report_uri="/csp-reports"), "/plain", GPC)
    assert "content-security-policy" not in r.headers
    assert r.headers["content-security-policy-report-only"].endswith("; report-uri /csp-reports")
    r = await get(make_app(csp=CspMode.OFF), "/plain", GPC)
    assert "content-security-policy" not in r.headers


async def test_scripts_get_it_too_so_workers_cannot_reach_a_collector() -> None:
    assert "content-security-policy" in (await get(make_app(), "/worker.js", GPC)).headers
    assert "content-security-policy" not in (await get(make_app(), "/data", GPC)).headers


@pytest.mark.parametrize(
    "source",
    ["*", "https:", "http:", "https://*.google.com", "*.mixpanel.com", "https://*.com",
     "www.google-analytics.com", "https://api-in.mixpanel.com", "https://x.sc.omtrdc.net:443/b/",
     "bad;source"],
)  # fmt: skip
def test_configured_sources_that_reach_a_collector_are_refused(source: str) -> None:
    with pytest.raises(PolicyError):
        AnalyticsConfig(csp_allow=[source])


def test_first_party_collectors_are_left_out_too() -> None:
    AnalyticsConfig(csp_allow=["https://*.shop.example"])
    with pytest.raises(PolicyError, match="metrics"):
        AnalyticsConfig(
            csp_allow=["https://*.shop.example"], first_party_collectors=["metrics.shop.example"]
        )


@pytest.mark.parametrize(
    ("source", "covers"),
    [
        ("'self'", False),
        ("'unsafe-inline'", False),
        ("data:", False),
        ("blob:", False),
        ("wss:", False),
        ("https://cdn.shop.example", False),
        ("https://*.shop.example", False),
        ("https://maps.google.com", False),
        ("https://analytics.google.com", True),
        ("https://*.analytics.google.com", True),
        ("https://*.google.com", True),
        ("google-analytics.com", True),
        ("wss://www.google-analytics.com", False),
        ("https://*.g.doubleclick.net", True),
        ("https://*.doubleclick.net", True),
    ],
)
def test_source_covers(source: str, covers: bool) -> None:
    assert source_covers(source, COLLECTOR_HOSTS) is covers


def test_every_collector_url_is_refused_by_the_default_policy() -> None:
    config = AnalyticsConfig()
    mw = AnalyticsOptOutMiddleware(lambda s, r, c: None, config=config)  # type: ignore[arg-type,return-value]
    added = mw.csp_for([APP_CSP.encode()]).decode()
    for url in COLLECTOR_SAMPLES:
        host = httpx.URL(url).host
        for directive in ("script-src", "connect-src", "img-src"):
            assert not any(source_covers(s, (host,)) for s in sources(added, directive)), (
                url,
                directive,
            )
