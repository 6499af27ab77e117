"""Analytics cookies only for people who did not opt out (C23): the ones the request
carries are expired, and the app never sets one for an opted-out person."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from privguard import AnalyticsConfig, AnalyticsOptOutMiddleware
from privguard._analytics._cookies import CookieRules

ANALYTICS = {
    "_ga": "GA1.2.1234.5678",
    "_ga_SHOP12345": "GS1.1.1",
    "_gid": "GA1.2.9",
    "_gat_UA-1234567-1": "1",
    "s_cc": "true",
    "s_sq": "%5B%5BB%5D%5D",
    "AMCV_ABC123%40AdobeOrg": "x",
    "AMCVS_ABC123%40AdobeOrg": "1",
    "mp_0123456789abcdef_mixpanel": "%7B%7D",
}
OTHERS = {"session": "s3ss10n", "__mp_opt_in_out_0123456789abcdef": "0", "gallery": "1"}


async def page(request: Request) -> Response:
    response = HTMLResponse("<html><head></head></html>")
    response.set_cookie("_ga", "GA1.2.999.111", max_age=63072000, domain="shop.example")
    response.set_cookie("_gid", "", max_age=0)  # the app deleting one: kept
    response.set_cookie("session", "new")
    return response


def make_app(**config: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", page)],
        middleware=[Middleware(AnalyticsOptOutMiddleware, config=AnalyticsConfig(**config))],
    )


async def get(
    app: Starlette, *, host: str = "www.shop.example", gpc: bool = True, scheme: str = "https"
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"{scheme}://{host}"
    ) as client:
        cookie = "; ".join(f"{k}={v}" for k, v in {**ANALYTICS, **OTHERS}.items())
        headers = {"cookie": cookie}
        if gpc:
            headers["sec-gpc"] = "1"
        return await client.get("/", headers=headers)


def set_cookies(r: httpx.Response) -> list[str]:
    return r.headers.get_list("set-cookie")


def expired(r: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in set_cookies(r):
        if "Max-Age=0" in value and "Expires=Thu, 01 Jan 1970" in value:
            name = value.split("=", 1)[0]
            domain = next(
                (p.strip()[7:] for p in value.split(";") if p.strip().startswith("Domain=")), ""
            )
            out.setdefault(name, []).append(domain)
    return out


async def test_c23_every_analytics_cookie_is_expired_for_host_and_parent_domains() -> None:
    r = await get(make_app(cookie_domains=[".shop.example"]))
    got = expired(r)
    assert set(got) == set(ANALYTICS)
    for domains in got.values():
        assert sorted(domains) == ["", "shop.example", "www.shop.example"]
    for value in set_cookies(r):
        if "Max-Age=0; Expires" in value:
            assert "Path=/" in value and "Secure" in value


async def test_without_parent_domains_and_on_plain_http() -> None:
    r = await get(make_app(), scheme="http")
    got = expired(r)
    assert sorted(got["_ga"]) == ["", "www.shop.example"]
    assert not any("Secure" in v for v in set_cookies(r) if "Max-Age=0; Expires" in v)


async def test_c23_the_app_does_not_set_an_analytics_cookie_for_an_opted_out_person() -> None:
    r = await get(make_app())
    values = set_cookies(r)
    assert not any(v.startswith("_ga=GA1.2.999.111") for v in values)
    assert any(v.startswith("session=new") for v in values)
    assert any(v.startswith('_gid=""') or v.startswith("_gid=;") for v in values)


async def test_nothing_happens_to_cookies_of_people_who_did_not_opt_out() -> None:
    r = await get(make_app(), gpc=False)
    assert expired(r) == {}
    assert any(v.startswith("_ga=GA1.2.999.111") for v in set_cookies(r))


async def test_an_ip_host_gets_host_only_expiry() -> None:
    r = await get(make_app(), host="127.0.0.1:8000")
    assert set(expired(r)["_ga"]) == {""}


def test_names_that_are_not_cookie_tokens_are_never_written_back() -> None:
    rules = CookieRules(["_ga*"], [])
    assert rules.expiring({"_ga x": "1", "_ga,Domain=evil": "1"}, "shop.example", True) == []
    assert rules.expiring({}, "shop.example", True) == []


def test_deletion_or_setting() -> None:
    rules = CookieRules(["_ga"], [])
    assert rules.blocks(b"_ga=1; Path=/; Max-Age=100")
    assert not rules.blocks(b"_ga=; Max-Age=0")
    assert not rules.blocks(b"_ga=; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert rules.blocks(b"_ga=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT")
    assert not rules.blocks(b"_ga=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0")
    assert not rules.blocks(b"other=1")
