"""A gzip page cut short (or with junk after its end) is refused, not silently truncated.

For an opted-out person the analytics middleware undoes the compression to rewrite the
page; a body that ends before its gzip stream does used to go out as a 200 with part of
the page.
"""

from __future__ import annotations

import gzip

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privguard import AnalyticsConfig, AnalyticsOptOutMiddleware

PAGE = b"<!DOCTYPE html><html><head><title>t</title></head><body>" + b"x" * 2000 + b"</body></html>"
GPC = {"sec-gpc": "1"}


def app_sending(body: bytes) -> Starlette:
    async def page(request: Request) -> Response:
        return Response(body, media_type="text/html", headers={"content-encoding": "gzip"})

    config = AnalyticsConfig(measurement_ids=("G-TEST123",))
    return Starlette(
        routes=[Route("/", page)],
        middleware=[Middleware(AnalyticsOptOutMiddleware, config=config)],
    )


async def get(body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_sending(body))
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.example") as c:
        return await c.get("/", headers=GPC)


async def test_a_whole_gzip_page_is_rewritten() -> None:
    response = await get(gzip.compress(PAGE))
    assert response.status_code == 200
    assert response.text.endswith("</body></html>")


async def test_a_page_cut_short_is_refused() -> None:
    response = await get(gzip.compress(PAGE)[:-12])
    assert response.status_code == 502


async def test_junk_after_the_end_is_refused() -> None:
    response = await get(gzip.compress(PAGE) + b"junk")
    assert response.status_code == 502
