"""PrivacyMiddleware on response bodies: JSON, text, NDJSON, SSE, encodings, limits.

Streaming behaviour is observed by calling the ASGI app directly with a ``send`` that
records each message as it arrives (httpx's ASGITransport collects the whole body
before returning, so it cannot show what was released when).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from privguard import Categories, Purposes, RedactionError, Subject
from privguard._decorators import privacy
from privguard._guard import Privguard
from privguard._middleware import PrivacyMiddleware
from privguard.testing import assert_no_personal_data, find_personal_data

ALICE = Subject.customer("u-alice", tenant="acme")
PAN = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
ATTENDEE = {"name": "Jane", "email": EMAIL, "card_number": PAN, "notes": f"card {PAN}"}


# -- a direct ASGI driver ------------------------------------------------------------------
@dataclass
class Result:
    messages: list[Message] = field(default_factory=list)

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.start["headers"]}

    @property
    def chunks(self) -> list[bytes]:
        return [m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def call(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    extensions: dict[str, Any] | None = None,
    on_message: Callable[[Message], Awaitable[None]] | None = None,
    result: Result | None = None,
) -> Result:
    done = asyncio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    result = result if result is not None else Result()

    async def send(message: Message) -> None:
        result.messages.append(message)
        if on_message is not None:
            await on_message(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "extensions": extensions or {},
        "state": {},
    }
    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return result


def guarded(
    *routes: Route,
    guard: Privguard | None = None,
    inner: list[Middleware] | None = None,
    **options: Any,
) -> Starlette:
    return Starlette(
        routes=list(routes),
        middleware=[
            Middleware(
                PrivacyMiddleware,
                guard=guard or Privguard(),
                subject_resolver=lambda scope: ALICE,
                **options,
            ),
            *(inner or []),
        ],
    )


def route(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], **declaration: Any
) -> Route:
    declaration.setdefault("categories", [Categories.EMAIL, Categories.CARD])
    return Route(path, privacy(Purposes.SERVICE, **declaration)(endpoint))


def raw(
    body: bytes, media_type: str | None, **headers: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers or None)

    return endpoint


def streamed(
    parts: list[bytes], media_type: str, **headers: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        return StreamingResponse(gen(), media_type=media_type, headers=headers or None)

    return endpoint


def assert_problem(result: Result, status: int, slug: str) -> dict[str, Any]:
    assert result.status == status
    assert result.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = json.loads(result.body)
    assert doc["type"] == f"https://privguard.dev/problems/{slug}"
    assert_no_personal_data(result.body)
    return doc


def no_pan(data: bytes) -> bool:
    return PAN.encode() not in data and b"4111111111111111" not in data


# -- JSON ----------------------------------------------------------------------------------
async def test_json_is_redacted_and_content_length_fixed() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse([ATTENDEE] * 3, headers={"etag": '"abc"', "content-digest": "x"})

    result = await call(guarded(route("/a", endpoint)), "/a")
    assert result.status == 200
    assert int(result.headers["content-length"]) == len(result.body)
    assert "etag" not in result.headers and "content-digest" not in result.headers
    data = json.loads(result.body)
    assert data[0]["email"] == "j***@example.com"
    assert data[0]["card_number"] == "**** **** **** 1111"
    assert data[0]["notes"] == "card **** **** **** 1111"
    assert_no_personal_data(result.body)


async def test_json_streamed_in_chunks_is_joined_then_redacted() -> None:
    body = json.dumps({"attendees": [ATTENDEE] * 50}).encode()
    parts = [body[i : i + 7] for i in range(0, len(body), 7)]
    result = await call(guarded(route("/a", streamed(parts, "application/json"))), "/a")
    assert result.status == 200
    assert len(result.chunks) == 1
    assert int(result.headers["content-length"]) == len(result.body)
    assert_no_personal_data(result.body)


async def test_large_json_is_redacted_off_the_event_loop() -> None:
    body = json.dumps({"attendees": [ATTENDEE] * 5000}).encode()  # > 256 KiB
    result = await call(guarded(route("/a", raw(body, "application/json"))), "/a")
    assert result.status == 200
    assert len(json.loads(result.body)["attendees"]) == 5000
    assert no_pan(result.body) and EMAIL.encode() not in result.body


async def test_broken_json_is_refused_not_released() -> None:
    body = b'{"email": "' + EMAIL.encode() + b'", "card": "' + PAN.encode() + b'"'
    result = await call(guarded(route("/a", raw(body, "application/json"))), "/a")
    doc = assert_problem(result, 502, "unredactable-response")
    assert "invalid JSON" in doc["detail"]
    assert EMAIL.encode() not in result.body and no_pan(result.body)


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        ('{"email": "jos\u00e9@example.com"}'.encode("latin-1"), "application/json"),
        (b'{"email": "a@example.com"}', "application/json; charset=x-no-such-charset"),
        ('{"x": "caf\u00e9"}'.encode("latin-1"), "application/json; charset=utf-8"),
    ],
    ids=["latin1-bytes-as-utf8", "unknown-charset", "declared-utf8-but-latin1"],
)
async def test_json_in_a_charset_it_cannot_read_is_refused(body: bytes, media_type: str) -> None:
    result = await call(guarded(route("/a", raw(body, media_type))), "/a")
    assert_problem(result, 502, "unredactable-response")
    assert b"example.com" not in result.body or b"a@example.com" not in result.body


async def test_json_in_latin1_is_decoded_and_sent_as_utf8() -> None:
    body = '{"name": "Jos\u00e9", "email": "jose@example.com"}'.encode("latin-1")
    app = guarded(route("/a", raw(body, "application/json; charset=iso-8859-1")))
    result = await call(app, "/a")
    assert result.status == 200
    assert result.headers["content-type"] == "application/json"
    assert json.loads(result.body.decode("utf-8")) == {
        "name": "Jos\u00e9",
        "email": "j***@example.com",
    }


async def test_huge_json_is_refused_with_a_problem_and_bounded_memory() -> None:
    chunk = json.dumps([ATTENDEE] * 200).encode()[1:-1] + b","  # ~ 20 KB of attendees
    count = (20 * 1024 * 1024) // len(chunk)

    async def endpoint(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield b"["
            for _ in range(count):
                yield chunk
            yield b"{}]"

        return StreamingResponse(gen(), media_type="application/json")

    app = guarded(route("/a", endpoint), max_body_size=1024 * 1024)
    tracemalloc.start()
    try:
        result = await call(app, "/a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    doc = assert_problem(result, 502, "response-too-large")
    assert doc["max_bytes"] == 1024 * 1024
    assert peak < 8 * 1024 * 1024  # the 20 MB body was never held
    assert EMAIL.encode() not in result.body


async def test_huge_single_shot_json_is_refused() -> None:
    body = b'{"pad": "' + b"x" * (20 * 1024 * 1024) + b'", "email": "' + EMAIL.encode() + b'"}'
    result = await call(guarded(route("/a", raw(body, "application/json"))), "/a")
    assert_problem(result, 502, "response-too-large")
    assert len(result.body) < 1000


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_deeply_nested_json_is_refused_without_crashing(depth: int) -> None:
    body = b'{"a":' * depth + b'"' + EMAIL.encode() + b'"' + b"}" * depth
    result = await call(guarded(route("/a", raw(body, "application/json"))), "/a")
    doc = assert_problem(result, 502, "unredactable-response")
    # orjson's "depth limit exceeded" reads as invalid JSON to parse_json: refused either way.
    assert "deeply" in doc["detail"] or "invalid JSON" in doc["detail"]
    assert EMAIL.encode() not in result.body


async def test_empty_and_bodiless_responses_pass() -> None:
    async def no_content(request: Request) -> Response:
        return Response(status_code=204)

    async def empty_json(request: Request) -> Response:
        return Response(b"", media_type="application/json")

    app = guarded(route("/204", no_content), route("/empty", empty_json))
    assert (await call(app, "/204")).status == 204
    empty = await call(app, "/empty")
    assert (empty.status, empty.body) == (200, b"")


async def test_head_requests_drop_the_unredacted_length() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse(ATTENDEE)

    result = await call(guarded(route("/a", endpoint)), "/a", method="HEAD")
    assert result.status == 200
    assert "content-length" not in result.headers
    assert no_pan(result.body)


# -- encodings -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_json_is_decoded_redacted_and_sent_as_identity(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = compress(json.dumps([ATTENDEE] * 20).encode())
    app = guarded(route("/a", raw(body, "application/json", **{"content-encoding": encoding})))
    result = await call(app, "/a")
    assert result.status == 200
    assert "content-encoding" not in result.headers
    assert int(result.headers["content-length"]) == len(result.body)
    assert json.loads(result.body)[0]["email"] == "j***@example.com"
    assert_no_personal_data(result.body)


async def test_gzip_middleware_inside_privguard_is_undone() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse([ATTENDEE] * 20)

    app = guarded(route("/a", endpoint), inner=[Middleware(GZipMiddleware, minimum_size=10)])
    result = await call(app, "/a", headers=[(b"accept-encoding", b"gzip")])
    assert "content-encoding" not in result.headers
    assert_no_personal_data(result.body)
    assert json.loads(result.body)[0]["card_number"] == "**** **** **** 1111"


async def test_gzip_middleware_outside_privguard_compresses_the_redacted_body() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse([ATTENDEE] * 20)

    app = GZipMiddleware(guarded(route("/a", endpoint)), minimum_size=10)
    result = await call(app, "/a", headers=[(b"accept-encoding", b"gzip")])
    assert result.headers["content-encoding"] == "gzip"
    assert_no_personal_data(gzip.decompress(result.body))


async def test_a_gzip_bomb_is_refused() -> None:
    body = gzip.compress(b'{"pad": "' + b" " * (30 * 1024 * 1024) + b'"}')
    assert len(body) < 100_000
    app = guarded(route("/a", raw(body, "application/json", **{"content-encoding": "gzip"})))
    result = await call(app, "/a")
    assert_problem(result, 502, "response-too-large")


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress", "made-up"])
async def test_encodings_it_cannot_undo_are_refused(encoding: str) -> None:
    body = json.dumps(ATTENDEE).encode()  # as if encoded: it must not be released either way
    app = guarded(route("/a", raw(body, "application/json", **{"content-encoding": encoding})))
    result = await call(app, "/a")
    doc = assert_problem(result, 502, "unredactable-response")
    assert "content encoding" in doc["detail"]
    assert no_pan(result.body)


async def test_corrupt_gzip_is_refused() -> None:
    body = gzip.compress(json.dumps(ATTENDEE).encode())[:-20] + b"garbage-garbage-garbage"
    app = guarded(route("/a", raw(body, "application/json", **{"content-encoding": "gzip"})))
    result = await call(app, "/a")
    assert_problem(result, 502, "unredactable-response")


async def test_gzip_text_stream_is_decoded_and_redacted() -> None:
    compressor = zlib.compressobj(wbits=31)
    text = f"line with {PAN} and {EMAIL}\n".encode() * 50
    compressed = compressor.compress(text) + compressor.flush()
    parts = [compressed[i : i + 100] for i in range(0, len(compressed), 100)]
    app = guarded(route("/t", streamed(parts, "text/plain", **{"content-encoding": "gzip"})))
    result = await call(app, "/t")
    assert result.status == 200
    assert "content-encoding" not in result.headers
    assert no_pan(result.body) and EMAIL.encode() not in result.body
    assert result.body.count(b"**** **** **** 1111") == 50


# -- text streams --------------------------------------------------------------------------
def splits(text: str) -> Iterator[list[bytes]]:
    data = text.encode()
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [bytes([b]) for b in data]


@pytest.mark.parametrize("parts", list(splits(f"pay with {PAN} today")), ids=lambda p: str(len(p)))
async def test_a_card_number_split_across_chunks_never_leaks(parts: list[bytes]) -> None:
    result = await call(guarded(route("/t", streamed(parts, "text/plain"))), "/t")
    assert result.status == 200
    assert "content-length" not in result.headers
    assert result.body == b"pay with **** **** **** 1111 today"


async def test_text_is_released_as_it_becomes_safe() -> None:
    release = asyncio.Event()
    first_seen: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield ("harmless text. " * 40).encode()
            await asyncio.wait_for(release.wait(), 5)
            yield f"and {PAN}".encode()

        return StreamingResponse(gen(), media_type="text/plain")

    async def on_message(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body") and not first_seen:
            first_seen.append(message["body"])
            release.set()

    result = await call(guarded(route("/t", endpoint)), "/t", on_message=on_message)
    assert first_seen and first_seen[0].startswith(b"harmless text.")
    assert result.body.endswith(b"and **** **** **** 1111")


async def test_single_shot_text_gets_a_content_length() -> None:
    body = f"<p>Contact {EMAIL}</p>".encode()
    result = await call(guarded(route("/h", raw(body, "text/html"))), "/h")
    assert result.body == b"<p>Contact j***@example.com</p>"
    assert int(result.headers["content-length"]) == len(result.body)


async def test_text_in_latin1_stays_latin1() -> None:
    body = f"Jos\u00e9: {PAN}".encode("latin-1")
    result = await call(guarded(route("/t", raw(body, "text/plain; charset=latin-1"))), "/t")
    assert result.body.decode("latin-1") == "Jos\u00e9: **** **** **** 1111"


async def test_text_that_is_not_its_charset_is_refused() -> None:
    body = b"caf\xe9 " + PAN.encode()
    result = await call(guarded(route("/t", raw(body, "text/plain; charset=utf-8"))), "/t")
    assert_problem(result, 502, "unredactable-response")


async def test_a_stream_that_turns_bad_after_the_start_is_cut() -> None:
    parts = [b"fine text, " * 20, b"\xff\xfe broken " + PAN.encode()]
    app = guarded(route("/t", streamed(parts, "text/plain; charset=utf-8")))
    result = Result()
    with pytest.raises(RedactionError):
        await call(app, "/t", result=result)
    assert result.status == 200  # already sent: the connection is aborted instead
    assert no_pan(result.body)
    assert not any(m.get("more_body") is False for m in result.messages[1:])


async def test_untyped_bodies_are_read_as_text() -> None:
    result = await call(guarded(route("/u", raw(f"card {PAN}".encode(), None))), "/u")
    assert result.body == b"card **** **** **** 1111"


async def test_unknown_binary_media_types_are_refused_unless_marked_safe() -> None:
    body = f"%PDF-1.7 {EMAIL}".encode()
    refused = await call(guarded(route("/p", raw(body, "application/pdf"))), "/p")
    assert_problem(refused, 502, "unredactable-response")
    app = guarded(route("/p", raw(body, "application/pdf")), safe_media_types=["application/pdf"])
    assert (await call(app, "/p")).body == body


# -- NDJSON and SSE ------------------------------------------------------------------------
async def test_ndjson_lines_are_redacted_as_they_complete() -> None:
    lines = b"".join(json.dumps(ATTENDEE).encode() + b"\n" for _ in range(5))
    parts = [lines[i : i + 13] for i in range(0, len(lines), 13)]
    for media_type in ("application/x-ndjson", "application/jsonl"):
        result = await call(guarded(route("/n", streamed(parts, media_type))), "/n")
        rows = [json.loads(line) for line in result.body.splitlines()]
        assert len(rows) == 5
        assert all(row["email"] == "j***@example.com" for row in rows)
        assert len(result.chunks) > 2  # streamed, not buffered
        assert_no_personal_data(result.body)


async def test_a_broken_ndjson_line_cuts_the_stream() -> None:
    parts = [json.dumps(ATTENDEE).encode() + b"\n", b'{"email": "' + EMAIL.encode() + b"\n"]
    result = Result()
    with pytest.raises(RedactionError):
        await call(
            guarded(route("/n", streamed(parts, "application/x-ndjson"))), "/n", result=result
        )
    assert EMAIL.encode() not in result.body


async def test_server_sent_events_stream_and_are_redacted() -> None:
    second_may_come = asyncio.Event()

    async def endpoint(request: Request) -> Response:
        async def events() -> AsyncIterator[str]:
            yield f"event: attendee\ndata: {json.dumps(ATTENDEE)}\n\n"
            # The generator is not finished: the first event must already be out.
            await asyncio.wait_for(second_may_come.wait(), 5)
            yield f"data: call {PAN} or mail {EMAIL}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def on_message(message: Message) -> None:
        if message["type"] == "http.response.body" and b"data:" in message.get("body", b""):
            second_may_come.set()

    result = await call(guarded(route("/sse", endpoint)), "/sse", on_message=on_message)
    assert second_may_come.is_set()
    events = result.body.decode().split("\n\n")
    assert events[0].startswith("event: attendee\ndata: {")
    first = json.loads(events[0].split("data: ", 1)[1])
    assert first["email"] == "j***@example.com"
    assert events[1] == "data: call **** **** **** 1111 or mail j***@example.com"


# -- pass-through --------------------------------------------------------------------------
async def test_octet_stream_passes_untouched_and_unbuffered() -> None:
    release = asyncio.Event()
    payload = [PAN.encode(), b"\x00\xff binary"]

    async def endpoint(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            yield payload[0]
            await asyncio.wait_for(release.wait(), 5)
            yield payload[1]

        return StreamingResponse(gen(), media_type="application/octet-stream")

    async def on_message(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body") == payload[0]:
            release.set()

    result = await call(guarded(route("/o", endpoint)), "/o", on_message=on_message)
    assert release.is_set()
    assert result.chunks[:2] == payload


async def test_images_pass_with_their_headers() -> None:
    png = b"\x89PNG\r\n\x1a\n" + PAN.encode()
    result = await call(guarded(route("/i", raw(png, "image/png", etag='"v1"'))), "/i")
    assert result.body == png
    assert result.headers["etag"] == '"v1"'
    assert result.headers["content-length"] == str(len(png))


async def test_a_route_declared_redact_false_is_not_read() -> None:
    body = json.dumps(ATTENDEE).encode()
    app = guarded(route("/r", raw(body, "application/json"), redact=False, categories=()))
    assert (await call(app, "/r")).body == body


async def test_files_are_never_sent_by_path_when_they_need_redaction(tmp_path: Path) -> None:
    path = tmp_path / "attendees.txt"
    path.write_text(f"{EMAIL}\n" * 10)

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type="text/plain")

    sent_by_path: list[Message] = []

    async def on_message(message: Message) -> None:
        if message["type"] == "http.response.pathsend":
            sent_by_path.append(message)

    app = guarded(route("/f", endpoint))
    result = await call(app, "/f", extensions={"http.response.pathsend": {}}, on_message=on_message)
    assert sent_by_path == []
    assert result.body == b"j***@example.com\n" * 10


async def test_range_responses_that_need_redaction_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "attendees.txt"
    path.write_text(f"{EMAIL}\n" * 10)

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type="text/plain")

    app = guarded(route("/f", endpoint))
    result = await call(app, "/f", headers=[(b"range", b"bytes=0-9")])
    assert_problem(result, 502, "unredactable-response")


async def test_over_http_the_client_sees_no_personal_data() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"attendees": [ATTENDEE] * 5})

    transport = httpx.ASGITransport(app=guarded(route("/a", endpoint)))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/a")
    assert response.status_code == 200
    assert find_personal_data(response) == []
