"""In a real browser: an opted-out visitor sends nothing to Google Analytics, Adobe or
Mixpanel, whichever way the tag arrives; a visitor who did not opt out does (C22).

The shop runs on a real server (uvicorn, 127.0.0.1, a free port) behind
``AnalyticsOptOutMiddleware``. Its page has (a) an inline gtag.js tag, Adobe's
AppMeasurement and the Mixpanel snippet, (b) a tag-manager-style script that injects
gtag.js after load, and (c) ``sendBeacon`` calls on unload, to a first-party collector
path and to Google. The vendors' scripts are stubbed with tiny fakes that really send a
hit and, unlike the real ones, ignore every opt-out switch (the worst case).

Every request the browser makes is recorded three ways: ``page.route`` sees what the
page fetches (outside hosts are answered by fakes or aborted, so nothing leaves), a
recording proxy sees whatever escapes routing (beacons sent while a page unloads), and
the server records what reaches its first-party collector endpoint.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from privguard import AnalyticsConfig, AnalyticsOptOutMiddleware, analytics_app

pytestmark = pytest.mark.browser

GA_ID = "G-BROWSER01"
LATE_ID = "G-LATE00001"

PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>
<script async src="https://www.googletagmanager.com/gtag/js?id={GA_ID}"></script>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}
gtag('js',new Date());gtag('config','{GA_ID}');</script>
<script async src="https://assets.adobedtm.com/shop/AppMeasurement.min.js"></script>
<script>(function(f,b){{if(!b.__SV){{var s=f.createElement('script');
s.src='https://cdn.mxpnl.com/libs/mixpanel-2-latest.min.js';f.head.appendChild(s);
window.mixpanel=b;b.__SV=1.2}}}})(document,window.mixpanel||[]);</script>
<script src="/static/tag-manager.js"></script>
</head><body><h1>Shop</h1>
<script>
window.addEventListener('pagehide', function () {{
  navigator.sendBeacon('/g/collect?v=2&tid={GA_ID}&cid=555.1&en=unload_first_party');
  navigator.sendBeacon('https://www.google-analytics.com/g/collect?v=2&tid={GA_ID}&en=unload');
}});
</script>
</body></html>"""

# (b): a tag manager injects gtag.js after the page has loaded.
TAG_MANAGER = f"""window.addEventListener('load', function () {{
  var s = document.createElement('script');
  s.src = 'https://www.googletagmanager.com/gtag/js?id={LATE_ID}';
  document.head.appendChild(s);
}});"""

OPT_OUT_PAGE = """<!doctype html><html><head><title>Privacy</title></head><body>
<form method="post" action="/privacy/analytics/opt-out">
<input type="hidden" name="next" value="/"><button id="opt-out">Opt out of analytics</button>
</form></body></html>"""


def fake_gtag(measurement_id: str) -> str:
    # Sets _ga, sends its hit three ways, and ignores ga-disable and _gaUserPrefs on purpose.
    return f"""(function () {{
  document.cookie = '_ga=GA1.1.555.1; path=/; max-age=' + 2 * 365 * 86400;
  var u = 'https://www.google-analytics.com/g/collect?v=2&tid={measurement_id}'
        + '&cid=555.1&en=page_view&dl=' + encodeURIComponent(location.href);
  navigator.sendBeacon(u + '&via=beacon');
  fetch(u + '&via=fetch', {{method: 'POST', mode: 'no-cors'}}).catch(function () {{}});
  new Image().src = u + '&via=img';
}})();"""


FAKE_APPMEASUREMENT = """new Image().src =
  'https://shop.sc.omtrdc.net/b/ss/shoprsid/1/JS-2.3.0/s1?AQB=1&pageName=home&AQE=1';"""
FAKE_MIXPANEL = """navigator.sendBeacon('https://api-js.mixpanel.com/track/?data='
  + btoa(JSON.stringify([{event: 'page', properties: {token: 'tok0123456789'}}])));"""


# -- the shop ----------------------------------------------------------------------------------
@dataclass
class Shop:
    base: str
    first_party_hits: list[str] = field(default_factory=list)


def make_app(hits: list[str]) -> Starlette:
    async def home(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def privacy_page(request: Request) -> Response:
        return HTMLResponse(OPT_OUT_PAGE)

    async def bye(request: Request) -> Response:
        return HTMLResponse("<!doctype html><p>bye</p>")

    async def tag_manager(request: Request) -> Response:
        return Response(TAG_MANAGER, media_type="text/javascript")

    async def collector(request: Request) -> Response:
        # A first-party proxy to Google Analytics: what reaches it would be forwarded.
        hits.append(str(request.url))
        return Response(status_code=204)

    config = AnalyticsConfig(measurement_ids=[GA_ID], cookie_secure=False)
    return Starlette(
        routes=[
            Route("/", home),
            Route("/privacy", privacy_page),
            Route("/bye", bye),
            Route("/static/tag-manager.js", tag_manager),
            Route("/g/collect", collector, methods=["GET", "POST"]),
            Mount("/privacy/analytics", app=analytics_app(None, config)),
        ],
        middleware=[Middleware(AnalyticsOptOutMiddleware, config=config)],
    )


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    hits: list[str] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app(hits), log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:  # pragma: no cover - a broken machine
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Shop(f"http://127.0.0.1:{port}", hits)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- what leaves the browser -------------------------------------------------------------------
class _RecordingProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(8192).decode("latin-1").strip()
        if line:
            self.server.seen.append(line)  # type: ignore[attr-defined]
        # Refused: nothing is ever forwarded to the outside.
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )


@pytest.fixture(scope="module")
def proxy() -> Iterator[_RecordingProxy]:
    server = _RecordingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


ANALYTICS = re.compile(
    r"google-analytics\.com|/g/collect|/b/ss/|omtrdc\.net|mixpanel\.com|mxpnl\.com"
    r"|googletagmanager\.com|adobedtm\.com"
)
COLLECTORS = re.compile(r"google-analytics\.com|/b/ss/|mixpanel\.com/track")


@dataclass
class Visit:
    page: Any
    routed: list[str]
    proxied: list[str]
    first_party: list[str]
    failed: list[tuple[str, str]]

    def reached(self) -> list[str]:
        """Every analytics request that left the page: to a route, the proxy or our server."""
        return [u for u in [*self.routed, *self.proxied, *self.first_party] if ANALYTICS.search(u)]

    def collector_hits(self) -> list[str]:
        return [u for u in self.reached() if COLLECTORS.search(u)]

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            self.page.wait_for_timeout(50)  # lets Playwright deliver events meanwhile
        return True

    def leave(self, shop: Shop) -> None:
        """Navigate away so the page's unload beacons fire, and give them time."""
        self.page.goto(shop.base + "/bye")
        self.page.wait_for_timeout(600)


def _fake(url: str) -> str | None:
    gtag = re.search(r"googletagmanager\.com/gtag/js\?id=([\w-]+)", url)
    if gtag:
        return fake_gtag(gtag.group(1))
    if "AppMeasurement" in url:
        return FAKE_APPMEASUREMENT
    if "cdn.mxpnl.com/libs/mixpanel" in url:
        return FAKE_MIXPANEL
    return None


@pytest.fixture
def visit(browser: Any, shop: Shop, proxy: _RecordingProxy) -> Iterator[Callable[..., Visit]]:
    contexts: list[Any] = []

    def open_page(*, using: Any = None, **context_options: Any) -> Visit:
        context = (using or browser).new_context(
            proxy={"server": f"http://127.0.0.1:{proxy.server_address[1]}", "bypass": "127.0.0.1"},
            **context_options,
        )
        contexts.append(context)
        page = context.new_page()
        proxy.seen.clear()
        shop.first_party_hits.clear()
        v = Visit(page, [], proxy.seen, shop.first_party_hits, [])

        def route(r: Any) -> None:
            url = r.request.url
            if url.startswith(shop.base):
                r.continue_()
                return
            v.routed.append(url)
            body = _fake(url)
            if body is not None:
                r.fulfill(status=200, content_type="text/javascript", body=body)
            elif COLLECTORS.search(url):
                r.fulfill(status=204)
            else:
                r.abort()

        context.route("**/*", route)
        context.on("requestfailed", lambda req: v.failed.append((req.url, req.failure or "")))
        return v

    yield open_page
    for context in contexts:
        context.close()


# -- the tests ----------------------------------------------------------------------------------
def test_a_visitor_who_did_not_opt_out_is_tracked(visit: Callable[..., Visit], shop: Shop) -> None:
    # Without this the other tests could pass with a broken harness: every tag fires here.
    v = visit()
    v.page.goto(shop.base + "/")

    def all_hits() -> bool:
        hits = " ".join(v.collector_hits())
        return all(s in hits for s in (f"tid={GA_ID}", f"tid={LATE_ID}", "/b/ss/", "mixpanel"))

    assert v.wait_for(all_hits), v.reached()
    v.leave(shop)
    assert v.wait_for(lambda: any("unload_first_party" in u for u in v.first_party))
    # The beacon to Google sent while the page unloads escapes routing: the proxy saw it.
    assert v.wait_for(lambda: any("google-analytics.com" in u for u in v.proxied))
    assert v.page.evaluate("window['ga-disable-" + GA_ID + "']") is None
    assert "_ga" in {c["name"] for c in v.page.context.cookies()}


def test_c22_gpc_visitor_sends_nothing_to_any_collector(
    visit: Callable[..., Visit], shop: Shop, gpc_browser: Any
) -> None:
    v = visit(using=gpc_browser)
    # Analytics cookies from before: expired by the first response (C23).
    v.page.context.add_cookies(
        [{"name": n, "value": "GA1.1.1.1", "url": shop.base} for n in ("_ga", "_gid")]
    )
    v.page.goto(shop.base + "/")
    real_gpc = v.page.evaluate("navigator.globalPrivacyControl") is True
    if not real_gpc:  # pragma: no cover - a Chromium older than its own GPC support
        # Send the header as a GPC browser would. Playwright's headers do not reach
        # beacons sent while a page unloads, so first-party unload beacons are not judged.
        v = visit(extra_http_headers={"Sec-GPC": "1"})
        v.page.goto(shop.base + "/")
    v.page.wait_for_load_state("load")
    v.page.wait_for_timeout(600)  # time for the tag manager's late tag and the fakes
    state = v.page.evaluate(
        """() => ({
            disabled: window['ga-disable-"""
        + GA_ID
        + """'],
            ioo: window._gaUserPrefs && window._gaUserPrefs.ioo(),
            consent: (window.dataLayer || []).some(a => a[0] === 'consent'
                && a[1] === 'default' && a[2].analytics_storage === 'denied'),
        })"""
    )
    assert state == {"disabled": True, "ioo": True, "consent": True}
    v.leave(shop)
    assert v.collector_hits() == []
    assert [u for u in v.reached() if real_gpc or not u.startswith(shop.base)] == []
    # The tag manager's late tag was stopped by the added Content-Security-Policy.
    assert any("gtag/js?id=" + LATE_ID in url and why == "csp" for url, why in v.failed)
    assert not {"_ga", "_gid"} & {c["name"] for c in v.page.context.cookies()}


def test_opt_out_by_form_then_back_in_with_the_csrf_token(
    visit: Callable[..., Visit], shop: Shop
) -> None:
    v = visit()
    v.page.goto(shop.base + "/privacy")
    v.page.click("#opt-out")  # a plain form post: no script, no account
    v.page.wait_for_url(shop.base + "/")
    v.routed.clear()
    v.first_party.clear()
    v.page.wait_for_timeout(600)
    v.leave(shop)
    assert v.collector_hits() == [] and v.reached() == []

    # Opting back in from the site's own page, as its script would.
    answer = v.page.evaluate(
        """async () => {
            const status = await (await fetch('/privacy/analytics/status')).json();
            const r = await fetch('/privacy/analytics/opt-in', {
                method: 'POST', headers: {'X-CSRF-Token': status.csrf_token}});
            return [status.signal, r.status];
        }"""
    )
    assert answer == ["cookie", 200]
    v.page.goto(shop.base + "/")
    assert v.wait_for(lambda: any(f"tid={GA_ID}" in u for u in v.collector_hits()))
