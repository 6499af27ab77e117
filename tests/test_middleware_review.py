"""PrivacyMiddleware: defects an independent review found, each driven over HTTP.

A raising subject resolver, gzip and deflate bodies that end early or hold more than one
member, form bodies and HTML / JavaScript bodies whose personal data is escaped.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import itertools
import json
import logging
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from privguard import Categories, Purposes, RedactionError, Subject
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware
from privguard.testing import assert_no_personal_data

ALICE = Subject.customer("u-alice", tenant="acme")
EMAIL = "jane@example.com"
PAN = "4111 1111 1111 1111"
PROBLEM = "https://privguard.dev/problems/"


# -- helpers -------------------------------------------------------------------------------
def endpoint_for(
    body: bytes | list[bytes], media_type: str | None, **headers: str
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint sending ``body`` as it is (a list: streamed, one message per part)."""

    async def endpoint(request: Request) -> Response:
        if isinstance(body, list):
            parts = body

            async def gen() -> AsyncIterator[bytes]:
                for part in parts:
                    yield part

            return StreamingResponse(gen(), media_type=media_type, headers=headers or None)
        return Response(body, media_type=media_type, headers=headers or None)

    return endpoint


def app_for(
    endpoint: Callable[[Request], Awaitable[Response]],
    *,
    resolver: Any = None,
    debug: bool = False,
    **options: Any,
) -> Starlette:
    declared = privacy(Purposes.SERVICE, categories=[Categories.EMAIL, Categories.CARD])(endpoint)
    return Starlette(
        debug=debug,
        routes=[Route("/r", declared), Route("/undeclared", endpoint)],
        middleware=[
            Middleware(
                PrivacyMiddleware,
                guard=Privguard(),
                subject_resolver=resolver or (lambda scope: ALICE),
                **options,
            )
        ],
    )


class Recorder:
    """Records what the middleware sends to the server, under an httpx client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording(message: Message) -> None:
            self.messages.append(message)
            await send(message)

        await self.app(scope, receive, recording)

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


async def get(app: ASGIApp, path: str = "/r") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


def run(coro: Awaitable[httpx.Response]) -> httpx.Response:
    """For hypothesis tests, which are synchronous."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["type"] == PROBLEM + slug
    assert EMAIL not in response.text
    assert_no_personal_data(response)
    return doc


def luhn_complete(digits: str) -> str:
    """``digits`` plus the check digit that makes them Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


# -- 1. a subject resolver that raises -----------------------------------------------------
def raising_resolver(scope: Scope) -> Subject | None:
    raise ValueError(f"no user {EMAIL}")


async def async_raising_resolver(scope: Scope) -> Subject | None:
    await asyncio.sleep(0)
    raise LookupError(f"no user {EMAIL}")


class CallableResolver:
    async def __call__(self, scope: Scope) -> Subject | None:
        raise KeyError(EMAIL)


@pytest.mark.parametrize(
    "resolver",
    [raising_resolver, async_raising_resolver, CallableResolver()],
    ids=["sync", "async", "async-callable"],
)
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("path", ["/r", "/undeclared"])
async def test_a_raising_resolver_fails_closed_with_a_problem(
    resolver: Any, debug: bool, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    called: list[str] = []

    async def endpoint(request: Request) -> Response:
        called.append("ran")
        return JSONResponse({"email": EMAIL})

    caplog.set_level(logging.DEBUG)
    response = await get(app_for(endpoint, resolver=resolver, debug=debug), path)
    doc = assert_problem(response, 503, "decision-unavailable")
    assert doc["reason"] == "decision_unavailable"
    assert response.headers["cache-control"] == "no-store"
    assert called == []
    failures = [r for r in caplog.records if r.name == "privguard.middleware"]
    assert failures and failures[0].levelno == logging.ERROR
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info!r}" for r in caplog.records
    )
    assert EMAIL not in logged
    assert re.search(r"\b(ValueError|LookupError|KeyError)\b", logged)


async def test_a_resolver_returning_something_else_fails_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(request: Request) -> Response:
        raise AssertionError("must not run")

    response = await get(app_for(endpoint, resolver=lambda scope: EMAIL))
    assert_problem(response, 503, "decision-unavailable")
    assert "neither a Subject nor None" in caplog.text
    assert EMAIL not in caplog.text


# -- 2. gzip and deflate: every member, nothing after the end, nothing cut short ------------
async def test_every_gzip_member_is_decoded_and_redacted() -> None:
    body = gzip.compress(b"hello ") + gzip.compress(EMAIL.encode())
    response = await get(app_for(endpoint_for(body, "text/plain", **{"content-encoding": "gzip"})))
    assert response.status_code == 200
    assert response.content == b"hello j***@example.com"
    assert "content-encoding" not in response.headers


async def test_gzip_json_in_several_members_is_joined() -> None:
    doc = json.dumps({"email": EMAIL, "notes": f"card {PAN}"}).encode()
    body = b"".join(gzip.compress(doc[i : i + 5]) for i in range(0, len(doc), 5))
    app = app_for(endpoint_for(body, "application/json", **{"content-encoding": "gzip"}))
    response = await get(app)
    assert response.status_code == 200
    assert response.json() == {"email": "j***@example.com", "notes": "card **** **** **** 1111"}


async def test_gzip_padded_with_zero_bytes_is_accepted() -> None:
    # gzip(1) and Python's gzip module ignore zero bytes after a member (tape padding).
    body = gzip.compress(json.dumps({"email": EMAIL}).encode()) + b"\0" * 40
    app = app_for(endpoint_for(body, "application/json", **{"content-encoding": "gzip"}))
    response = await get(app)
    assert response.json() == {"email": "j***@example.com"}


@pytest.mark.parametrize("media_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw"])
@pytest.mark.parametrize("defect", ["junk after the end", "cut short", "end missing"])
async def test_compressed_bodies_that_do_not_end_cleanly_are_refused(
    media_type: str, coding: str, defect: str
) -> None:
    doc = json.dumps({"email": EMAIL, "notes": "hello " * 50}).encode()
    if coding == "gzip":
        compressed, end = gzip.compress(doc), 8  # CRC-32 and size
    elif coding == "deflate":
        compressed, end = zlib.compress(doc), 4  # Adler-32
    else:
        compressed, end = zlib.compress(doc)[2:-4], 1  # the end of the last block
    if defect == "cut short":
        body = compressed[:-12]
    elif defect == "end missing":  # every byte of the document is there, but not the end
        body = compressed[:-end]
        assert (
            zlib.decompressobj({"gzip": 31, "deflate": 15}.get(coding, -15)).decompress(body) == doc
        )
    else:
        body = compressed + b"<junk>" + EMAIL.encode()
    header = "gzip" if coding == "gzip" else "deflate"
    response = await get(app_for(endpoint_for(body, media_type, **{"content-encoding": header})))
    assert_problem(response, 502, "unredactable-response")


@pytest.mark.parametrize("defect", ["junk after the end", "cut short"])
async def test_a_streamed_gzip_text_that_ends_badly_is_cut_not_completed(
    defect: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = ("harmless text. " * 300 + f"write to {EMAIL}").encode()
    compressed = gzip.compress(text)
    if defect == "cut short":
        compressed = compressed[:-12]
    else:
        compressed += b"trailing junk " + EMAIL.encode()
    parts = [compressed[i : i + 40] for i in range(0, len(compressed), 40)]
    recorder = Recorder(app_for(endpoint_for(parts, "text/plain", **{"content-encoding": "gzip"})))
    with pytest.raises(RedactionError):
        await get(recorder)
    starts = [m for m in recorder.messages if m["type"] == "http.response.start"]
    assert starts and starts[0]["status"] == 200  # already sent: the connection is aborted
    # Never completed, and nothing of the address left unredacted.
    assert not any(m.get("more_body") is False for m in recorder.messages[1:])
    assert b"jane" not in recorder.body
    assert recorder.body.startswith(b"harmless text.")
    assert "response stream cut" in caplog.text
    assert EMAIL not in caplog.text


async def test_a_gzip_bomb_in_many_members_hits_the_limit() -> None:
    member = gzip.compress(b" " * (1 << 20))
    body = gzip.compress(b'{"pad": "') + member * 12 + gzip.compress(b'"}')
    app = app_for(
        endpoint_for(body, "application/json", **{"content-encoding": "gzip"}),
        max_body_size=8 << 20,
    )
    assert_problem(await get(app), 502, "response-too-large")


async def test_a_large_body_of_many_small_gzip_members_is_decoded_whole() -> None:
    doc = json.dumps([{"email": EMAIL, "notes": f"card {PAN}", "n": i} for i in range(4000)])
    raw = doc.encode()
    body = b"".join(gzip.compress(raw[i : i + 100]) for i in range(0, len(raw), 100))
    assert len(body) > 256 * 1024  # inflated off the event loop
    app = app_for(endpoint_for(body, "application/json", **{"content-encoding": "gzip"}))
    response = await get(app)
    assert response.status_code == 200
    data = response.json()
    assert len(data) == 4000 and data[-1]["n"] == 3999
    assert {d["email"] for d in data} == {"j***@example.com"}
    assert_no_personal_data(response)


chunkings = st.lists(st.integers(1, 60), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.text(st.sampled_from("ab .\n"), max_size=40),
    cuts=st.lists(st.integers(0, 80), max_size=4),
    sizes=chunkings,
    padding=st.booleans(),
)
def test_gzip_members_split_anywhere_and_streamed_in_any_chunks(
    prefix: str, cuts: list[int], sizes: list[int], padding: bool
) -> None:
    text = f"{prefix} mail {EMAIL} or pay with {PAN} ok".encode()
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pad = b"\0\0" if padding else b""
    body = b"".join(gzip.compress(text[a:b]) + pad for a, b in itertools.pairwise(bounds))
    parts, i = [], 0
    while i < len(body):
        size = sizes[len(parts) % len(sizes)]
        parts.append(body[i : i + size])
        i += size
    app = app_for(endpoint_for(parts, "text/plain", **{"content-encoding": "gzip"}))
    response = run(get(app))
    assert response.status_code == 200
    expected = Privguard().redactor.redact_text(text.decode())
    assert response.text == expected
    assert "j***@example.com" in response.text and "**** **** **** 1111" in response.text


# -- 3. forms ------------------------------------------------------------------------------
FORM = "application/x-www-form-urlencoded"


async def test_a_form_body_is_parsed_and_redacted() -> None:
    body = b"email=jane%40example.com&card=4111+1111+1111+1111&phone=%2B1+415+555+0132"
    response = await get(app_for(endpoint_for(body, FORM)))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    pairs = parse_qsl(response.text, keep_blank_values=True, strict_parsing=True)
    assert [k for k, _ in pairs] == ["email", "card", "phone"]
    values = dict(pairs)
    assert values["email"] == "j***@example.com"
    assert values["card"] == "**** **** **** 1111"
    assert values["phone"].endswith("32") and "415" not in values["phone"]
    assert_no_personal_data(json.dumps(values))


async def test_form_pairs_keep_their_order_and_repeats() -> None:
    body = (
        b"note=call+me+on+%2B1+415+555+0132&email=jane%40example.com&empty="
        b"&email=bob%40example.org&note=paid+with+4111111111111111&x=%E2%82%AC"
    )
    response = await get(app_for(endpoint_for(body, FORM + "; charset=utf-8")))
    pairs = parse_qsl(response.text, keep_blank_values=True, strict_parsing=True)
    assert [k for k, _ in pairs] == ["note", "email", "empty", "email", "note", "x"]
    assert pairs[1][1] == "j***@example.com" and pairs[3][1] == "b***@example.org"
    assert pairs[2][1] == "" and pairs[5][1] == "\u20ac"
    assert "4111111111111111" not in pairs[4][1] and pairs[4][1].startswith("paid with ")
    assert "415 555" not in pairs[0][1]


async def test_form_keys_are_redacted_as_json_keys_are() -> None:
    body = b"jane%40example.com=on&password=hunter2&notes=ok"
    response = await get(app_for(endpoint_for(body, FORM)))
    pairs = parse_qsl(response.text, keep_blank_values=True, strict_parsing=True)
    assert [v for _, v in pairs] == ["on", "", "ok"]  # a removed value keeps its key
    assert pairs[0][0] == "j***@example.com"
    assert "hunter2" not in response.text


async def test_a_form_for_a_payment_processor_keeps_the_card() -> None:
    async def endpoint(request: Request) -> Response:
        return Response(b"card=4111+1111+1111+1111&email=jane%40example.com", media_type=FORM)

    declared = privacy(
        Purposes.PAYMENT, categories=[Categories.CARD], recipient="payment_processor"
    )
    app = Starlette(
        routes=[Route("/r", declared(endpoint))],
        middleware=[
            Middleware(PrivacyMiddleware, guard=Privguard(), subject_resolver=lambda s: ALICE)
        ],
    )
    pairs = dict(parse_qsl((await get(app)).text))
    assert pairs["card"] == PAN
    assert pairs["email"] == "j***@example.com"


@pytest.mark.parametrize(
    "body",
    [b"email=jane%40example.com&broken", b"a=1&&b=2", b"email=jane%FF%40example.com", b"\xff=1"],
    ids=["field-without-equals", "empty-field", "bad-percent-utf8", "bad-raw-byte"],
)
async def test_a_form_that_cannot_be_parsed_is_refused(body: bytes) -> None:
    assert_problem(await get(app_for(endpoint_for(body, FORM))), 502, "unredactable-response")


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "utf-32", "utf-7", "cp037"])
async def test_a_form_in_a_charset_that_is_not_ascii_compatible_is_refused(charset: str) -> None:
    # Form encoding is defined for charsets that write ASCII as ASCII (browsers submit a
    # UTF-16 page's forms as UTF-8): anything else is refused, not re-encoded wrongly.
    body = "a=\u00e9&email=jane@example.com".encode(charset)
    response = await get(app_for(endpoint_for(body, f"{FORM}; charset={charset}")))
    assert_problem(response, 502, "unredactable-response")
    assert "jane".encode(charset) not in response.content


def percent_encode(text: str, data: st.DataObject) -> str:
    out = []
    for ch in text:
        how = data.draw(st.sampled_from(["plain", "percent"]))
        if ch == " ":
            out.append(data.draw(st.sampled_from(["+", "%20"])))
        elif how == "percent" or not (ch.isalnum() or ch in "-._*"):
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    keys=st.lists(st.sampled_from(["q", "notes", "email", "card", "x_1", "msg"]), min_size=1),
    digits=st.text(st.sampled_from("0123456789"), min_size=14, max_size=14),
)
def test_forms_never_release_the_card_or_address(
    data: st.DataObject, keys: list[str], digits: str
) -> None:
    pan = luhn_complete("4" + digits)
    secrets = [f"mail {EMAIL} now", f"card {pan}", EMAIL, pan]
    fields = []
    for key in keys:
        value = data.draw(st.sampled_from([*secrets, "hello", ""]))
        fields.append(percent_encode(key, data) + "=" + percent_encode(value, data))
    response = run(get(app_for(endpoint_for("&".join(fields).encode(), FORM))))
    assert response.status_code == 200
    pairs = parse_qsl(response.text, keep_blank_values=True, strict_parsing=True)
    assert [k for k, _ in pairs] == keys
    for _, value in pairs:
        assert pan not in value and EMAIL not in value


# -- 4. HTML and JavaScript ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "redacted"),
    [
        ("<p>jane&#64;example.com</p>", "<p>j***@example.com</p>"),
        ("<p>jane&#x40;example.com</p>", "<p>j***@example.com</p>"),
        ("<p>jane&commat;example.com</p>", "<p>j***@example.com</p>"),
        ("<p>&#106;ane&#64;example&period;com</p>", "<p>j***@example.com</p>"),
        ("<td>4111&nbsp;1111&nbsp;1111&nbsp;1111</td>", "<td>**** **** **** 1111</td>"),
        ("<td>&#52;111 1111 1111 1111</td>", "<td>**** **** **** 1111</td>"),
        ('<a href="mailto:jane%40example.com">x</a>', '<a href="mailto:j***@example.com">x</a>'),
        (
            '<script>var u = "jane\\u0040example.com";</script>',
            '<script>var u = "j***@example.com";</script>',
        ),
        (
            "<script>var u = 'jane\\x40example.com';</script>",
            "<script>var u = 'j***@example.com';</script>",
        ),
        (
            '<script type="application/json">{"contact":"jane\\u0040example\\u002ecom"}</script>',
            '<script type="application/json">{"contact":"j***@example.com"}</script>',
        ),
        (
            "<script>x = 'jane\\u{40}example.com'</script>",
            "<script>x = 'j***@example.com'</script>",
        ),
        ("<p>4111&#8203;1111&#8203;1111&#8203;1111</p>", "<p>************1111</p>"),
        ("<p>jane&shy;@example.com</p>", "<p>j***@example.com</p>"),
        ('<a href="/pay?card=4111+1111+1111+1111">', '<a href="/pay?card=****+****+****+1111">'),
        ("<script>s = 'jane\\@example.com'</script>", "<script>s = 'j***@example.com'</script>"),
        # The text as written is scanned too: never less than plain text redaction.
        ("<p>&#4111 1111 1111 1111</p>", "<p>&#**** **** **** 1111</p>"),
        ("<p>a &amp; b: jane@example.com</p>", "<p>a &amp; b: j***@example.com</p>"),
        ("<p>nothing here &amp; &lt;there&gt;</p>", "<p>nothing here &amp; &lt;there&gt;</p>"),
    ],
)
async def test_escaped_personal_data_in_html_is_redacted(written: str, redacted: str) -> None:
    response = await get(app_for(endpoint_for(written.encode(), "text/html; charset=utf-8")))
    assert response.status_code == 200
    assert response.text == redacted
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize(
    ("written", "redacted"),
    [
        (
            "<a href=/pay?card=4111%201111%201111%201111 class=btn>Pay</a>",
            "<a href=/pay?card=****%20****%20****%201111 class=btn>Pay</a>",
        ),
        (
            "<a href=tel:+44%2020%207946%200958 class=btn>Call</a>",
            "<a href=tel:+**%20**%20****%20**58 class=btn>Call</a>",
        ),
        (
            "<a href='/p?phone=%2B44+20+7946+0958&amp;x=1'>",
            "<a href='/p?phone=%2B**+**+****+**58&amp;x=1'>",
        ),
        (
            '<a href="/u/jane%40b%C3%BCcher.de">',
            '<a href="/u/j***@b%C3%BCcher.de">',
        ),
        # Characters that are not part of a finding stay where they were.
        ("<p>\\jane@example.com</p>", "<p>\\j***@example.com</p>"),
        ("<p>&nbsp4111 1111 1111 1111</p>", "<p>&nbsp**** **** **** 1111</p>"),
    ],
)
async def test_replacements_are_written_back_in_the_encoding_they_replace(
    written: str, redacted: str
) -> None:
    # A replacement found behind percent-escapes is percent-encoded again: spaces written
    # into an unquoted attribute or a query would end the attribute or break the URL.
    response = await get(app_for(endpoint_for(written.encode(), "text/html")))
    assert response.status_code == 200
    assert response.text == redacted


async def test_replacements_found_behind_string_escapes_get_string_escapes_in_html() -> None:
    # Inside <script> a character reference is not decoded: "\\u00fc", not "&#252;".
    body = b"<script>s = 'jane\\u0040b\\u00fccher.de'</script>"
    response = await get(app_for(endpoint_for(body, "text/html; charset=ascii")))
    assert response.content == b"<script>s = 'j***@b\\u00fccher.de'</script>"


async def test_replacements_in_script_urls_are_percent_encoded() -> None:
    body = b'location.href = "/pay?card=4111%201111%201111%201111&n=jane%40example.com";'
    response = await get(app_for(endpoint_for(body, "application/javascript")))
    assert (
        response.text == 'location.href = "/pay?card=****%20****%20****%201111&n=j***@example.com";'
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    digits=st.text(st.sampled_from("0123456789"), min_size=14, max_size=14),
    secret=st.sampled_from(["card", "email", "phone"]),
    quote=st.sampled_from(["", '"', "'"]),
)
def test_urls_keep_their_shape_and_never_release_the_value(
    data: st.DataObject, digits: str, secret: str, quote: str
) -> None:
    pan = luhn_complete("4" + digits)
    value = {
        "card": f"{pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}",
        "email": EMAIL,
        "phone": "+44 20 7946 0958",
    }[secret]
    written = []
    for ch in value:
        if ch == " ":
            written.append(data.draw(st.sampled_from(["+", "%20"])))
        elif ch == "+" or data.draw(st.booleans()):
            written.append(f"%{ord(ch):02X}")
        else:
            written.append(ch)
    url = f"/pay?v={''.join(written)}&n=2"
    body = f"<a href={quote}{url}{quote} class=btn>Pay</a>"
    response = run(get(app_for(endpoint_for(body.encode(), "text/html"))))
    assert response.status_code == 200
    shape = re.fullmatch(
        rf"<a href={quote}/pay\?([^\s<>\"']*){quote} class=btn>Pay</a>", response.text
    )
    assert shape is not None, response.text
    pairs = parse_qsl(shape[1], keep_blank_values=True, strict_parsing=True)
    assert [k for k, _ in pairs] == ["v", "n"] and pairs[1] == ("n", "2")
    shown = pairs[0][1]
    assert "***" in shown
    assert pan not in re.sub(r"\D", "", shown) and EMAIL not in shown
    assert "7946" not in shown


@pytest.mark.parametrize(
    "media_type",
    ["application/javascript", "text/javascript", "application/xhtml+xml", "text/xml"],
)
async def test_escaped_personal_data_in_scripts_and_xml_is_redacted(media_type: str) -> None:
    body = 'var a = "jane\\u0040example.com", b = "4111\\x201111\\x201111\\x201111";'
    if "xml" in media_type:
        body = "<a>jane&#64;example.com 4111&#32;1111&#32;1111&#32;1111</a>"
    response = await get(app_for(endpoint_for(body.encode(), media_type)))
    assert response.status_code == 200
    assert "j***@example.com" in response.text and "**** **** **** 1111" in response.text
    assert EMAIL not in html.unescape(response.text.replace("\\u0040", "@"))


@pytest.mark.parametrize(
    ("written", "redacted"),
    [
        ('var e = "jane\\100example.com";', 'var e = "j***@example.com";'),
        ('var c = "\\64111 1111 1111 1111";', 'var c = "**** **** **** 1111";'),
        ("var c = '\\064111 1111 1111 1111';", "var c = '**** **** **** 1111';"),
        ("var e = 'jane\\100example\\56com';", "var e = 'j***@example.com';"),
    ],
    ids=["at-sign", "two-digit-four", "three-digit-zero", "dot"],
)
@pytest.mark.parametrize("media_type", ["application/javascript", "text/html"])
async def test_legacy_octal_escapes_in_scripts_are_decoded(
    written: str, redacted: str, media_type: str
) -> None:
    # A script that is not strict reads "\100" as "@" and "\64" as "4".
    if media_type == "text/html":
        written, redacted = f"<script>{written}</script>", f"<script>{redacted}</script>"
    response = await get(app_for(endpoint_for(written.encode(), media_type)))
    assert response.status_code == 200
    assert response.text == redacted


async def test_script_replacements_stay_in_the_charset_as_string_escapes() -> None:
    body = b"var s = 'jane\\u0040b\\u00fccher.de';"
    response = await get(app_for(endpoint_for(body, "text/javascript; charset=ascii")))
    assert response.content == b"var s = 'j***@b\\u00fccher.de';"


async def test_html_in_another_charset_is_decoded_and_re_encoded() -> None:
    body = "<p>Jos\u00e9: jane&#64;example.com</p>".encode("latin-1")
    response = await get(app_for(endpoint_for(body, "text/html; charset=latin-1")))
    assert response.content.decode("latin-1") == "<p>Jos\u00e9: j***@example.com</p>"


async def test_html_that_is_not_its_charset_is_refused() -> None:
    body = b"<p>caf\xe9 jane&#64;example.com</p>"
    response = await get(app_for(endpoint_for(body, "text/html; charset=utf-8")))
    assert_problem(response, 502, "unredactable-response")


async def test_html_is_buffered_up_to_the_body_limit() -> None:
    parts = [b"<p>" + b"x" * 1000 + b"</p>"] * 20 + [b"<p>jane&#64;example.com</p>"]
    response = await get(app_for(endpoint_for(parts, "text/html"), max_body_size=10_000))
    assert_problem(response, 502, "response-too-large")
    small = await get(app_for(endpoint_for(parts[-3:], "text/html")))
    assert small.text.endswith("<p>j***@example.com</p>")
    assert int(small.headers["content-length"]) == len(small.content)


def reference_for(ch: str, how: str) -> str:
    if how == "decimal":
        return f"&#{ord(ch)};"
    if how == "hex":
        return f"&#x{ord(ch):x};"
    if how == "named":
        names = {"@": "&commat;", ".": "&period;", " ": "&nbsp;", "-": "&hyphen;"}
        return names.get(ch, f"&#{ord(ch):04d};")
    return html.escape(ch)


FILLER = st.text(st.sampled_from("abc <>/=\"'&;#.-\n"), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    before=FILLER,
    after=FILLER,
    digits=st.text(st.sampled_from("0123456789"), min_size=14, max_size=14),
    layout=st.sampled_from(["{}{}{}{} ", "{} {} {} {}", "{}-{}-{}-{}"]),
    secret=st.sampled_from(["card", "email"]),
)
def test_html_with_references_never_releases_the_card_or_address(
    data: st.DataObject, before: str, after: str, digits: str, layout: str, secret: str
) -> None:
    pan = luhn_complete("4" + digits)
    value = layout.format(pan[:4], pan[4:8], pan[8:12], pan[12:]).strip()
    if secret == "email":
        value = EMAIL
    written = "".join(
        reference_for(ch, data.draw(st.sampled_from(["plain", "decimal", "hex", "named"])))
        for ch in value
    )
    body = f"{before}<p> {written} </p>{after}"
    response = run(get(app_for(endpoint_for(body.encode(), "text/html"))))
    assert response.status_code == 200
    shown = html.unescape(response.text)
    if secret == "email":
        assert EMAIL not in shown
    else:
        assert pan not in re.sub(r"[\s\-\u00a0]", "", shown)


def js_escape_for(ch: str, how: str) -> str:
    if how == "u4":
        return f"\\u{ord(ch):04x}"
    if how == "x2" and ord(ch) < 256:
        return f"\\x{ord(ch):02x}"
    if how == "braced":
        return f"\\u{{{ord(ch):x}}}"
    if how == "html":
        return f"&#{ord(ch)};"
    if how == "octal" and ord(ch) < 256:
        return f"\\{ord(ch):03o}"
    return ch


def js_unescape(text: str) -> str:
    return re.sub(
        r"\\u\{([0-9a-fA-F]+)\}|\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\([0-3][0-7]{2})",
        lambda m: chr(int(m[4], 8) if m[4] else int(next(g for g in m.groups() if g), 16)),
        text,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    code=st.text(st.sampled_from("ab =+;'\"(){}\\\n"), max_size=20),
    digits=st.text(st.sampled_from("0123456789"), min_size=14, max_size=14),
    secret=st.sampled_from(["card", "email"]),
    media_type=st.sampled_from(["text/html", "application/javascript"]),
)
def test_scripts_with_string_escapes_never_release_the_card_or_address(
    data: st.DataObject, code: str, digits: str, secret: str, media_type: str
) -> None:
    pan = luhn_complete("4" + digits)
    value = EMAIL if secret == "email" else f"{pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}"
    written = "".join(
        js_escape_for(
            ch, data.draw(st.sampled_from(["plain", "u4", "x2", "braced", "html", "octal"]))
        )
        for ch in value
    )
    body = f'{code}\nvar v = "{written}";\n{code}'
    if media_type == "text/html":
        body = f"<script>{body}</script>"
    response = run(get(app_for(endpoint_for(body.encode(), media_type))))
    assert response.status_code == 200
    shown = js_unescape(html.unescape(response.text))
    if secret == "email":
        assert EMAIL not in shown
    else:
        assert pan not in re.sub(r"[\s\-]", "", shown)
