"""``PrivacyMiddleware``: purpose and consent checked before an endpoint runs, responses
redacted on the way out. Pure ASGI, in the model of Starlette's ``GZipMiddleware``.

Per HTTP request: find the route's declaration (a route table given to the middleware,
else ``@privacy`` on the endpoint the app's routes lead to), resolve the subject with the
host's resolver, decide, put a :class:`~privguard.PrivacyContext` in a ``ContextVar``,
and run the app with a per-request :class:`_Responder` that redacts the body by media
type. Lifespan and websocket scopes pass through untouched.

What is buffered and what streams, the limits and the problem documents are described
in ``docs/middleware.md`` and ``docs/errors.md``.
"""

from __future__ import annotations

import codecs
import inspect
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from starlette.routing import Host, Match, compile_path
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from ._context import _CONTEXT, SUBJECT_REQUIRED, PrivacyContext
from ._decisions import Decision
from ._decorators import ROUTE_ATTRIBUTE, RouteSpec
from ._errors import PolicyError, PrivguardError, RedactionError, UnparseableBody
from ._guard import Privguard
from ._markup import reads_the_same_decoded, redact_markup
from ._problems import DEFAULT_PROBLEM_BASE, Problem, check_base
from ._streams import (
    ByteStreamRedactor,
    LineStreamRedactor,
    SseStreamRedactor,
    TextRedactor,
    TextStreamRedactor,
)
from ._subject import EMPTY_SCOPE, Scope, Subject
from ._taxonomy import RecipientKind

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_SAFE_MEDIA_TYPES",
    "Anonymous",
    "PrivacyMiddleware",
    "RouteMatch",
    "RouteMatcher",
    "SubjectResolver",
    "Undeclared",
]

logger = logging.getLogger("privguard.middleware")

SubjectResolver = Callable[[ASGIScope], "Subject | Awaitable[Subject | None] | None"]

#: The largest buffered body (JSON, form, HTML, XML, script) held to redact it (decompressed).
DEFAULT_MAX_BODY_SIZE: Final = 10 * 1024 * 1024
#: Media types whose bodies pass through unread. ``type/*`` matches a whole type.
DEFAULT_SAFE_MEDIA_TYPES: Final = (
    "image/*",
    "audio/*",
    "video/*",
    "font/*",
    "application/octet-stream",
)
# Bodies larger than this are redacted in a worker thread, off the event loop.
_THREAD_MIN: Final = 256 * 1024
# Decompressed piece size for streamed bodies: memory per chunk stays bounded.
_INFLATE_PIECE: Final = 64 * 1024
# Compressed input handed to zlib at the start of each stream (it doubles from there).
_INFLATE_STEP: Final = 256
_ZEROS: Final = re.compile(rb"\0*")
_CACHE_LIMIT: Final = 4096
_MEMO_LIMIT: Final = 64


class Undeclared(StrEnum):
    """What happens on a route that declares nothing."""

    #: No check; the response is redacted for any client (the safe default).
    REDACT = "redact"
    #: 403 ``undeclared-route``: every route must declare its purpose.
    REFUSE = "refuse"
    #: No check and no redaction. Risky: only for apps that declare every personal route.
    SKIP = "skip"


class Anonymous(StrEnum):
    """What happens when no subject is known on a route that declares personal data."""

    #: 401 ``subject-required`` (the default).
    REFUSE = "refuse"
    #: The endpoint runs without a check; its response is redacted for any client.
    ALLOW = "allow"


# -- finding the declaration ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The declaration of the endpoint a request reaches (``spec`` None: undeclared)."""

    spec: RouteSpec | None
    path_params: Mapping[str, Any]
    template: str | None
    # Static decisions for this route by (subject kind, jurisdiction): decisions that
    # need no consent lookup depend on nothing else, so a cached match answers them
    # without asking the decider again. An allowed one is kept as the privacy context's
    # fields after the subject; a refusal as the Decision; None: ask the consent ledger.
    # Not an argument: every match starts empty, and the middleware fills only the copy
    # it makes for itself (see PrivacyMiddleware._match_uncached), so a matcher that hands the
    # same RouteMatch to middlewares with different guards never shares their answers.
    decided: dict[tuple[str, str], tuple[Any, ...] | Decision | None] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )


def _route_path(scope: ASGIScope) -> str:
    # As starlette's get_route_path: the path below the root path.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class RouteMatcher:
    """Finds the endpoint a request will reach by asking the app's routes (``matches``).

    Understands Starlette routes, mounts and hosts, and any route whose match names an
    ``endpoint``. A framework whose routes match without naming the endpoint subclasses
    this and overrides :meth:`match_opaque`, :meth:`nested` and :meth:`targets` (the
    FastAPI integration does). Matching never calls an endpoint.
    """

    def match(self, routes: Sequence[Any], scope: ASGIScope) -> RouteMatch | None:
        """The first full match, as the router picks it. A partial match (wrong method)
        or none gives ``None``: the router answers 405 or 404 and no endpoint runs."""
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return self._descend(route, scope, child)
        return None

    def _descend(self, route: Any, scope: ASGIScope, child: ASGIScope) -> RouteMatch | None:
        sub = {**scope, **child}
        endpoint = child.get("endpoint")
        inner = self.children(route)
        if inner:
            found = self.match(inner, sub)
            if found is not None:
                return found
        if endpoint is None:
            opaque = self.match_opaque(route, sub)
            if opaque is None:
                return RouteMatch(None, {}, None)
            inner_route, inner_child = opaque
            return self._descend(inner_route, sub, inner_child)
        spec = self.spec_for(route, endpoint, sub)
        return RouteMatch(spec, sub.get("path_params") or {}, getattr(route, "path", None))

    def children(self, route: Any) -> Sequence[Any] | None:
        """Routes nested in ``route`` that match its child scope (a mount's, a host's)."""
        inner = getattr(route, "routes", None)
        return inner if isinstance(inner, Sequence) else None

    def match_opaque(self, route: Any, scope: ASGIScope) -> tuple[Any, ASGIScope] | None:
        """For a route that matched without naming an endpoint: (inner route, child scope)."""
        return None

    def spec_for(self, route: Any, endpoint: Any, scope: ASGIScope) -> RouteSpec | None:
        """The declaration of the matched endpoint (``scope`` is the child scope)."""
        spec = getattr(endpoint, ROUTE_ATTRIBUTE, None)
        if spec is None and isinstance(endpoint, type):  # a Starlette HTTPEndpoint
            method = scope.get("method", "GET")
            name = "get" if method == "HEAD" and not hasattr(endpoint, "head") else method.lower()
            spec = getattr(getattr(endpoint, name, None), ROUTE_ATTRIBUTE, None)
        return spec if isinstance(spec, RouteSpec) else None

    # -- walking every route, at start-up -------------------------------------------------
    def nested(self, route: Any) -> Sequence[Any]:
        """Every route below ``route``, for :meth:`declarations`."""
        return self.children(route) or ()

    def targets(self, route: Any) -> Iterator[object]:
        """What a declaration may sit on: the endpoint, a mounted app, endpoint methods."""
        for target in (getattr(route, "endpoint", None), getattr(route, "app", None)):
            if target is None:
                continue
            yield target
            if isinstance(target, type):
                for name in ("get", "head", "post", "put", "patch", "delete", "options"):
                    yield getattr(target, name, None)

    def walk(self, routes: Sequence[Any]) -> Iterator[Any]:
        seen: set[int] = set()
        stack = list(routes)
        while stack:
            route = stack.pop()
            if id(route) in seen:
                continue
            seen.add(id(route))
            yield route
            stack.extend(self.nested(route))

    def declarations(self, routes: Sequence[Any]) -> Iterator[RouteSpec]:
        """Every declaration reachable from ``routes``, for validation at start-up."""
        for route in self.walk(routes):
            for target in self.targets(route):
                spec = getattr(target, ROUTE_ATTRIBUTE, None)
                if isinstance(spec, RouteSpec):
                    yield spec

    def cacheable(self, routes: Sequence[Any]) -> bool:
        """False when a match may depend on more than method and path (host routing)."""
        return not any(isinstance(route, Host) for route in self.walk(routes))


def _find_routes(app: Any) -> Sequence[Any] | None:
    """The route list of the app this middleware wraps, found along the ``.app`` chain."""
    seen: set[int] = set()
    obj = app
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        routes = getattr(obj, "routes", None)
        if isinstance(routes, list):
            return routes
        obj = getattr(obj, "app", None)
    return None


# -- body plans -------------------------------------------------------------------------------
_PASS, _JSON, _LINES, _SSE, _TEXT, _REFUSE = range(6)
_DROP: Final = 6  # answered or cut already: drop what the app still sends
# Buffered like JSON, above _DROP so that on_send tells them apart with one comparison.
_FORM, _HTML, _SCRIPT = 7, 8, 9
_FREE_TEXT_ONLY: Final = frozenset({_TEXT, _HTML, _SCRIPT})  # nothing to do without detectors

_JSON_LINES: Final = frozenset(
    {
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
# Read with character references decoded (see _markup): HTML, XML (and "+xml").
_MARKUP: Final = frozenset({"text/html", "application/xhtml+xml", "text/xml", "application/xml"})
# Read with string escapes decoded too, replacements written as string escapes.
_SCRIPTS: Final = frozenset(
    {
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/x-javascript",
        "application/ecmascript",
        "application/x-ecmascript",
        "text/ecmascript",
        "text/jscript",
    }
)
_TEXTUAL_APPLICATION: Final = frozenset(
    {
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
        "application/csv",
        "application/sql",
    }
)
_UTF8: Final = frozenset({"utf-8", "ascii"})  # JSON is UTF-8; ASCII is a subset
_CHARSET: Final = re.compile(r"""charset\s*=\s*"?([^";\s]+)"?""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: int
    charset: str = "utf-8"
    reason: str = ""
    utf8: bool = True


# Every printable ASCII character, and the controls a form may hold.
_ASCII: Final = "".join(map(chr, range(0x20, 0x7F))) + "\t\n\r"


def _ascii_compatible(charset: str) -> bool:
    """``charset`` writes ASCII as ASCII, one byte each (not UTF-16, UTF-32, UTF-7 or
    EBCDIC). Form encoding is defined only for such charsets: the HTML standard submits
    a UTF-16 page's forms as UTF-8, and a form's percent-escapes are bytes of it."""
    try:
        return _ASCII.encode(charset) == _ASCII.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def _media_matches(media: str, patterns: frozenset[str]) -> bool:
    """``media`` is listed, or its whole type is (``image/*``), unless it is text in
    disguise: ``image/svg+xml`` is XML, which can hold any text, so only an exact entry
    lets it pass."""
    if media in patterns:
        return True
    if media.endswith(("+xml", "+json")):
        return False
    return media.partition("/")[0] + "/*" in patterns


def _plan_for(content_type: bytes | None, safe: frozenset[str]) -> _Plan:
    if content_type is None:
        return _Plan(_TEXT)  # untyped bodies are read as UTF-8 text
    raw = content_type.decode("latin-1")
    media = raw.partition(";")[0].strip().lower()
    if _media_matches(media, safe):
        return _Plan(_PASS)
    found = _CHARSET.search(raw)
    charset = "utf-8"
    if found:
        try:
            charset = codecs.lookup(found.group(1)).name
        except LookupError:
            return _Plan(_REFUSE, reason="the declared charset is not supported")
    utf8 = charset in _UTF8
    if media == "text/event-stream":
        return _Plan(_SSE, charset, utf8=utf8)
    if media in _JSON_LINES:
        return _Plan(_LINES, charset, utf8=utf8)
    if media == "application/json" or media.endswith("+json"):
        return _Plan(_JSON, charset, utf8=utf8)
    if media == "application/x-www-form-urlencoded":
        if not utf8 and not _ascii_compatible(charset):
            return _Plan(_REFUSE, reason="a form is only read in a charset that keeps ASCII")
        return _Plan(_FORM, charset, utf8=utf8)
    if media in _MARKUP or media.endswith("+xml"):
        return _Plan(_HTML, charset, utf8=utf8)
    if media in _SCRIPTS:
        return _Plan(_SCRIPT, charset, utf8=utf8)
    if media.startswith(("text/", "multipart/")) or media in _TEXTUAL_APPLICATION:
        return _Plan(_TEXT, charset, utf8=utf8)
    return _Plan(
        _REFUSE,
        reason="its media type cannot be redacted (mark it safe, or declare redact=False)",
    )


class _Inflater:
    """Undoes gzip or deflate, in bounded pieces.

    Every gzip member is decoded (a body may hold several, one after the other; zero
    bytes between or after them are padding, as gzip(1) allows). Bytes after the end that
    do not start another member, and data that stops before its end, raise
    :class:`UnparseableBody`: the latter only in :meth:`finish`, called at the end of
    the body, since until then more data may come.

    Input goes to zlib in slices that start small for each stream and double up to
    64 KiB: zlib copies what is left of its input when a stream ends, so a body of many
    small members costs linear time, not the square of its size.
    """

    __slots__ = ("_ended", "_head", "_obj", "_step", "encoding")

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._obj: Any = None  # the open stream (gzip member), None between streams
        self._head = b""  # the first byte of a stream, until there are two
        self._ended = False  # a stream came to its end
        self._step = _INFLATE_STEP

    def _open(self, first: bytes) -> None:
        """Open the stream whose first two bytes are ``first``."""
        if self.encoding == "gzip":
            if first != b"\x1f\x8b":
                raise UnparseableBody(
                    "bytes that are not gzip follow the gzip data"
                    if self._ended
                    else "the gzip data is corrupt"
                )
            self._obj = zlib.decompressobj(31)
        elif self._ended:
            raise UnparseableBody("bytes follow the end of the deflate data")
        else:
            zlib_wrapped = (first[0] & 0x0F) == 8 and (first[0] * 256 + first[1]) % 31 == 0
            self._obj = zlib.decompressobj(15 if zlib_wrapped else -15)
        self._step = _INFLATE_STEP

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self._head:
            data, self._head = self._head + data, b""
        view = memoryview(data)
        pos, end = 0, len(data)
        try:
            while pos < end:
                obj = self._obj
                if obj is None:
                    if self._ended:  # padding after a stream
                        pos = _ZEROS.match(data, pos).end()  # type: ignore[union-attr]
                    if end - pos < 2:
                        self._head = data[pos:]
                        return
                    self._open(data[pos : pos + 2])
                    obj = self._obj
                chunk = view[pos : pos + self._step]
                piece = obj.decompress(chunk, _INFLATE_PIECE)
                if piece:
                    yield piece
                if obj.eof:
                    pos += len(chunk) - len(obj.unused_data)
                    self._obj = None
                    self._ended = True
                    continue
                left = len(obj.unconsumed_tail)
                pos += len(chunk) - left
                if left:
                    continue
                # A full piece may leave output inside zlib with all input consumed.
                while len(piece) == _INFLATE_PIECE and not obj.eof:
                    piece = obj.decompress(b"", _INFLATE_PIECE)
                    if piece:
                        yield piece
                if obj.eof:
                    self._obj = None
                    self._ended = True
                elif self._step < _INFLATE_PIECE:
                    self._step *= 2
        except zlib.error:
            raise UnparseableBody(f"the {self.encoding} data is corrupt") from None

    def finish(self) -> None:
        """At the end of the body: raise unless the data ended where a stream ends."""
        if self._obj is not None or self._head:
            raise UnparseableBody(f"the {self.encoding} data ends before its end")

    def inflate(self, data: bytes, limit: int) -> bytes:
        """A whole body, inflated; :class:`_TooLarge` past ``limit`` bytes (all members)."""
        out: list[bytes] = []
        size = 0
        for piece in self.pieces(data):
            size += len(piece)
            if size > limit:
                raise _TooLarge
            out.append(piece)
        self.finish()
        return b"".join(out)


class _TooLarge(Exception):
    pass


class _NotASubject(Exception):
    """The subject resolver returned something other than a Subject or None."""


def _encoding_of(value: bytes | None) -> str | None:
    """``identity`` → None; ``gzip``/``deflate`` → that; anything else → ``"?"+name``."""
    if value is None:
        return None
    tokens = [t.strip().lower() for t in value.decode("latin-1").split(",")]
    tokens = [t for t in tokens if t and t != "identity"]
    if not tokens:
        return None
    if len(tokens) == 1 and tokens[0] in ("gzip", "x-gzip", "deflate"):
        return "deflate" if tokens[0] == "deflate" else "gzip"
    return "?" + ",".join(tokens)


# Validators and digests of the original body would be wrong for the redacted one, and a
# digest of a body with a card number in it lets a guess be confirmed offline.
_DROP_ON_REWRITE: Final = frozenset(
    {
        b"content-length",
        b"etag",
        b"content-md5",
        b"digest",
        b"content-digest",
        b"repr-digest",
        b"accept-ranges",
    }
)


# -- the middleware -------------------------------------------------------------------------
class PrivacyMiddleware:
    """Checks purpose and consent before personal data is processed; redacts responses.

    >>> app.add_middleware(
    ...     PrivacyMiddleware,
    ...     guard=guard,
    ...     subject_resolver=lambda scope: scope["user"].subject
    ...     if scope["user"].is_authenticated else None,
    ... )

    ``subject_resolver`` reads the authenticated user the host put in the scope (never a
    header the client sets); it may be sync or async and returns a
    :class:`~privguard.Subject` or ``None``. ``routes`` maps ``(method, path template)``
    to a :class:`RouteSpec` (method ``"*"`` for any); routes without an entry are looked
    up for ``@privacy`` on their endpoint. Everything is validated here or, for
    decorator declarations, at lifespan start-up (at the latest on the first request):
    an unknown purpose or category raises :class:`~privguard.PolicyError`.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: Privguard,
        *,
        subject_resolver: SubjectResolver,
        routes: Mapping[tuple[str, str], RouteSpec] | None = None,
        undeclared: Undeclared | str = Undeclared.REDACT,
        anonymous: Anonymous | str = Anonymous.REFUSE,
        problem_base: str = DEFAULT_PROBLEM_BASE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_line: int = 1 << 20,
        safe_media_types: Sequence[str] = DEFAULT_SAFE_MEDIA_TYPES,
        route_matcher: RouteMatcher | None = None,
        www_authenticate: str | None = None,
    ) -> None:
        if not callable(subject_resolver):
            raise PolicyError("subject_resolver must be a callable taking the ASGI scope")
        try:
            self.undeclared = Undeclared(undeclared)
            self.anonymous = Anonymous(anonymous)
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
        if not isinstance(max_body_size, int) or max_body_size < 1:
            raise PolicyError("max_body_size must be a positive number of bytes")
        if not isinstance(max_line, int) or max_line < 1:
            raise PolicyError("max_line must be a positive number of characters")
        self.app = app
        self.guard = guard
        self.problem_base = check_base(problem_base)
        self.max_body_size = max_body_size
        self.max_line = max_line
        self.safe_media_types = frozenset(self._check_media(m) for m in safe_media_types)
        self.matcher = route_matcher or RouteMatcher()
        self.redactor = guard.redactor
        # Privguard.acheck only forwards to its decider: skip that extra coroutine per
        # request unless a subclass or the instance replaced it (tracing, tests).
        self._acheck = guard.acheck
        # And when the decision needs no consent lookup, no coroutine at all.
        self._without_io: Any = None
        if type(guard).acheck is Privguard.acheck and "acheck" not in vars(guard):
            self._acheck = guard.decider.acheck
            self._without_io = guard.decider.decided_without_io
        self._scanner = self.redactor.scanner
        self._resolver = subject_resolver
        call: Any = subject_resolver
        self._resolver_is_async = inspect.iscoroutinefunction(call) or (
            not inspect.isfunction(call) and inspect.iscoroutinefunction(call.__call__)
        )
        self._auth_headers: tuple[tuple[bytes, bytes], ...] = (
            ((b"www-authenticate", www_authenticate.encode("latin-1")),) if www_authenticate else ()
        )
        taxonomy = guard.policy.taxonomy
        self._table: list[tuple[str, re.Pattern[str], dict[str, Any], str, RouteSpec]] = []
        for (method, template), spec in (routes or {}).items():
            if not isinstance(spec, RouteSpec):
                raise PolicyError(f"route {method} {template}: expected a RouteSpec")
            spec.validate(taxonomy)
            if not isinstance(template, str) or not template.startswith("/"):
                raise PolicyError(f"route template {template!r} must start with '/'")
            regex, _, convertors = compile_path(template)
            self._table.append((method.upper(), regex, convertors, template, spec))
        self._routes: Sequence[Any] | None = None
        self._routes_len = -1
        self._cacheable = True
        self._fast = False  # cache lookups inline: no route table, no host routes
        self._cache: dict[tuple[str, str, str], RouteMatch | None] = {}
        self._plans: dict[bytes | None, _Plan] = {}
        self._replacers: dict[RecipientKind | None, Any] = {}
        self._validated = False
        self._opaque_warned = False
        # Set only by privguard.testing.as_subject: never from anything a client sends.
        self._subject_override: Any = _NO_OVERRIDE

    @staticmethod
    def _check_media(media: str) -> str:
        media = media.strip().lower()
        if media.count("/") != 1 or media.startswith("/") or media.endswith("/"):
            raise PolicyError(f"invalid media type {media!r} (use type/subtype or type/*)")
        return media

    # -- start-up ---------------------------------------------------------------------------
    def _validate(self) -> None:
        routes = _find_routes(self.app)
        if routes is not None:
            self._adopt(routes)
        self._validated = True

    def _adopt(self, routes: Sequence[Any]) -> None:
        taxonomy = self.guard.policy.taxonomy
        for spec in self.matcher.declarations(routes):
            spec.validate(taxonomy)
        self._cacheable = self.matcher.cacheable(routes)
        self._routes = routes
        self._fast = self._cacheable and not self._table

    def _lifespan(self, receive: Receive) -> Receive:
        async def receive_validating() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and not self._validated:
                self._validate()  # PolicyError here fails the start-up
            return message

        return receive_validating

    # -- per request --------------------------------------------------------------------------
    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and not self._validated:
                receive = self._lifespan(receive)
            await self.app(scope, receive, send)
            return
        if not self._validated:
            self._validate()

        # The hot path: a cached match for this method and path (see _match).
        if self._fast and len(self._routes) == self._routes_len:  # type: ignore[arg-type]
            key = (scope["method"], scope.get("root_path", ""), scope["path"])
            found = self._cache.get(key, _MISS)
            if found is _MISS:
                found = self._match(scope)
        else:
            found = self._match(scope)
        spec = found.spec if found is not None else None

        subject: Subject | None
        if self._subject_override is not _NO_OVERRIDE:
            subject = self._subject_override
        else:
            # Free when nothing is raised (3.11+). A resolver that fails has not said who
            # is asking: fail closed, as when the decision cannot be made.
            try:
                resolved: Any = self._resolver(scope)
                if resolved is not None and type(resolved) is not Subject:
                    if self._resolver_is_async or inspect.isawaitable(resolved):
                        resolved = await resolved
                    if resolved is not None and not isinstance(resolved, Subject):
                        raise _NotASubject
            except Exception as exc:
                self._log_resolver_failure(spec, exc)
                purpose = spec.purpose if spec is not None else None
                await Problem.unavailable(purpose).send(send, self.problem_base)
                return
            subject = resolved

        # The hottest path: this route already allowed this kind of subject, statically.
        if spec is not None and subject is not None and spec.scope is None:
            known = found.decided.get((subject.kind, subject.jurisdiction))
            if type(known) is tuple:
                token = _CONTEXT.set(_new_context(PrivacyContext, (subject,) + known))  # noqa: RUF005 (faster)
                try:
                    if spec.redact:
                        await _Responder(self, send, spec.recipient, scope["method"] == "HEAD").run(
                            _without_pathsend(scope), receive
                        )
                    else:
                        await self.app(scope, receive, send)
                finally:
                    _CONTEXT.reset(token)
                return

        if spec is None:
            if self.undeclared is Undeclared.REFUSE:
                await Problem.undeclared().send(send, self.problem_base)
                return
            ctx = _new_context(
                PrivacyContext, (subject, None, None, (), EMPTY_SCOPE, None, None, self.guard)
            )
            redact = self.undeclared is Undeclared.REDACT
            audience: RecipientKind | None = None
        else:
            decision = None
            check_scope: Scope | None = None
            if spec.purpose is not None and subject is not None:
                try:
                    if spec.scope is not None:
                        params = found.path_params if found is not None else {}
                        check_scope = spec.scope_for({**scope, "path_params": params})
                    if self._without_io is not None:
                        # Scoped routes are not remembered: their decision needs the scope.
                        memo = found.decided if spec.scope is None else None
                        kind = (subject.kind, subject.jurisdiction)
                        known = _MISS if memo is None else memo.get(kind, _MISS)
                        if known is _MISS:
                            decision = self._without_io(
                                subject,
                                spec.purpose,
                                spec.categories,
                                recipient=spec.recipient,
                                scope=check_scope,
                            )
                            if memo is not None and len(memo) < _MEMO_LIMIT:
                                memo[kind] = (
                                    self._context_fields(spec, decision, None, found)
                                    if decision is not None and decision.allowed
                                    else decision
                                )
                        else:
                            decision = known[1] if type(known) is tuple else known
                    if decision is None:
                        decision = await self._acheck(
                            subject,
                            spec.purpose,
                            spec.categories,
                            recipient=spec.recipient,
                            scope=check_scope,
                        )
                except Exception as exc:
                    self._log_failure(spec, exc)
                    await Problem.unavailable(spec.purpose).send(send, self.problem_base)
                    return
                if not decision.allowed:
                    await Problem.denied(decision).send(send, self.problem_base)
                    return
            elif spec.categories and subject is None and self.anonymous is Anonymous.REFUSE:
                await Problem.subject_required(spec.purpose, SUBJECT_REQUIRED).send(
                    send, self.problem_base, self._auth_headers
                )
                return
            audience = spec.recipient
            fields = self._context_fields(spec, decision, check_scope, found)
            ctx = _new_context(PrivacyContext, (subject,) + fields)  # noqa: RUF005 (as above)
            redact = spec.redact

        token = _CONTEXT.set(ctx)
        try:
            if redact:
                await _Responder(self, send, audience, scope["method"] == "HEAD").run(
                    _without_pathsend(scope), receive
                )
            else:
                await self.app(scope, receive, send)
        finally:
            _CONTEXT.reset(token)

    def _context_fields(
        self,
        spec: RouteSpec,
        decision: Decision | None,
        check_scope: Scope | None,
        found: RouteMatch | None,
    ) -> tuple[Any, ...]:
        """The privacy context's fields after the subject, for a declared route."""
        return (
            spec.purpose,
            decision,
            spec.categories,
            EMPTY_SCOPE if check_scope is None else check_scope,
            spec.recipient,
            None if found is None else found.template,
            self.guard,
        )

    def _log_failure(self, spec: RouteSpec, exc: Exception) -> None:
        # privguard's own messages hold no personal data; others might, so name the type.
        what = str(exc) if isinstance(exc, PrivguardError) else type(exc).__name__
        logger.error(
            "privguard: no decision for purpose %r, failing closed: %s", spec.purpose, what
        )

    def _log_resolver_failure(self, spec: RouteSpec | None, exc: Exception) -> None:
        # The resolver is the host's code and its message may name the user: type only.
        if isinstance(exc, _NotASubject):
            what = "it returned neither a Subject nor None"
        else:
            what = f"it raised {type(exc).__name__}"
        logger.error(
            "privguard: the subject resolver failed for purpose %r, failing closed: %s",
            spec.purpose if spec is not None else None,
            what,
        )

    def _match(self, scope: ASGIScope) -> RouteMatch | None:
        method: str = scope["method"]
        if self._table:
            path = _route_path(scope)
            for table_method, regex, convertors, template, spec in self._table:
                if table_method != "*" and table_method != method:
                    continue
                m = regex.match(path)
                if m is not None:
                    params = {k: convertors[k].convert(v) for k, v in m.groupdict().items()}
                    return RouteMatch(spec, params, template)
        routes = self._routes
        if routes is None:
            app = scope.get("app")
            routes = getattr(app, "routes", None) if app is not None else None
            if not isinstance(routes, list):
                return None
            self._adopt(routes)
        if not self._cacheable:
            return self._match_uncached(routes, scope)
        if len(routes) != self._routes_len:
            self._cache.clear()
            self._routes_len = len(routes)
        key = (method, scope.get("root_path", ""), scope["path"])
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._match_uncached(routes, scope)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _match_uncached(self, routes: Sequence[Any], scope: ASGIScope) -> RouteMatch | None:
        probe = dict(scope)  # matching may write to the scope; the real one stays clean
        probe.pop("fastapi", None)
        found = self.matcher.match(routes, probe)
        if found is None:
            return None
        # This middleware's own copy, with an empty memo of decisions: the matcher's object
        # may be shared (a custom matcher, a middleware with another guard).
        found = replace(found)
        opaque = found.spec is None and found.template is None
        if opaque and not self._opaque_warned:
            self._opaque_warned = True
            logger.warning(
                "privguard: a route matched without naming its endpoint; its declaration "
                "cannot be found (FastAPI apps: use privguard_fastapi.PrivacyMiddleware)"
            )
        return found

    def _plan(self, content_type: bytes | None) -> _Plan:
        plan = self._plans.get(content_type)
        if plan is None:
            plan = _plan_for(content_type, self.safe_media_types)
            if len(self._plans) < _CACHE_LIMIT:
                self._plans[content_type] = plan
        return plan

    def _replacer(self, audience: RecipientKind | None) -> Any:
        replacer = self._replacers.get(audience)
        if replacer is None:
            replacer = self._replacers[audience] = self.redactor.text_replacer(audience)
        return replacer


class _NoOverride:
    __slots__ = ()


_NO_OVERRIDE: Final = _NoOverride()
_MISS: Final[Any] = object()
# PrivacyContext is a named tuple; tuple.__new__ with the fields in order builds one in a
# fifth of the time of the keyword constructor. The field order is checked at import.
_new_context: Final = tuple.__new__
_FIELDS: Final = ("subject", "purpose", "decision", "categories", "scope", "audience", "route")
if PrivacyContext._fields != (*_FIELDS, "guard"):  # pragma: no cover - a programming error
    raise ImportError("PrivacyContext fields changed: update _middleware._new_context calls")


_HIDDEN_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopysend")


def _without_pathsend(scope: ASGIScope) -> ASGIScope:
    """Hide send-a-file-by-path extensions: a file sent by path could not be redacted."""
    extensions = scope.get("extensions")
    if not extensions or not any(e in extensions for e in _HIDDEN_EXTENSIONS):
        return scope
    kept = {k: v for k, v in extensions.items() if k not in _HIDDEN_EXTENSIONS}
    return {**scope, "extensions": kept}


# -- the per-request responder ------------------------------------------------------------------
class _Responder:
    """Redacts one response. Holds ``http.response.start`` only while a rewrite is possible."""

    __slots__ = (
        "audience",
        "chunks",
        "failure",
        "head",
        "inflater",
        "mode",
        "mw",
        "plan",
        "send",
        "size",
        "start",
        "started",
        "stream",
    )

    def __init__(
        self, mw: PrivacyMiddleware, send: Send, audience: RecipientKind | None, head: bool
    ) -> None:
        self.mw = mw
        self.send = send
        self.audience = audience
        self.head = head
        self.mode = -1
        self.start: Message = {}
        self.plan = _Plan(_PASS)
        self.chunks: list[bytes] = []
        self.size = 0
        self.inflater: _Inflater | None = None
        self.stream: Any = None
        self.started = False
        self.failure: BaseException | None = None

    async def run(self, scope: ASGIScope, receive: Receive) -> None:
        await self.mw.app(scope, receive, self.on_send)
        if self.failure is not None:
            # The app swallowed the error we raised into it: the stream is still cut.
            raise self.failure

    async def on_send(self, message: Message) -> None:
        kind = message["type"]
        mode = self.mode
        if kind == "http.response.body":
            if mode == _PASS:
                await self.send(message)
            elif mode == _JSON:
                await self._json_body(message)
            elif mode == _DROP:
                if self.failure is not None:
                    raise self.failure
            elif mode > _DROP:  # forms, HTML, scripts: buffered as JSON is
                await self._json_body(message)
            else:
                await self._stream_body(message)
        elif kind == "http.response.start":
            await self._on_start(message)
        elif mode == _PASS:
            await self.send(message)
        elif mode == _DROP:
            if self.failure is not None:
                raise self.failure
        elif kind == "http.response.pathsend":
            await self._refuse("a file sent by path cannot be redacted")
        else:  # trailers and extension messages follow the body we sent
            await self.send(message)

    # -- the start ----------------------------------------------------------------------------
    async def _on_start(self, message: Message) -> None:
        self.start = message
        content_type = encoding = None
        for key, value in message.get("headers", ()):
            if key == b"content-type":
                content_type = value
            elif key == b"content-encoding":
                encoding = value
        plan = self.mw._plan(content_type)
        status = message["status"]
        if plan.kind == _PASS or status < 200 or status in (204, 304):
            self.mode = _PASS
            await self.send(message)
            return
        if plan.kind == _REFUSE:
            await self._refuse(plan.reason)
            return
        if status == 206:
            await self._refuse("a partial response (range) cannot be redacted")
            return
        coding = _encoding_of(encoding)
        if coding is not None:
            if coding.startswith("?"):
                await self._refuse(f"its content encoding {coding[1:]!r} cannot be undone")
                return
            self.inflater = _Inflater(coding)
        if self.mw._scanner is None and plan.kind in _FREE_TEXT_ONLY:
            # Free-text detection is off for this redactor: text passes as it is.
            self.mode = _PASS
            self.inflater = None
            await self.send(message)
            return
        self.plan = plan
        self.mode = plan.kind

    def _headers(self, length: int | None, *, json_utf8: bool = False) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for key, value in self.start.get("headers", ()):
            if key in _DROP_ON_REWRITE or (
                self.inflater is not None and key == b"content-encoding"
            ):
                continue
            if json_utf8 and key == b"content-type":
                value = value.split(b";", 1)[0]
            out.append((key, value))
        if length is not None and not self.head:
            out.append((b"content-length", str(length).encode("ascii")))
        return out

    async def _send_start(self, length: int | None, *, json_utf8: bool = False) -> None:
        start = dict(self.start)
        start["headers"] = self._headers(length, json_utf8=json_utf8)
        self.started = True
        await self.send(start)

    async def _refuse(self, reason: str) -> None:
        self.mode = _DROP
        self.chunks = []
        if self.started:
            # The start and some redacted bytes are out: nothing more is released, and the
            # error makes the server abort the connection, so the client sees the response
            # break off instead of a complete one.
            logger.warning("privguard: response stream cut after its start: %s", reason)
            self.failure = RedactionError(f"response stream cut: {reason}")
            raise self.failure
        await Problem.unredactable(reason).send(self.send, self.mw.problem_base)

    async def _too_large(self) -> None:
        self.mode = _DROP
        self.chunks = []
        await Problem.too_large(self.mw.max_body_size).send(self.send, self.mw.problem_base)

    # -- JSON, forms, HTML, scripts: buffered, redacted once ------------------------------------
    async def _json_body(self, message: Message) -> None:
        body: bytes = message.get("body", b"")
        if body:
            self.size += len(body)
            if self.size > self.mw.max_body_size:
                await self._too_large()
                return
            self.chunks.append(body)
        if message.get("more_body", False):
            return
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        try:
            if self.inflater is not None and len(data) > _THREAD_MIN:
                out = await anyio.to_thread.run_sync(self._inflate_and_redact, data)
            else:
                if self.inflater is not None:
                    data = self.inflater.inflate(data, self.mw.max_body_size)
                if len(data) > _THREAD_MIN:
                    out = await anyio.to_thread.run_sync(self._redact_whole, data)
                else:
                    out = self._redact_whole(data)
        except _TooLarge:
            await self._too_large()
            return
        except UnparseableBody as exc:
            await self._refuse(exc.reason)
            return
        except Exception as exc:  # a redaction bug must not release the body
            logger.error("privguard: body redaction failed: %s", type(exc).__name__)
            await self._refuse("redaction failed")
            return
        await self._send_start(len(out), json_utf8=self.mode == _JSON and not self.plan.utf8)
        await self.send({"type": "http.response.body", "body": out, "more_body": False})

    def _inflate_and_redact(self, data: bytes) -> bytes:
        # A large compressed body is inflated off the event loop too: many small gzip
        # members take about 1.6 µs each.
        assert self.inflater is not None
        return self._redact_whole(self.inflater.inflate(data, self.mw.max_body_size))

    def _redact_whole(self, data: bytes) -> bytes:
        """A whole body, redacted for its media type (an empty one stays empty)."""
        if not data:
            return data
        mode = self.mode
        if mode == _JSON:
            return self._redact_json(data)
        if mode == _FORM:
            return self._redact_form(data)
        return self._redact_markup(data)

    def _redact_json(self, data: bytes) -> bytes:
        mw = self.mw
        source: bytes | str = data
        if not self.plan.utf8:
            try:
                source = data.decode(self.plan.charset)
            except UnicodeDecodeError:
                raise UnparseableBody(f"the body is not valid {self.plan.charset}") from None
        try:
            return mw.redactor.redact_json(source, audience=self.audience)
        except UnparseableBody:
            raise
        except RedactionError as exc:
            raise UnparseableBody(str(exc).rstrip(".")) from None

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode(self.plan.charset)
        except UnicodeDecodeError:
            raise UnparseableBody(f"the body is not valid {self.plan.charset}") from None

    def _redact_form(self, data: bytes) -> bytes:
        """``application/x-www-form-urlencoded``: each pair redacted as ``{key: value}``
        (key names and the detectors apply, to keys too), in order, repeats kept;
        re-encoded."""
        charset = self.plan.charset
        try:
            pairs = parse_qsl(
                self._decode(data),
                keep_blank_values=True,
                strict_parsing=True,
                encoding=charset,
                errors="strict",
            )
        except UnicodeDecodeError:
            raise UnparseableBody(f"the form is not valid {charset}") from None
        except ValueError:
            raise UnparseableBody("the form cannot be parsed") from None
        redact = self.mw.redactor.redact
        audience = self.audience
        out: list[tuple[str, str]] = []
        for key, value in pairs:
            # One item back; its key redacted too, as JSON keys are.
            ((new_key, kept),) = redact({key: value}, audience=audience).items()
            out.append((new_key, "" if kept is None else kept))  # removed: the key stays
        return urlencode(out, safe="*", encoding=charset, errors="strict").encode("ascii")

    def _redact_markup(self, data: bytes) -> bytes:
        """HTML, XML and scripts: escaped text decoded before the detectors (``_markup``)."""
        mw = self.mw
        charset = self.plan.charset
        text = redact_markup(
            self._decode(data),
            mw._scanner,  # type: ignore[arg-type]
            mw._replacer(self.audience),
            charset=charset,
            script=self.mode == _SCRIPT,
        )
        return text.encode(charset)

    # -- text, NDJSON, SSE: streamed ------------------------------------------------------------
    def _make_stream(self) -> ByteStreamRedactor:
        mw = self.mw
        inner: TextRedactor
        if self.mode == _TEXT:
            inner = TextStreamRedactor(mw._scanner, mw._replacer(self.audience))  # type: ignore[arg-type]
        elif self.mode == _LINES:
            inner = LineStreamRedactor(self._json_line, max_line=mw.max_line)
        else:
            inner = SseStreamRedactor(self._json_line, self._text, max_event=mw.max_line)
        return ByteStreamRedactor(inner, self.plan.charset)

    def _json_line(self, line: str) -> str:
        if not line.strip():
            return line
        return self.mw.redactor.redact_json(line, audience=self.audience).decode("utf-8")

    def _text(self, text: str) -> str:
        """SSE data that is not JSON, and field values: an HTML fragment (htmx swaps them
        into the page) or text, read with references and escapes decoded, as HTML is.
        Text with nothing to decode takes the plain path and its prefilter."""
        mw = self.mw
        if mw._scanner is None or reads_the_same_decoded(text):
            return mw.redactor.redact_text(text, audience=self.audience)
        return redact_markup(
            text, mw._scanner, mw._replacer(self.audience), charset=self.plan.charset
        )

    async def _stream_body(self, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        try:
            if self.stream is None:
                self.stream = self._make_stream()
            stream = self.stream
            if self.inflater is None:
                out = stream.feed(body) if body else b""
            else:
                parts = [stream.feed(piece) for piece in self.inflater.pieces(body)]
                out = b"".join(parts)
                if not more:
                    self.inflater.finish()  # before the held tail is released
            if not more:
                out += stream.finish()
        except UnparseableBody as exc:
            await self._refuse(exc.reason)
            return
        except Exception as exc:  # a redaction bug must not release the body
            logger.error("privguard: stream redaction failed: %s", type(exc).__name__)
            await self._refuse("redaction failed")
            return
        if not self.started:
            await self._send_start(None if more else len(out))
        if out or not more:
            await self.send({"type": "http.response.body", "body": out, "more_body": more})
