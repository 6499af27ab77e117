"""Server-sent events through PrivacyMiddleware, read event by event as a client reads them.

The inputs are those an independent review found leaking when each line was redacted on
its own: JSON spread over several data lines, CR-only line endings, a leading byte order
mark, and the event terminator lost after a CR; and, from a second review, data that is
a JSON string with escapes, or an HTML fragment with character references.
"""

from __future__ import annotations

import asyncio
import html
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from privguard import Categories, Purposes, Subject
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware

ALICE = Subject.customer("u-alice", tenant="acme")


def sse_app(parts: list[bytes]) -> Starlette:
    @privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.CARD])
    async def events(request: Request) -> Response:
        async def gen():  # type: ignore[no-untyped-def]
            for part in parts:
                yield part

        return StreamingResponse(gen(), media_type="text/event-stream")

    return guarded(Route("/events", events))


def guarded(route: Route) -> Starlette:
    """An app of one route behind PrivacyMiddleware, every request made by ALICE."""
    return Starlette(
        routes=[route],
        middleware=[
            Middleware(PrivacyMiddleware, guard=Privguard(), subject_resolver=lambda s: ALICE)
        ],
    )


async def get_sent(body: bytes, media_type: str) -> httpx.Response:
    """What a client gets for an undeclared route that sends ``body`` as ``media_type``."""

    async def endpoint(request: Request) -> Response:
        return Response(body, media_type=media_type)

    transport = httpx.ASGITransport(app=guarded(Route("/r", endpoint)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/r")


async def fetch(parts: list[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=sse_app(parts))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/events")


def split_everywhere(body: bytes) -> list[list[bytes]]:
    return [[body]] + [[body[:i], body[i:]] for i in range(1, len(body))]


LEAKS = [
    # (a) a JSON document pretty-printed over two data lines
    b'data: {"first_name": "Jane",\ndata:  "password": "hunter2", "dob": "1990-01-02"}\n\n',
    # (b) CR-only line endings
    b'data: {"password": "hunter2"}\r\rdata: {"first_name": "Jane"}\r\r',
    # (c) a byte order mark before the first field
    b'\xef\xbb\xbfdata: {"password": "hunter2", "first_name": "Jane"}\n\n',
    # CRLF, with an e-mail and a card number in text data
    b"event: msg\r\ndata: write to jane@example.com\r\ndata: card 4111 1111 1111 1111\r\n\r\n",
]


@pytest.mark.parametrize("body", LEAKS)
async def test_no_value_leaks_whatever_the_chunking(body: bytes) -> None:
    for parts in split_everywhere(body):
        response = await fetch(parts)
        assert response.status_code == 200
        for secret in (b"hunter2", b"Jane", b"1990-01-02", b"jane@", b"4111 1111 1111"):
            assert secret not in response.content, (parts, response.content)


async def test_the_event_terminator_survives_a_cr_line_ending() -> None:
    response = await fetch([b'data: {"email": "jane@example.com"}\r\r'])
    assert response.content.endswith(b"\r\r")
    assert b"jane@" not in response.content


async def test_events_keep_their_fields_and_order() -> None:
    body = b'id: 7\nevent: update\ndata: {"email": "jane@example.com", "n": 1}\n\ndata: [DONE]\n\n'
    response = await fetch([body])
    text = response.text
    assert text.startswith("id: 7\nevent: update\ndata: ")
    assert text.endswith("\n\ndata: [DONE]\n\n")
    assert '"n":1' in text.replace(" ", "")


async def test_data_that_opens_an_object_and_is_not_json_is_not_released() -> None:
    # A document cut short: its key-named values would pass the text detectors.
    body = b'data: {"password": "hunter2", "first_name": "Jane"\n\n'
    transport = httpx.ASGITransport(app=sse_app([b"data: ok\n\n", body]))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        try:
            response = await client.get("/events")
            content = response.content
        except Exception:  # the server aborts the stream: the client sees it break off
            content = b""
    assert b"hunter2" not in content
    assert b"Jane" not in content


async def test_svg_is_read_as_xml_not_passed_as_an_image() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><text>jane&#64;example.com</text></svg>'

    response = await get_sent(svg, "image/svg+xml")
    assert response.status_code == 200
    assert b"jane" not in response.content
    assert response.content.startswith(b"<svg")


@pytest.mark.parametrize(
    ("data", "redacted"),
    [
        # A JSON string: JSON.parse gives the address.
        (b'"jane\\u0040example.com"', b'"j***@example.com"'),
        # HTML fragments, as htmx's SSE extension swaps them into the page.
        (b"<p>jane&#64;example.com</p>", b"<p>j***@example.com</p>"),
        (b"<td>4111&nbsp;1111&nbsp;1111&nbsp;1111</td>", b"<td>**** **** **** 1111</td>"),
        (
            b"<a href=/pay?card=4111%201111%201111%201111 hx-boost>Pay</a>",
            b"<a href=/pay?card=****%20****%20****%201111 hx-boost>Pay</a>",
        ),
        (
            b"<script>u = 'jane\\x40example.com'</script>",
            b"<script>u = 'j***@example.com'</script>",
        ),
    ],
)
async def test_data_is_redacted_as_a_browser_would_read_it(data: bytes, redacted: bytes) -> None:
    response = await fetch([b"data: " + data + b"\n\n"])
    assert response.status_code == 200
    assert response.content == b"data: " + redacted + b"\n\n"


def escaped_text(value: str, data: st.DataObject) -> str:
    """``value`` with some characters as character references (HTML data) ..."""
    out = []
    for ch in value:
        how = data.draw(st.sampled_from(["plain", "decimal", "hex"]))
        out.append({"plain": ch, "decimal": f"&#{ord(ch)};", "hex": f"&#x{ord(ch):x};"}[how])
    return "".join(out)


def escaped_json(value: str, data: st.DataObject) -> str:
    """... or as a JSON string with some characters as \\uXXXX escapes (JSON data)."""
    out = []
    for ch in value:
        plain = json.dumps(ch)[1:-1]
        out.append(f"\\u{ord(ch):04x}" if data.draw(st.booleans()) else plain)
    return '"' + "".join(out) + '"'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    secret=st.sampled_from(["jane@example.com", "4111 1111 1111 1111", "5555-5555-5555-4444"]),
    how=st.sampled_from(["html", "json"]),
    context=st.sampled_from(["{}", "<p>{}</p>", "mail: {} now", "<b>x</b> {}"]),
)
def test_escaped_data_never_releases_the_value(
    data: st.DataObject, secret: str, how: str, context: str
) -> None:
    value = context.format(secret)
    written = escaped_text(value, data) if how == "html" else escaped_json(value, data)
    response = asyncio.run(fetch([f"data: {written}\n\n".encode()]))
    assert response.status_code == 200
    shown = response.text.removeprefix("data: ").removesuffix("\n\n")
    shown = html.unescape(shown) if how == "html" else json.loads(shown)
    assert secret not in shown
    assert secret.replace("-", " ") not in shown


async def test_html_reads_amount_spaces_as_plain_text_does() -> None:
    """Thin spaces group an amount's digits: no phone number in a page either."""
    page = "<p>Total: 06\u202f12\u202f34\u202f56\u202f78 €</p>".encode()

    response = await get_sent(page, "text/html; charset=utf-8")
    assert response.content == page
