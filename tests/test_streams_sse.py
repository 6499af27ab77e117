"""Server-Sent Events: SseStreamRedactor reads the stream as a browser does, event by event."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from privguard import PolicyError, RedactionError, Redactor, UnparseableBody
from privguard._streams import ByteStreamRedactor, SseStreamRedactor, TextRedactor

REDACTOR = Redactor()


def redact_json(text: str) -> str:
    return REDACTOR.redact_json(text).decode("utf-8")


def redact_text(text: str) -> str:
    return REDACTOR.redact_text(text)


def sse_redactor(**kwargs: int) -> SseStreamRedactor:
    return SseStreamRedactor(redact_json, redact_text, **kwargs)


def run_bytes(chunks: list[bytes], **kwargs: int) -> bytes:
    stream = ByteStreamRedactor(sse_redactor(**kwargs))
    return b"".join(stream.feed(c) for c in chunks) + stream.finish()


def every_split(data: bytes) -> list[list[bytes]]:
    splits = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return [*splits, [data[i : i + 1] for i in range(len(data))]]


# -- a reference client: the WHATWG HTML "event stream interpretation" ---------------------


@dataclass(frozen=True)
class Event:
    type: str
    id: str
    data: str


def parse_events(text: str) -> list[Event]:
    """The events a browser's EventSource dispatches for ``text``."""
    text = text.removeprefix("\ufeff")
    *lines, _unterminated = re.split(r"\r\n|\r|\n", text)
    events: list[Event] = []
    data, kind, last_id = "", "", ""
    for line in lines:
        if not line:
            if data:
                events.append(Event(kind or "message", last_id, data.removesuffix("\n")))
            data, kind = "", ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data += value + "\n"
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return events  # an event the stream leaves open is discarded


def is_json_document(data: str) -> bool:
    """Any JSON value: an object, an array, a string, a number, ..."""
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def shape(event: Event) -> tuple[str, str, object]:
    data = event.data
    return event.type, event.id, json.loads(data) if is_json_document(data) else data


def redacted_shape(event: Event) -> tuple[str, str, object]:
    """What the event should look like once redacted: its data redacted as one value."""
    data = event.data
    out = json.loads(redact_json(data)) if is_json_document(data) else redact_text(data)
    return redact_text(event.type), redact_text(event.id), out


# -- the review's inputs ---------------------------------------------------------------------

REVIEW = {
    # (a) one JSON document spread over two data lines, as json.dumps(indent=...) gives
    "multi-line": (
        b'data: {"first_name": "Jane",\ndata:  "password": "hunter2", "dob": "1990-01-02"}\n\n',
        b'data: {"first_name":"[user.name]","password":null,'
        b'"dob":"[user.demographic.date_of_birth]"}\n\n',
    ),
    # (b) CR-only line endings
    "cr-only": (
        b'data: {"password": "hunter2"}\r\rdata: {"first_name": "Jane"}\r\r',
        b'data: {"password":null}\r\rdata: {"first_name":"[user.name]"}\r\r',
    ),
    # (c) a byte order mark before the first field
    "bom": (
        b'\xef\xbb\xbfdata: {"password": "hunter2"}\n\n',
        b'\xef\xbb\xbfdata: {"password":null}\n\n',
    ),
    # (d) the event's terminator after a CR-ended line
    "cr-terminator": (
        b'data: {"email": "jane@example.com"}\r\r',
        b'data: {"email":"j***@example.com"}\r\r',
    ),
}
SECRETS = [b"hunter2", b"Jane", b"1990-01-02", b"jane@example.com"]


@pytest.mark.parametrize("name", REVIEW)
def test_the_reviews_inputs_are_redacted_in_any_chunking(name: str) -> None:
    data, expected = REVIEW[name]
    for chunks in every_split(data):
        out = run_bytes(chunks)
        assert out == expected, chunks
        assert not [s for s in SECRETS if s in out]


def test_a_pretty_printed_document_becomes_one_data_line() -> None:
    doc = {"user": {"first_name": "Jane", "password": "hunter2"}, "n": [1, 2]}
    body = "".join(f"data: {line}\n" for line in json.dumps(doc, indent=2).splitlines())
    out = sse_redactor().feed(body + "\n")
    assert out == 'data: {"user":{"first_name":"[user.name]","password":null},"n":[1,2]}\n\n'


# -- a stand-in for the middleware, over HTTP ------------------------------------------------


def event_stream_app(chunks: list[bytes]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def sse_guard(app: ASGIApp) -> ASGIApp:
    """What PrivacyMiddleware does with a text/event-stream body, in a few lines."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        stream = ByteStreamRedactor(sse_redactor())

        async def redacting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                body = stream.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    body += stream.finish()
                message = {**message, "body": body}
            await send(message)

        await app(scope, receive, redacting_send)

    return guarded


async def fetch(app: ASGIApp) -> bytes:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sse.test") as client:
        response = await client.get("/events")
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("name", REVIEW)
async def test_the_reviews_inputs_over_http(name: str) -> None:
    data, expected = REVIEW[name]
    for size in (1, 3, 8, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        body = await fetch(sse_guard(event_stream_app(chunks)))
        assert body == expected
        assert parse_events(body.decode("utf-8")) != []


async def test_an_event_stream_over_http_keeps_its_events() -> None:
    data = (
        b": hello\r\n"
        b"retry: 3000\r\n"
        b"event: signup\r\n"
        b"id: 7\r\n"
        b'data: {"email": "jane@example.com", "password": "hunter2",\r\n'
        b'data:  "card_number": "4111 1111 1111 1111"}\r\n'
        b"\r\n"
        b"data: call +1 415 555 0132\r\n"
        b"data: or mail jane@example.com\r\n"
        b"\r\n"
        b"data: [DONE]\r\n\r\n"
    )
    body = await fetch(
        sse_guard(event_stream_app([data[i : i + 5] for i in range(0, len(data), 5)]))
    )
    events = parse_events(body.decode("utf-8"))
    assert [shape(e) for e in events] == [
        shape(e) for e in map(redact_event, parse_events(data.decode()))
    ]
    assert [e.type for e in events] == ["signup", "message", "message"]
    assert events[2].data == "[DONE]"
    for value in (b"jane@example.com", b"hunter2", b"4111 1111 1111 1111"):
        assert value not in body
    assert body.startswith(b": hello\r\nretry: 3000\r\nevent: signup\r\nid: 7\r\n")


def redact_event(event: Event) -> Event:
    data = redact_json(event.data) if is_json_document(event.data) else redact_text(event.data)
    return Event(event.type, event.id, data)


# -- any stream, any chunking -----------------------------------------------------------------

PASSWORDS = st.integers(2, 10**9).map(lambda n: f"hunter{n}")
EMAILS = st.sampled_from(["jane@example.com", "j.doe+sse@mail.example.org", "用户@例子.广告"])
CARDS = st.sampled_from(["4111 1111 1111 1111", "4012888888881881", "5555-5555-5555-4444"])


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, list[str]]:
    """An event's data, and the personal values in it."""
    password, email, card = draw(PASSWORDS), draw(EMAILS), draw(CARDS)
    if draw(st.booleans()):
        doc = {"first_name": "Jane", "password": password, "contact": {"email": email}}
        doc["note"] = f"card {card}"
        if draw(st.booleans()):
            doc = [doc, {"dob": "1990-01-02"}]  # type: ignore[assignment]
        indent = draw(st.sampled_from([None, 0, 1, 2, 4]))
        return json.dumps(doc, indent=indent, ensure_ascii=False), [password, email, card]
    separator = draw(st.sampled_from([" ", "\n", "\n\n"]))  # "\n\n": an empty data line
    text = f"mail {email}{separator}card {card} ok"
    if draw(st.booleans()):  # a JSON string, some characters as \uXXXX escapes
        escaped = [
            f"\\u{ord(ch):04x}" if draw(st.booleans()) else json.dumps(ch, ensure_ascii=False)[1:-1]
            for ch in text
        ]
        return '"' + "".join(escaped) + '"', [email, card]
    return text, [email, card]


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A stream as a server may write it, and every personal value in it."""
    lines: list[str] = []
    personal: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            lines.append(": keep-alive")
        if draw(st.booleans()):
            lines.append("event: " + draw(st.sampled_from(["update", "signup"])))
        data, values = draw(payloads())
        personal += values
        space = draw(st.sampled_from(["", " "]))
        lines += ["data:" + space + line for line in data.split("\n")]
        if draw(st.booleans()):
            lines.append(f"id: {draw(st.integers(0, 999))}")
        if draw(st.booleans()):
            lines.append("retry: 1500")
        lines.append("")
    if draw(st.booleans()):
        lines.pop()  # the last event left open
    text = "\ufeff" if draw(st.booleans()) else ""
    previous = ""
    for line in lines:
        ending = draw(st.sampled_from(["\n", "\r", "\r\n"]))
        if previous == "\r" and not line and ending == "\n":
            ending = "\r\n"  # "\r" then "\n" would be one line ending, not a blank line
        text += line + ending
        previous = ending
    return text, personal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams(), st.data())
def test_any_stream_in_any_chunking_keeps_its_events_and_no_personal_value(
    stream: tuple[str, list[str]], data: st.DataObject
) -> None:
    text, personal = stream
    raw = text.encode("utf-8")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    out = run_bytes(chunks).decode("utf-8")
    for value in personal:
        assert value not in out
    assert [shape(e) for e in parse_events(out)] == [redacted_shape(e) for e in parse_events(text)]
    assert out.startswith("\ufeff") == text.startswith("\ufeff")
    # Line endings go out as they came: a stream that uses one kind keeps to it.
    assert set(re.findall(r"\r\n|\r|\n", out)) <= set(re.findall(r"\r\n|\r|\n", text))


# -- the details -------------------------------------------------------------------------------


def test_an_event_goes_out_at_its_blank_line_and_not_before() -> None:
    redactor = sse_redactor()
    assert redactor.feed(": ping\n") == ": ping\n"  # before any data: at once
    assert redactor.feed("event: a\n") == "event: a\n"
    assert redactor.feed("data: mail jane@example.com\n") == ""
    assert redactor.feed("id: 1\n") == ""
    assert redactor.feed("\n") == "data: mail j***@example.com\nid: 1\n\n"
    assert redactor.finish() == ""


def test_a_crlf_split_between_chunks_is_one_line_ending() -> None:
    redactor = sse_redactor()
    assert redactor.feed("data: hi\r") == ""
    assert redactor.feed("\n\r") == "data: hi\r\n\r"  # the blank line ends the event now
    assert redactor.feed("\n: x\r") == "\n: x\r"
    assert redactor.feed("\n") == "\n"
    assert redactor.finish() == ""


def test_a_crlf_split_after_a_data_line_does_not_end_the_event() -> None:
    redactor = sse_redactor()
    out = redactor.feed('data: {"password": "x"}\r') + redactor.feed("\n")
    assert out == ""  # "\r" + "\n" is one line ending, not a blank line
    assert redactor.feed("\r\n") == 'data: {"password":null}\r\n\r\n'


def test_fields_and_comments_are_redacted_in_place() -> None:
    text = (
        ": from jane@example.com\n"
        "event: jane@example.com\n"
        "data: 4111 1111 1111 1111\n"
        "id: 4111111111111111\n"
        "x-note: jane@example.com\n"
        "\n"
    )
    out = sse_redactor().feed(text)
    assert out == (
        ": from j***@example.com\n"
        "event: j***@example.com\n"
        "data: **** **** **** 1111\n"
        "id: ************1111\n"
        "x-note: j***@example.com\n"
        "\n"
    )


def test_multi_line_text_keeps_its_data_lines() -> None:
    text = "data:mail\ndata:  jane@example.com\ndata\ndata: end\n\n"
    out = sse_redactor().feed(text)
    assert out == "data:mail\ndata:  j***@example.com\ndata\ndata: end\n\n"
    assert parse_events(out)[0].data == "mail\n j***@example.com\n\nend"


def test_several_documents_in_one_event_are_each_redacted() -> None:
    text = 'data: {"password": "a1"}\ndata: [DONE]\ndata: [{"email": "jane@example.com"}]\n\n'
    out = sse_redactor().feed(text)
    assert out == 'data: {"password":null}\ndata: [DONE]\ndata: [{"email":"j***@example.com"}]\n\n'


def test_data_that_is_not_json_is_text() -> None:
    text = "data: [DONE]\n\ndata: [not json] jane@example.com\n\n"
    assert sse_redactor().feed(text) == "data: [DONE]\n\ndata: [not json] j***@example.com\n\n"


def test_data_that_opens_an_object_and_is_not_json_is_not_released() -> None:
    # Key-named values ("password") in a cut-short object would pass the text detectors.
    redactor = sse_redactor()
    assert redactor.feed("data: [DONE]\n\n") == "data: [DONE]\n\n"
    with pytest.raises(UnparseableBody):
        redactor.feed('data: {"password": "hunter2", "first_name": "Jane"\n\n')
    with pytest.raises(UnparseableBody):
        sse_redactor().feed('data: {"password": "hunter2"\ndata: [DONE]\n\n')


@pytest.mark.parametrize(
    ("data", "redacted"),
    [
        # JSON.parse gives the address: the escape is no hiding place.
        ('"jane\\u0040example.com"', '"j***@example.com"'),
        (' "mail jane\\u0040example.com" ', '"mail j***@example.com"'),
        ("4111111111111111", '"************1111"'),
        # Nothing to redact: the data goes out as it came, not as JSON would write it.
        ("1.50", "1.50"),
        ('"caf\\u00e9"', '"caf\\u00e9"'),
        ("true", "true"),
    ],
)
def test_data_that_is_any_json_value_is_redacted_as_json(data: str, redacted: str) -> None:
    assert sse_redactor().feed(f"data: {data}\n\n") == f"data: {redacted}\n\n"


def test_a_json_string_the_redactor_refuses_is_not_released_as_text() -> None:
    def refuse(text: str) -> str:
        raise UnparseableBody("refused")

    with pytest.raises(UnparseableBody):
        SseStreamRedactor(refuse, redact_text).feed('data: "jane\\u0040example.com"\n\n')
    assert SseStreamRedactor(refuse, redact_text).feed("data: 12 apples\n\n") == (
        "data: 12 apples\n\n"
    )


def test_json_the_redactor_refuses_is_not_released_as_text() -> None:
    def refuse(text: str) -> str:
        raise UnparseableBody("JSON nested too deeply")

    redactor = SseStreamRedactor(refuse, redact_text)
    assert redactor.feed("data: [DONE]\n\n") == "data: [DONE]\n\n"
    with pytest.raises(UnparseableBody):
        redactor.feed('data: {"password":\ndata: "hunter2"}\n\n')
    deep = "[" * 2000 + "]" * 2000  # deeper than Python's json can read: still JSON
    with pytest.raises(UnparseableBody):
        SseStreamRedactor(refuse, redact_text).feed(f"data: {deep}\n\n")


def test_an_event_over_max_event_is_not_released() -> None:
    redactor = sse_redactor(max_event=40)
    assert redactor.feed("data: mail jane@example.com\n") == ""
    with pytest.raises(UnparseableBody):
        redactor.feed("data: and more and more and more\n")
    held = sse_redactor(max_event=40)
    with pytest.raises(UnparseableBody):
        held.feed("data: " + "x" * 20)
        held.feed("y" * 20)


def test_an_event_left_open_at_the_end_is_redacted_and_released() -> None:
    redactor = sse_redactor()
    assert redactor.feed('data: {"password": "hunter2",\ndata: "email": "jane@example.com"}') == ""
    assert redactor.finish() == 'data: {"password":null,"email":"j***@example.com"}'
    assert redactor.finish() == ""
    with pytest.raises(RedactionError):
        redactor.feed("data: x\n\n")


def test_a_bom_is_passed_through_only_at_the_very_start() -> None:
    redactor = sse_redactor()
    assert redactor.feed("") == ""
    assert redactor.feed("\ufeff") == "\ufeff"
    assert redactor.feed(": a \ufeff\n") == ": a \ufeff\n"


def test_configuration_repr_and_protocol() -> None:
    with pytest.raises(PolicyError):
        SseStreamRedactor(redact_json, redact_text, max_event=0)
    redactor: TextRedactor = sse_redactor(max_event=100)
    redactor.feed("data: jane@example.com")
    assert repr(redactor) == "SseStreamRedactor(max_event=100, held=22)"
    assert "jane" not in repr(redactor)


def test_json_is_what_the_redactor_parses() -> None:
    """Data the redactor's parser refuses (-Infinity, an int past 64 bits) is text, not a
    broken stream, and goes out as it came when it holds nothing personal."""
    text = "data: -Infinity\n\ndata: 123456789012345678901234567890\n\n"
    assert sse_redactor().feed(text) == text
