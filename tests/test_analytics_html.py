"""HTML for an opted-out person: privguard's script first in <head>, no analytics loaders
(C22). Real pages through ``AnalyticsOptOutMiddleware``: whole, gzip-compressed, and
streamed in pieces that split ``<head>`` and the loaders."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from privguard import AnalyticsConfig, AnalyticsOptOutMiddleware
from privguard._analytics._collectors import LOADERS
from privguard._analytics._html import REMOVED_MARK, HtmlRewriter, find_ids

GA4 = "G-SHOP12345"
UA = "UA-1234567-1"
FOUND_ONLY_IN_PAGE = "G-INPAGE999"
MIXPANEL_TOKEN = "mixpanelToken123"

#: A shop page with every analytics tag the issue names.
PAGE = f"""<!DOCTYPE html>
<!-- a <head> in a comment is not the head -->
<html lang="en">
<head data-x="1">
<meta charset="utf-8">
<title>Shop &lt;script&gt; <script>not a script</script></title>
<meta http-equiv="Content-Security-Policy" content="img-src *">
<!-- Google tag (gtag.js) -->
<script async src="https://www.googletagmanager.com/gtag/js?id={FOUND_ONLY_IN_PAGE}"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  gtag('config', '{FOUND_ONLY_IN_PAGE}');
</script>
<!-- Google Tag Manager -->
<script>(function(w,d,s,l,i){{w[l]=w[l]||[];w[l].push({{'gtm.start':
new Date().getTime(),event:'gtm.js'}});var f=d.getElementsByTagName(s)[0],
j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=
'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);
}})(window,document,'script','dataLayer','GTM-ABC1234');</script>
<!-- Universal Analytics -->
<script>
(function(i,s,o,g,r,a,m){{i['GoogleAnalyticsObject']=r;i[r]=i[r]||function(){{
(i[r].q=i[r].q||[]).push(arguments)}},i[r].l=1*new Date();a=s.createElement(o),
m=s.getElementsByTagName(o)[0];a.async=1;a.src=g;m.parentNode.insertBefore(a,m)
}})(window,document,'script','https://www.google-analytics.com/analytics.js','ga');
ga('create', '{UA}', 'auto');
</script>
<script src="/js/AppMeasurement.min.js"></script>
<script>!function(n,o){{o.forEach(function(o){{n[o]||((n.__alloyNS=n.__alloyNS||[]).push(o),
n[o]=function(){{var u=arguments;return new Promise(function(i,l){{n[o].q.push([i,l,u])}})}},
n[o].q=[])}})}}(window,["alloy"]);</script>
<script src="https://cdn1.adoberesources.net/alloy/2.19.1/alloy.min.js" async></script>
<script type="text/javascript">(function(f,b){{if(!b.__SV){{var e,g,i,h;window.mixpanel=b;
b._i=[];b.init=function(e,f,c){{}};var MIXPANEL_CUSTOM_LIB_URL=
"https://cdn.mxpnl.com/libs/mixpanel-2-latest.min.js";b.__SV=1.2}}}})(document,window.mixpanel||[]);
mixpanel.init("{MIXPANEL_TOKEN}");</script>
<script type="text/plain" data-category="analytics"
  data-src="https://www.googletagmanager.com/gtag/js?id={FOUND_ONLY_IN_PAGE}"></script>
<script type="application/ld+json">{{"url": "https://www.googletagmanager.com/gtag/js"}}</script>
<script src="/js/app.js"></script>
</head>
<body>
<h1>Welcome</h1>
<p data-note="<script src=https://www.googletagmanager.com/gtag/js>">text</p>
<script>gtag('event', 'view_item');</script>
</body>
</html>
"""

LOADER_URLS = (
    "googletagmanager.com/gtag/js?id=",
    "googletagmanager.com/gtm.js",
    "google-analytics.com/analytics.js",
    "AppMeasurement.min.js",
    "alloy.min.js",
    "cdn.mxpnl.com/libs/mixpanel",
)
KEPT = (
    "gtag('config', 'G-INPAGE999');",
    "function gtag(){dataLayer.push(arguments);}",
    "__alloyNS",  # the Web SDK's base code only queues: it stays
    '<script src="/js/app.js"></script>',
    '<script type="application/ld+json">',
    "gtag('event', 'view_item');",
    "<title>Shop &lt;script&gt; <script>not a script</script></title>",
    'data-note="<script src=https://www.googletagmanager.com/gtag/js>"',
)

CONFIG = AnalyticsConfig(measurement_ids=[GA4], mixpanel_tokens=[MIXPANEL_TOKEN])
GPC = {"sec-gpc": "1"}


def chunks(text: str, sizes: list[int]) -> Iterator[bytes]:
    data = text.encode()
    i = 0
    k = 0
    while i < len(data):
        size = sizes[k % len(sizes)]
        yield data[i : i + size]
        i += size
        k += 1


async def page(request: Request) -> Response:
    return HTMLResponse(
        PAGE, headers={"etag": '"v1"', "cache-control": "public, max-age=600, s-maxage=3600"}
    )


async def streamed(request: Request) -> Response:
    sizes = [int(s) for s in request.query_params.get("sizes", "7").split(",")]

    async def body() -> AsyncIterator[bytes]:
        for piece in chunks(PAGE, sizes):
            yield piece

    return StreamingResponse(body(), media_type="text/html; charset=utf-8")


NONCE = "r4nd0mN0nce"


async def nonce_page(request: Request) -> Response:
    return HTMLResponse(
        PAGE,
        headers={
            "content-security-policy": "script-src 'self' 'nonce-r4nd0mN0nce' 'strict-dynamic'"
        },
    )


async def data(request: Request) -> Response:
    return JSONResponse({"ok": True, "tag": "https://www.googletagmanager.com/gtag/js"})


async def not_modified(request: Request) -> Response:
    return Response(status_code=304, headers={"content-type": "text/html"})


async def echo_encoding(request: Request) -> Response:
    return JSONResponse({"accept-encoding": request.headers.get("accept-encoding")})


collector_calls: list[str] = []


async def collector(request: Request) -> Response:
    collector_calls.append(request.url.path)
    return Response(status_code=204)


ROUTES = [
    Route("/", page, methods=["GET", "HEAD"]),
    Route("/streamed", streamed),
    Route("/nonce", nonce_page),
    Route("/data", data),
    Route("/304", not_modified),
    Route("/echo", echo_encoding),
    Route("/g/collect", collector, methods=["GET", "POST"]),
    Route("/metrics/b/ss/rsid/1/JS-2.3.0/s1", collector, methods=["GET", "POST"]),
    Route("/mp-proxy/track", collector, methods=["GET", "POST"]),
]


def make_app(config: AnalyticsConfig = CONFIG, *, gzip_inside: bool = False) -> Starlette:
    middleware = [Middleware(AnalyticsOptOutMiddleware, config=config)]
    if gzip_inside:
        # The app compresses; privguard, outside it, undoes that to rewrite.
        middleware.append(Middleware(GZipMiddleware, minimum_size=10))
    return Starlette(routes=ROUTES, middleware=middleware)


async def get(app: Starlette, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.example"
    ) as client:
        return await client.request(kwargs.pop("method", "GET"), path, **kwargs)


def head_of(html: str) -> str:
    return html[: html.index("</head>")]


def assert_rewritten(html: str, *, nonce: str | None = None) -> None:
    # privguard's script is the first script in the document, inside <head>, after the
    # charset declaration.
    first = html.index("<script")
    head_open = re.search(r"<head[^>]*>", html)
    assert head_open is not None and head_open.end() < first
    assert html.index('<meta charset="utf-8">') < first
    assert first < html.index('http-equiv="Content-Security-Policy"')
    script = html[first : html.index("</script>", first)]
    if nonce is not None:
        assert script.startswith(f'<script nonce="{nonce}">')
    for ga_id in (GA4,):
        assert f'"{ga_id}"' in script
    assert "'ga-disable-'+i" in script
    assert "_gaUserPrefs" in script and "ioo:function(){return !0}" in script
    assert "w.gtag('consent','default',{ad_storage:'denied',analytics_storage:'denied'," in script
    assert "ad_user_data:'denied',ad_personalization:'denied'" in script
    assert f'"{MIXPANEL_TOKEN}"' in script and "__mp_opt_in_out_" in script
    # Ids found in the page are disabled before the script that names them runs.
    for ga_id in (FOUND_ONLY_IN_PAGE, UA):
        disabled = html.index(f'"{ga_id}"')
        used = html.find(f"'{ga_id}'")  # the UA snippet loads analytics.js: removed
        assert used < 0 or disabled < used
    for url in LOADER_URLS:
        assert url not in html.replace('"https://www.googletagmanager.com/gtag/js"}', ""), url
    for kept in KEPT:
        assert kept in html, kept
    assert html.count(REMOVED_MARK) == 7


# -- whole pages -----------------------------------------------------------------------------
async def test_opted_out_page_gets_the_head_script_first_and_no_loaders() -> None:
    r = await get(make_app(), "/", headers=GPC)
    assert r.status_code == 200
    assert_rewritten(r.text)
    # Every id in a whole page goes into the head script itself.
    script = r.text[r.text.index("<script") : r.text.index("</script>")]
    assert f'"{FOUND_ONLY_IN_PAGE}"' in script and f'"{UA}"' in script
    assert int(r.headers["content-length"]) == len(r.content)
    assert "etag" not in r.headers  # it described the original body
    assert r.headers["vary"] == "Cookie, Sec-GPC"
    # No shared cache may keep this person's page for someone else; nothing is loosened.
    assert r.headers.get_list("cache-control") == ["private, max-age=600"]


async def test_not_opted_out_page_is_untouched_but_varies() -> None:
    r = await get(make_app(), "/", headers={"sec-gpc": "0"})
    assert r.text == PAGE
    assert r.headers["etag"] == '"v1"'
    assert r.headers["cache-control"] == "public, max-age=600, s-maxage=3600"
    assert r.headers["vary"] == "Cookie, Sec-GPC"
    assert "content-security-policy" not in r.headers


async def test_gzip_compressed_page() -> None:
    r = await get(make_app(gzip_inside=True), "/", headers={**GPC, "accept-encoding": "gzip"})
    assert "content-encoding" not in r.headers  # sent as identity after the rewrite
    assert_rewritten(r.text)
    # Not opted out: the app's compression is kept.
    r = await get(make_app(gzip_inside=True), "/", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.text == PAGE


async def test_app_never_sees_an_encoding_privguard_cannot_undo() -> None:
    r = await get(make_app(), "/echo", headers={**GPC, "accept-encoding": "br, gzip;q=0.8, zstd"})
    assert r.json()["accept-encoding"] == "gzip;q=0.8"
    r = await get(make_app(), "/echo", headers={**GPC, "accept-encoding": "br"})
    assert r.json()["accept-encoding"] is None
    r = await get(make_app(), "/echo", headers={"accept-encoding": "br"})
    assert r.json()["accept-encoding"] == "br"


@pytest.mark.parametrize("sizes", ["1", "2", "3", "5", "7", "13", "64", "1,500", "4096"])
async def test_streamed_page_split_anywhere(sizes: str) -> None:
    r = await get(make_app(), f"/streamed?sizes={sizes}", headers=GPC)
    assert "content-length" not in r.headers
    assert_rewritten(r.text)


async def test_streamed_outputs_are_the_same_whatever_the_split() -> None:
    outs = {(await get(make_app(), f"/streamed?sizes={s}", headers=GPC)).text for s in (1, 3, 17)}
    assert len(outs) == 1


async def test_streamed_and_gzip_compressed_page() -> None:
    r = await get(
        make_app(gzip_inside=True), "/streamed?sizes=11", headers={**GPC, "accept-encoding": "gzip"}
    )
    assert "content-encoding" not in r.headers
    assert_rewritten(r.text)


async def test_the_head_script_reuses_the_apps_nonce() -> None:
    r = await get(make_app(), "/nonce", headers=GPC)
    assert_rewritten(r.text, nonce="r4nd0mN0nce")
    assert r.text.count('<script nonce="r4nd0mN0nce">') == 1  # whole page: one script


async def test_head_requests_and_304_pass() -> None:
    r = await get(make_app(), "/", method="HEAD", headers=GPC)
    assert r.status_code == 200 and r.content == b""
    assert "content-length" not in r.headers
    assert "content-security-policy" in r.headers
    r = await get(make_app(), "/304", headers=GPC)
    assert r.status_code == 304


async def test_other_media_types_pass_unread() -> None:
    r = await get(make_app(), "/data", headers=GPC)
    assert r.json() == {"ok": True, "tag": "https://www.googletagmanager.com/gtag/js"}
    assert "content-security-policy" not in r.headers


async def test_configured_loaders_only() -> None:
    config = AnalyticsConfig(remove_loaders={"gtm"}, extra_loaders=[r"/js/app\.js"])
    r = await get(make_app(config), "/", headers=GPC)
    assert "googletagmanager.com/gtm.js" not in r.text
    assert "googletagmanager.com/gtag/js?id=" in r.text
    assert "/js/app.js" not in r.text


async def test_without_head_script() -> None:
    r = await get(make_app(AnalyticsConfig(inject_head_script=False)), "/", headers=GPC)
    assert "_gaUserPrefs" not in r.text
    assert "googletagmanager.com/gtm.js" not in r.text


# -- first-party collector paths -------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/g/collect?v=2&tid=G-SHOP12345&cid=1.2&en=page_view",
        "/metrics/b/ss/rsid/1/JS-2.3.0/s1?AQB=1&pageName=home&AQE=1",
        "/mp-proxy/track",
    ],
)
async def test_first_party_collector_paths_are_answered_for_an_opted_out_person(
    path: str,
) -> None:
    config = AnalyticsConfig(collector_paths=["/mp-proxy/"])
    collector_calls.clear()
    r = await get(make_app(config), path, method="POST", headers=GPC)
    assert r.status_code == 204 and collector_calls == []
    r = await get(make_app(config), path, method="POST")
    assert collector_calls == [path.split("?")[0]]


# -- the rewriter on its own ------------------------------------------------------------------
LOADER_PATTERNS = tuple(LOADERS.values())


def rewrite(html: str, **kwargs: Any) -> str:
    return HtmlRewriter(loaders=LOADER_PATTERNS, **kwargs).rewrite(html.encode()).decode()


def test_no_head_element_the_script_still_comes_first() -> None:
    out = rewrite("<!doctype html><p>hi</p><script>gtag('config','G-ABCDEF12')</script>")
    assert out.startswith("<!doctype html><script>")
    assert out.index("_gaUserPrefs") < out.index("<p>")


def test_script_before_head_and_bom() -> None:
    out = rewrite("\ufeff<html><script src='/a.js'></script><head></head></html>")
    assert out.index("_gaUserPrefs") < out.index("/a.js")


def test_a_long_preamble_is_bounded() -> None:
    preamble = "<!--" + "x" * 5000 + "-->"
    rw = HtmlRewriter(loaders=LOADER_PATTERNS, max_head_scan=1000)
    fed = 0
    out = b""
    for piece in chunks(preamble + "<html><head><title>t</title></head></html>", [100]):
        out += rw.feed(piece)
        fed += len(piece)
        if out:
            break
    assert fed <= 1100 and b"_gaUserPrefs" in out  # it did not wait for the <head>


def test_a_script_too_long_to_hold_passes_unread() -> None:
    big = (
        "<html><head></head><script>"
        + "var a=1;" * 200
        + "</script>"
        + ("<script src='https://www.googletagmanager.com/gtag/js'></script>")
    )
    rw = HtmlRewriter(loaders=LOADER_PATTERNS, max_script=256)
    out = b"".join(rw.feed(p) for p in chunks(big, [50])) + rw.finish()
    text = out.decode()
    assert "var a=1;" * 200 in text
    assert "googletagmanager.com/gtag/js" not in text  # the next one is read again


def test_case_and_attributes_of_script_tags() -> None:
    out = rewrite(
        "<head></head><SCRIPT ASYNC SRC='https://WWW.GOOGLETAGMANAGER.COM/gtag/js?id=G-ABCDEF12'>"
        '</SCRIPT><script data-src="https://www.googletagmanager.com/gtm.js?id=GTM-X" '
        'type="text/plain"></script><script type="module">import "/m.js"</script>'
    )
    assert "GOOGLETAGMANAGER" not in out and "gtm.js" not in out
    assert 'import "/m.js"' in out


def test_find_ids() -> None:
    assert find_ids("G-ABCDEF12 UA-123456-7 G-ABCDEF12 XG-NOTTHIS1 UA-12-1 G-abc") == [
        "G-ABCDEF12",
        "UA-123456-7",
    ]


def test_gzip_helper_round_trip() -> None:
    # The test pages really are compressible (GZipMiddleware's minimum size is met).
    assert len(gzip.compress(PAGE.encode())) < len(PAGE)


def test_cache_control_is_made_private_never_looser() -> None:
    from privguard._analytics._middleware import _private

    assert _private([]) == b"private"
    assert _private([b"public, s-maxage=60, max-age=5"]) == b"private, max-age=5"
    assert _private([b"no-store", b"private, no-cache"]) == b"private, no-store, no-cache"


async def test_corrupt_gzip_html_is_not_delivered_half_rewritten() -> None:
    async def broken(request: Request) -> Response:
        return Response(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 8,  # a bad deflate block
            media_type="text/html",
            headers={"content-encoding": "gzip"},
        )

    app = Starlette(
        routes=[Route("/", broken)],
        middleware=[Middleware(AnalyticsOptOutMiddleware, config=CONFIG)],
    )
    r = await get(app, "/", headers=GPC)
    assert r.status_code == 502
    assert "content-encoding" not in r.headers


async def test_a_file_sent_by_path_is_read_and_rewritten(tmp_path: Any) -> None:
    from starlette.responses import FileResponse

    page_file = tmp_path / "page.html"
    page_file.write_text(PAGE)
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await FileResponse(page_file, media_type="text/html")(scope, receive, send)

    requested = False

    async def receive() -> Any:
        nonlocal requested
        if requested:  # then wait, as a server does, until the response is done
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"host", b"shop.example"), (b"sec-gpc", b"1")],
        "extensions": {"http.response.pathsend": {}},
    }
    await AnalyticsOptOutMiddleware(app, config=CONFIG)(scope, receive, send)
    assert all(m["type"] != "http.response.pathsend" for m in sent)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert_rewritten(body.decode())
