"""The endpoints a host mounts: opt out, opt back in, status, and ``/.well-known/gpc.json``.

Opting out needs no account and no token: it sets privguard's cookie and, for a
signed-in subject, records an objection in the consent ledger. A forged opt-out only
takes analytics away, the safe direction. Opting back in is protected against
cross-site requests: ``Sec-Fetch-Site`` must say ``same-origin``, ``Origin`` must be the
site's own (or a trusted one), and a double-submit token must match its signed cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .._decorators import privacy
from .._records import ConsentMethod, Evidence
from .._taxonomy import Purposes
from ._config import AnalyticsConfig
from ._cookies import CookieRules, request_host
from ._signals import (
    COOKIE_IN,
    COOKIE_OUT,
    OptOutSignal,
    cookies_of,
    resolve_status,
    resolve_subject,
)

if TYPE_CHECKING:
    from .._guard import Privguard
    from .._subject import Subject

__all__ = ["CSRF_HEADER", "analytics_app", "gpc_endpoint"]

#: The header (or form field ``csrf_token``) that carries the double-submit token.
CSRF_HEADER: Final = "x-csrf-token"
_CSRF_FIELD: Final = "csrf_token"
_MAX_FORM: Final = 4096
_NO_STORE: Final = {"cache-control": "no-store"}
_BROWSER_SIGNALS: Final = frozenset({OptOutSignal.GPC, OptOutSignal.DNT, OptOutSignal.UNAVAILABLE})
Endpoint = Callable[[Request], Awaitable[Response]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _Csrf:
    """Signed double-submit tokens: ``<random>.<HMAC(key, random)>``, so a cookie planted
    from a sibling subdomain cannot be forged without the key."""

    def __init__(self, config: AnalyticsConfig) -> None:
        self.key = config.csrf_key
        self.secure = config.cookie_secure
        self.cookie = "__Host-privguard_csrf" if config.cookie_secure else "privguard_csrf"

    def _mac(self, nonce: str) -> str:
        return _b64(
            hmac.new(self.key, b"privguard-csrf:" + nonce.encode(), hashlib.sha256).digest()
        )

    def new(self) -> str:
        nonce = _b64(secrets.token_bytes(24))
        return f"{nonce}.{self._mac(nonce)}"

    def valid(self, token: str | None) -> bool:
        if not token or token.count(".") != 1:
            return False
        nonce, mac = token.split(".")
        return hmac.compare_digest(mac, self._mac(nonce))

    def set(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.cookie, token, path="/", secure=self.secure, httponly=True, samesite="strict"
        )


def _own_origin(request: Request) -> str:
    url = request.url
    return f"{url.scheme}://{url.netloc}".lower()


def _cross_site(request: Request, config: AnalyticsConfig) -> str | None:
    """Why this request may come from another site, or ``None``."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() != "same-origin":
        return "sec-fetch-site"
    origin = request.headers.get("origin")
    if origin is not None:
        origin = origin.strip().lower().rstrip("/")
        if origin != _own_origin(request) and origin not in config.trusted_origins:
            return "origin"
    return None


async def _form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", "application/json"):
        return {}
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    if media == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        )
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


def _safe_next(value: str | None) -> str | None:
    """A same-site path to go back to after a form post (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if any(c in value for c in "\\\r\n\t") or len(value) > 2048:
        return None
    return value


def _problem(detail: str, reason: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": "https://privguard.dev/problems/cross-site-request",
            "title": "Cross-site request refused",
            "status": 403,
            "detail": detail,
            "reason": reason,
        },
        status_code=403,
        media_type="application/problem+json",
        headers=_NO_STORE,
    )


def _evidence(subject: Subject, guard: Privguard, method: ConsentMethod) -> Evidence:
    return Evidence(
        method=method,
        actor=subject.id,
        notice_version=guard.policy.version,
        jurisdiction=subject.jurisdiction,
    )


def gpc_endpoint(config: AnalyticsConfig | None = None) -> Endpoint:
    """``/.well-known/gpc.json`` for a route at the site's root (the GPC spec's place)."""
    config = config or AnalyticsConfig()
    body = {"gpc": config.honor_gpc, "lastUpdate": config.gpc_last_update.isoformat()}

    @privacy(None, redact=False)
    async def gpc_json(request: Request) -> Response:
        return JSONResponse(
            body,
            headers={"cache-control": "public, max-age=86400", "access-control-allow-origin": "*"},
        )

    return gpc_json


def analytics_app(
    guard: Privguard | None = None, config: AnalyticsConfig | None = None
) -> Starlette:
    """The opt-out endpoints, as an app to mount (``Mount("/privacy/analytics", ...)``).

    - ``GET /status``: the person's status and a CSRF token (and its cookie);
    - ``POST /opt-out``: sets the opt-out cookie, expires analytics cookies, records an
      objection for a signed-in subject;
    - ``POST /opt-in`` (same-origin only, with the token in the ``X-CSRF-Token`` header
      or the ``csrf_token`` form field): the opt-in cookie, and a recorded consent for a
      signed-in subject;
    - ``GET /.well-known/gpc.json`` (also :func:`gpc_endpoint`, for the site's root).

    A form post with a ``next`` path is answered with a redirect there (303); anything
    else with JSON. Every route is declared ``redact=False`` for ``PrivacyMiddleware``:
    nothing in the answers is personal.
    """
    config = config or AnalyticsConfig()
    csrf = _Csrf(config)
    cookies = CookieRules(config.analytics_cookies, config.cookie_domains)

    def reply(request: Request, form: dict[str, str], data: dict[str, Any]) -> Response:
        target = _safe_next(form.get("next"))
        if target is not None:
            return RedirectResponse(target, status_code=303, headers=_NO_STORE)
        return JSONResponse(data, headers=_NO_STORE)

    def choice_cookie(response: Response, value: str) -> None:
        response.set_cookie(
            config.cookie_name,
            value,
            max_age=config.cookie_max_age,
            path="/",
            domain=config.cookie_domain,
            secure=config.cookie_secure,
            httponly=False,  # the page's own scripts may read it to skip their tags
            samesite="lax",
        )

    def method_of(request: Request) -> ConsentMethod:
        media = request.headers.get("content-type", "")
        return ConsentMethod.FORM if "form" in media else ConsentMethod.API

    @privacy(None, redact=False)
    async def status(request: Request) -> Response:
        subject = await resolve_subject(config, request.scope)
        found = await resolve_status(request.scope, config, guard, subject=subject, full=True)
        token = request.cookies.get(csrf.cookie)
        fresh = not csrf.valid(token)
        if fresh:
            token = csrf.new()
        response = JSONResponse(
            {**found.as_dict(), "gpc_honored": config.honor_gpc, "csrf_token": token},
            headers=_NO_STORE,
        )
        if fresh:
            csrf.set(response, token or "")
        return response

    @privacy(None, redact=False)
    async def opt_out(request: Request) -> Response:
        form = await _form(request)
        subject = await resolve_subject(config, request.scope)
        if subject is not None and guard is not None:
            await guard.ledger.awithdraw(
                subject, Purposes.ANALYTICS, evidence=_evidence(subject, guard, method_of(request))
            )
        response = reply(request, form, {"opted_out": True, "signal": "cookie"})
        choice_cookie(response, COOKIE_OUT)
        headers = request.scope.get("headers") or ()
        for key, value in cookies.expiring(
            cookies_of(headers), request_host(headers), request.url.scheme == "https"
        ):
            response.raw_headers.append((key, value))
        return response

    @privacy(None, redact=False)
    async def opt_in(request: Request) -> Response:
        refused = _cross_site(request, config)
        if refused is not None:
            return _problem("opting in must come from this site", refused)
        form = await _form(request)
        submitted = request.headers.get(CSRF_HEADER) or form.get(_CSRF_FIELD)
        cookie = request.cookies.get(csrf.cookie)
        if not (
            submitted
            and cookie
            and hmac.compare_digest(submitted.encode(), cookie.encode())
            and csrf.valid(cookie)
        ):
            return _problem("a valid CSRF token is required to opt in", "csrf-token")
        subject = await resolve_subject(config, request.scope)
        if subject is not None and guard is not None:
            await guard.ledger.agrant(
                subject, Purposes.ANALYTICS, evidence=_evidence(subject, guard, method_of(request))
            )
        # Signals an opt-in cannot change (the browser's GPC or DNT) still hold.
        found = await resolve_status(request.scope, config, guard, subject=subject, full=True)
        remaining = [s.value for s in found.signals if s in _BROWSER_SIGNALS]
        response = reply(
            request,
            form,
            {"opted_in": True, "opted_out": bool(remaining), "signals": remaining},
        )
        choice_cookie(response, COOKIE_IN)
        return response

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/opt-out", opt_out, methods=["POST"]),
            Route("/opt-in", opt_in, methods=["POST"]),
            Route("/.well-known/gpc.json", gpc_endpoint(config), methods=["GET"]),
        ]
    )
