"""``AnalyticsOptOutMiddleware``: an analytics opt-out that holds, in pure ASGI.

Per HTTP request: read the signals (:mod:`._signals`), put the status in a
``ContextVar``, and, for an opted-out person, answer first-party collector paths itself
and rewrite the response on the way out (a per-request :class:`_OptOutResponder`):
analytics cookies expired and never set, a second Content-Security-Policy that leaves the
collectors out, and HTML with privguard's script first in ``<head>`` and no analytics
loaders. Lifespan and websocket scopes pass through untouched.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from .._errors import RedactionError, UnparseableBody
from .._middleware import _encoding_of, _Inflater
from ._collectors import AnalyticsVendor
from ._config import AnalyticsConfig, CspMode
from ._cookies import CookieRules, request_host
from ._csp import build_policy, nonce_of, parse_policies
from ._html import HtmlRewriter
from ._payloads import AnalyticsHitKind, classify_parts
from ._signals import (
    AnalyticsStatus,
    cookies_of,
    reset_status,
    resolve_status,
    resolve_subject,
    set_status,
)
from ._transport import BlockedHit, record_blocked

if TYPE_CHECKING:
    from .._guard import Privguard

__all__ = ["AnalyticsOptOutMiddleware"]

logger = logging.getLogger("privguard.analytics")

_HTML: Final = frozenset({"text/html", "application/xhtml+xml"})
# A script served with a policy restricts that script only when it runs as a worker:
# then the added policy is what keeps a worker from reaching a collector.
_SCRIPT: Final = frozenset(
    {"application/javascript", "text/javascript", "application/ecmascript", "text/ecmascript"}
)
# The body changes, so what described the old one goes (as in PrivacyMiddleware).
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
_CODINGS_WE_UNDO: Final = frozenset({"gzip", "x-gzip", "deflate", "identity", "*"})
_UNREWRITABLE_CHARSETS: Final = ("utf-16", "utf-32", "ucs-2", "ucs2", "utf16", "utf32")
_HIDDEN_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopysend")


def _media(content_type: bytes | None) -> tuple[str, str]:
    if content_type is None:
        return "", ""
    raw = content_type.decode("latin-1")
    media, _, params = raw.partition(";")
    return media.strip().lower(), params.lower()


class AnalyticsOptOutMiddleware:
    """Holds an analytics opt-out on the server: no tag, no hit, no analytics cookie.

    >>> app.add_middleware(
    ...     AnalyticsOptOutMiddleware,
    ...     guard=guard,
    ...     config=AnalyticsConfig(measurement_ids=["G-ABC123XYZ"], subject_resolver=...),
    ... )

    ``guard`` reads a signed-in subject's stored preference (an objection to the
    ``analytics`` purpose in the consent ledger); without one only cookies, headers and
    jurisdictions count. The subject comes from ``config.subject_resolver`` or, when
    this middleware runs inside :class:`~privguard.PrivacyMiddleware`, from the privacy
    context. ``privguard.current_analytics()`` gives endpoints the outcome.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: Privguard | None = None,
        *,
        config: AnalyticsConfig | None = None,
    ) -> None:
        self.app = app
        self.guard = guard
        self.config = config if config is not None else AnalyticsConfig()
        cfg = self.config
        self.cookies = CookieRules(cfg.analytics_cookies, cfg.cookie_domains)
        self._vary = ", ".join(cfg.honored_headers).encode("latin-1")
        self._csp_header = (
            b"content-security-policy-report-only"
            if cfg.csp is CspMode.REPORT_ONLY
            else b"content-security-policy"
        )
        self._extra_sources = {
            "script-src": cfg.csp_script_src,
            "connect-src": cfg.csp_connect_src,
            "img-src": cfg.csp_img_src,
        }
        self._default_csp = self.csp_for(())
        self._collector_paths = cfg.collector_paths

    # -- what a response gets -----------------------------------------------------------
    def csp_for(self, app_policies: Sequence[bytes]) -> bytes:
        """The added policy, given the app's own ``Content-Security-Policy`` values."""
        cfg = self.config
        inherited = (
            parse_policies(v.decode("latin-1") for v in app_policies) if cfg.csp_inherit else []
        )
        return build_policy(
            allow=cfg.csp_allow,
            extra=self._extra_sources,
            inherited=inherited,
            hosts=cfg.collector_hosts,
            report_uri=cfg.csp_report_uri,
        ).encode("latin-1")

    def is_collector_path(self, scope: ASGIScope) -> bool:
        """A first-party collector (a proxy to GA, Adobe or Mixpanel on the app's origin)."""
        if not self.config.block_collector_paths:
            return False
        path: str = scope.get("path", "")
        if any(path.startswith(p) for p in self._collector_paths):
            return True
        host = request_host(scope.get("headers") or ()) or ""
        query = scope.get("query_string", b"").decode("latin-1")
        return classify_parts(scope.get("method", "GET"), host, path, query) is not None

    # -- per request --------------------------------------------------------------------
    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        subject = await resolve_subject(self.config, scope)
        status = await resolve_status(scope, self.config, self.guard, subject=subject)
        token = set_status(status)
        try:
            if not status.opted_out:
                await self.app(scope, receive, self._vary_send(send))
            elif self.is_collector_path(scope):
                await self._answer_collector(scope, status, send)
            else:
                await _OptOutResponder(self, scope, send).run(receive)
        finally:
            reset_status(token)

    def _vary_send(self, send: Send) -> Send:
        vary = self._vary

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                for key, value in headers:
                    if key.lower() == b"content-type":
                        if _media(value)[0] in _HTML:
                            message = {**message, "headers": [*headers, (b"vary", vary)]}
                        break
            await send(message)

        return send_with_vary

    def expiring_cookies(self, scope: ASGIScope) -> list[tuple[bytes, bytes]]:
        headers = scope.get("headers") or ()
        return self.cookies.expiring(
            cookies_of(headers), request_host(headers), scope.get("scheme") == "https"
        )

    async def _answer_collector(
        self, scope: ASGIScope, status: AnalyticsStatus, send: Send
    ) -> None:
        signal = status.signal.value if status.signal else "unknown"
        logger.info(
            "privguard: analytics hit to a first-party collector path blocked (opted out: %s)",
            signal,
        )
        if self.guard is not None:
            host = request_host(scope.get("headers") or ()) or ""
            found = classify_parts(
                scope.get("method", "GET"),
                host,
                scope.get("path", ""),
                scope.get("query_string", b"").decode("latin-1"),
            )
            vendor, kind = (
                (found[0], found[1])
                if found is not None
                else (AnalyticsVendor.GOOGLE_ANALYTICS, AnalyticsHitKind.OTHER)
            )
            record_blocked(
                self.guard.telemetry, BlockedHit(vendor, kind, host, f"opted_out:{signal}")
            )
        headers = [(b"cache-control", b"no-store"), *self.expiring_cookies(scope)]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_SHARED_ONLY: Final = frozenset({"public", "proxy-revalidate"})


def _private(values: Sequence[bytes]) -> bytes:
    """The app's ``Cache-Control`` made private: what it allowed shared caches goes, the
    rest (``no-store``, ``max-age``, ...) stays, so nothing is loosened."""
    directives = ["private"]
    for value in values:
        for part in value.decode("latin-1").split(","):
            directive = part.strip()
            name = directive.split("=", 1)[0].strip().lower()
            if directive and name not in _SHARED_ONLY and name not in ("private", "s-maxage"):
                directives.append(directive)
    return ", ".join(dict.fromkeys(directives)).encode("latin-1")


def _opted_out_scope(scope: ASGIScope) -> ASGIScope:
    """The app sees an ``Accept-Encoding`` privguard can undo (no br, zstd), and no
    send-a-file-by-path extension: an HTML body must pass through privguard."""
    headers = []
    for key, value in scope.get("headers") or ():
        if key.lower() == b"accept-encoding":
            kept = [
                token
                for token in value.decode("latin-1").split(",")
                if token.split(";")[0].strip().lower() in _CODINGS_WE_UNDO
            ]
            if not kept:
                continue
            value = ",".join(kept).strip().encode("latin-1")
        headers.append((key, value))
    new: dict[str, Any] = {**scope, "headers": headers}
    extensions = scope.get("extensions")
    if extensions and any(e in extensions for e in _HIDDEN_EXTENSIONS):
        new["extensions"] = {k: v for k, v in extensions.items() if k not in _HIDDEN_EXTENSIONS}
    return new


_PASS, _HOLD, _STREAM, _DROP = range(4)
# A single-body HTML response up to this size (decompressed) is rewritten whole.
_WHOLE_LIMIT: Final = 8 * 1024 * 1024


class _OptOutResponder:
    """One response to an opted-out person."""

    __slots__ = ("head", "inflater", "mode", "mw", "rewriter", "scope", "send", "start")

    def __init__(self, mw: AnalyticsOptOutMiddleware, scope: ASGIScope, send: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.send = send
        self.head = scope.get("method") == "HEAD"
        self.mode = _PASS
        self.start: Message = {}
        self.inflater: _Inflater | None = None
        self.rewriter: HtmlRewriter | None = None

    async def run(self, receive: Receive) -> None:
        await self.mw.app(_opted_out_scope(self.scope), receive, self.on_send)

    async def on_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._on_start(message)
        elif kind == "http.response.body" and self.mode in (_HOLD, _STREAM):
            await self._on_body(message)
        elif self.mode != _DROP:
            await self.send(message)

    async def _on_start(self, message: Message) -> None:
        mw = self.mw
        cfg = mw.config
        raw: list[tuple[bytes, bytes]] = []
        content_type = encoding = None
        app_csp: list[bytes] = []
        for key, value in message.get("headers", ()):
            name = key.lower()
            if name == b"set-cookie" and mw.cookies.blocks(value):
                continue  # the app's own analytics cookie: not for this person (C23)
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value
            elif name == b"content-security-policy":
                app_csp.append(value)
            raw.append((key, value))
        raw.extend(mw.expiring_cookies(self.scope))
        media, params = _media(content_type)
        html = media in _HTML
        if (html or media in _SCRIPT) and cfg.csp is not CspMode.OFF:
            csp = mw.csp_for(app_csp) if app_csp else mw._default_csp
            raw.append((mw._csp_header, csp))
        status = message["status"]
        rewrite = html and not self.head and status not in (204, 304) and status >= 200
        if html:
            # This page is this person's: no shared cache may keep it for someone else.
            kept = [v for k, v in raw if k.lower() == b"cache-control"]
            raw = [(k, v) for k, v in raw if k.lower() != b"cache-control"]
            raw.append((b"cache-control", _private(kept)))
            raw.append((b"vary", mw._vary))
        coding = _encoding_of(encoding)
        if rewrite and (
            (coding is not None and coding.startswith("?"))
            or any(c in params for c in _UNREWRITABLE_CHARSETS)
        ):
            logger.warning(
                "privguard: an HTML response to an opted-out person could not be rewritten "
                "(content encoding or charset); its Content-Security-Policy still applies"
            )
            rewrite = False
        if not rewrite:
            if self.head and html:
                raw = [(k, v) for k, v in raw if k.lower() != b"content-length"]
            self.mode = _PASS
            await self.send({**message, "headers": raw})
            return
        if coding is not None:
            self.inflater = _Inflater(coding)
        self.rewriter = HtmlRewriter(
            ids=cfg.measurement_ids,
            tokens=cfg.mixpanel_tokens,
            loaders=cfg.loader_patterns,
            nonce=nonce_of(parse_policies(v.decode("latin-1") for v in app_csp)),
            inject=cfg.inject_head_script,
            max_head_scan=cfg.max_head_scan,
            max_script=cfg.max_script,
        )
        self.start = {
            **message,
            "headers": [
                (k, v)
                for k, v in raw
                if k.lower() not in _DROP_ON_REWRITE
                and not (coding is not None and k.lower() == b"content-encoding")
            ],
        }
        self.mode = _HOLD

    async def _on_body(self, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        rewriter = self.rewriter
        assert rewriter is not None
        pieces = self.inflater.pieces(body) if self.inflater is not None else iter((body,))
        try:
            if self.mode == _HOLD and not more:
                # One body: read it whole (bounded), so every id in it goes in the head.
                whole: list[bytes] = []
                size = 0
                for piece in pieces:
                    whole.append(piece)
                    size += len(piece)
                    if size > _WHOLE_LIMIT:
                        break
                else:
                    if self.inflater is not None:
                        self.inflater.finish()  # cut short, or junk after the end: refused
                    out = rewriter.rewrite(b"".join(whole))
                    await self._send_start(len(out))
                    await self.send({"type": "http.response.body", "body": out})
                    self.mode = _DROP
                    return
                pieces = itertools.chain(whole, pieces)  # too large to hold: stream it
            if self.mode == _HOLD:
                await self._send_start(None)
                self.mode = _STREAM
            for piece in pieces:
                out = rewriter.feed(piece)
                if out:
                    await self.send({"type": "http.response.body", "body": out, "more_body": True})
            if not more:
                if self.inflater is not None:
                    self.inflater.finish()
                out = rewriter.finish()
                await self.send({"type": "http.response.body", "body": out, "more_body": False})
                self.mode = _DROP
        except UnparseableBody as exc:
            await self._fail(exc.reason)

    async def _send_start(self, length: int | None) -> None:
        headers = list(self.start["headers"])
        if length is not None and not self.head:
            headers.append((b"content-length", str(length).encode("ascii")))
        await self.send({**self.start, "headers": headers})

    async def _fail(self, reason: str) -> None:
        logger.error("privguard: an HTML response could not be rewritten: %s", reason)
        if self.mode == _HOLD:
            self.mode = _DROP
            body = b"The page could not be delivered."
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 502,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode("ascii")),
                    ],
                }
            )
            await self.send({"type": "http.response.body", "body": body, "more_body": False})
            return
        self.mode = _DROP
        raise RedactionError(f"response stream cut: {reason}")
