"""A sample event platform guarded by privguard.

Organisers list their attendees, attendees consent to exhibitors, exhibitors export
their leads, attendees pay for tickets through a payment processor, analytics run
without personal data and stop for whoever opts out (or sends Global Privacy Control),
and the platform refuses what the policy forbids. Every disclosure (a lead export, a
payment) leaves a record the operator can list. Authentication is a toy (bearer tokens
from a fixed table) standing in for the host's real one: privguard only reads the user
that authentication put in the ASGI scope. The payment processor and Google Analytics
are stand-ins: small ASGI apps reached through httpx, as the real ones would be over
the network.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from privguard import (
    AnalyticsConfig,
    AnalyticsGuardTransport,
    AnalyticsOptOutMiddleware,
    AnalyticsScrubRules,
    AsyncGuardedTransport,
    ConsentMethod,
    DisclosureBlocked,
    DisclosureRecord,
    Evidence,
    Key,
    Keyring,
    PathScope,
    PolicyError,
    PrivacyMiddleware,
    Privguard,
    Provenance,
    Pseudonymizer,
    PurposeDenied,
    Recipient,
    Redactor,
    Source,
    Subject,
    analytics_app,
    current_analytics,
    current_context,
    gpc_endpoint,
    privacy,
    requires,
)
from privguard import (
    Categories as C,
)
from privguard import Purposes as P
from privguard import RecipientKind as R
from privguard import Scope as ConsentScope

from .data import ATTENDEES, EVENT, EXHIBITOR, TENANT


# -- authentication (the host's, not privguard's) ---------------------------------------------
@dataclass(frozen=True)
class User:
    token: str
    subject: Subject
    role: str  # "organizer" | "attendee" | "exhibitor"


def _users() -> dict[str, User]:
    users = {
        "organizer-token": User(
            "organizer-token", Subject.customer("staff-1", tenant=TENANT), "organizer"
        ),
        "exhibitor-token": User(
            "exhibitor-token", Subject.customer("globex-rep", tenant=TENANT), "exhibitor"
        ),
    }
    for a in ATTENDEES:
        token = f"{a['id']}-token"
        subject = Subject.business_contact(a["id"], tenant=TENANT, jurisdiction=a["jurisdiction"])
        users[token] = User(token, subject, "attendee")
    return users


USERS = _users()


class BearerAuth:
    """Puts the authenticated user in ``scope["user"]`` (None when anonymous)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            token = auth.removeprefix("Bearer ").strip()
            scope["user"] = USERS.get(token)
        await self.app(scope, receive, send)


def subject_of(scope: Scope) -> Subject | None:
    user = scope.get("user")
    return user.subject if user is not None else None


def contact(attendee_id: str) -> Subject:
    a = next(a for a in ATTENDEES if a["id"] == attendee_id)
    return Subject.business_contact(a["id"], tenant=TENANT, jurisdiction=a["jurisdiction"])


# -- the payment processor (a stand-in on localhost) --------------------------------------------
PAYMENTS_URL = "http://localhost:8001/v1/charges"

#: The payment processor, as the platform registered it: who may get card data (C10).
DEMOPAY = Recipient(
    "demopay",
    R.PAYMENT_PROCESSOR,
    hosts=["localhost:8001"],
    purposes=[P.PAYMENT],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL],
    agreement="DPA-demopay-2026",
)


@dataclass
class PaymentProcessor:
    """A stand-in for the payment processor's API: it keeps what it received."""

    received: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        charge = await request.json()
        self.received.append(charge)
        number = str(charge.get("card_number", "")).replace(" ", "")
        body = {"id": f"ch_{next(self._ids)}", "status": "succeeded", "card_last4": number[-4:]}
        await JSONResponse(body)(scope, receive, send)


# -- analytics (C21-C23) ------------------------------------------------------------------------
MEASUREMENT_ID = "G-DEMO12345"
GA_COLLECT = (
    "https://www.google-analytics.com/mp/collect"
    f"?measurement_id={MEASUREMENT_ID}&api_secret=demo-secret"
)

#: The analytics opt-out: GPC counts, the demo runs on plain HTTP (so no Secure cookies).
ANALYTICS = AnalyticsConfig(
    measurement_ids=[MEASUREMENT_ID],
    subject_resolver=subject_of,
    cookie_secure=False,
)

ANALYTICS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DevCon 2026</title>
<script async src="https://www.googletagmanager.com/gtag/js?id={MEASUREMENT_ID}"></script>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}
gtag('js',new Date());gtag('config','{MEASUREMENT_ID}');</script>
</head><body><h1>DevCon 2026</h1>
<form method="post" action="/privacy/analytics/opt-out">
<input type="hidden" name="next" value="/analytics-demo">
<button>Opt out of analytics</button></form>
</body></html>
"""


@dataclass
class AnalyticsCollector:
    """A stand-in for Google Analytics' Measurement Protocol: it keeps what it received."""

    received: list[dict[str, Any]] = field(default_factory=list)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        self.received.append(await request.json())
        await Response(status_code=204)(scope, receive, send)


# -- the guard ------------------------------------------------------------------------------
def make_guard(path: str | os.PathLike[str], *, store_url: str | None = None) -> Privguard:
    """The demo's guard on SQLite at ``path``, or on the store ``store_url`` names
    (``PRIVGUARD_STORE_URL=postgresql://...`` runs the demo on PostgreSQL)."""
    # The organiser (the controller of its attendees' data, C05) sees contact details;
    # card data stays masked for everyone but a payment processor (C10).
    redactor = Redactor(audiences={"organizer": {C.CONTACT: "keep", C.NAME: "keep"}})
    if store_url:
        guard = Privguard.from_url(
            store_url,
            store_options={"schema": DEMO_SCHEMA} if store_url.startswith("postgres") else None,
            redactor=redactor,
            recipients=[DEMOPAY],
        )
    else:
        guard = Privguard.sqlite(path, redactor=redactor, recipients=[DEMOPAY])
    # Exhibitors change every event: registered at run time (C12).
    guard.recipients.register_exhibitor(event=EVENT, name=EXHIBITOR, hosts="leads.globex.example")
    return guard


#: The PostgreSQL schema the demo works in (``PRIVGUARD_DEMO_SCHEMA`` overrides it).
DEMO_SCHEMA = os.environ.get("PRIVGUARD_DEMO_SCHEMA", "privguard_demo")


# -- endpoints ------------------------------------------------------------------------------
@privacy(
    P.SERVICE,
    categories=[C.NAME, C.CONTACT, C.CARD],
    recipient="organizer",
    scope=PathScope(event="event_id"),
)
async def attendees(request: Request) -> JSONResponse:
    """The organiser's attendee list: contact details kept, card numbers masked."""
    return JSONResponse({"event": request.path_params["event_id"], "attendees": ATTENDEES})


@privacy(P.SERVICE, categories=[C.CHAT])
async def chat(request: Request) -> StreamingResponse:
    """Event chat, streamed: card numbers and e-mails in messages never leave in the clear,
    even when they are split across chunks."""

    async def lines() -> AsyncIterator[str]:
        for piece in [
            "ana: my card is 4111 11",
            "11 1111 1111, mail me at ana.",
            "silva@exa",
            "mple.br\n",
            "jane: see you at the keynote!\n",
        ]:
            yield piece

    return StreamingResponse(lines(), media_type="text/plain")


@privacy(P.SERVICE, categories=[C.CHAT])
async def questions(request: Request) -> StreamingResponse:
    """Live Q&A as server-sent events, as an SSE library sends them: each question a
    JSON document pretty-printed over several data lines, split across chunks."""

    async def events() -> AsyncIterator[str]:
        yield "event: question\ndata: {\n"
        yield 'data:   "from": {"name": "Ana", "email": "ana.silva@example.br"},\n'
        yield 'data:   "text": "Refund to 4111\u00a01111\u00a01111\u00a01111 please?"\n'
        yield "data: }\n\n"
        yield 'event: question\ndata: {"text": "Will the slides be shared?"}\n\n'

    return StreamingResponse(events(), media_type="text/event-stream")


@privacy(P.SERVICE, categories=[C.CONTACT])
async def badge(request: Request) -> HTMLResponse:
    """A speaker's badge page; its template escapes the at-sign, as many do."""
    return HTMLResponse(
        "<html><body><h1>Ana Silva</h1>"
        "<p>Contact: <a href='mailto:ana.silva&#64;example.br'>ana.silva&#x40;example.br</a>"
        "</p></body></html>"
    )


@privacy(P.SERVICE, categories=[], redact=False)
async def consent(request: Request) -> JSONResponse:
    """An attendee clicks "share my details with this exhibitor" (C12), or withdraws."""
    user: User = request.scope["user"]
    guard: Privguard = request.app.state.guard
    booth = ConsentScope(
        event=request.path_params["event_id"], exhibitor=request.path_params["exhibitor"]
    )
    evidence = Evidence(
        ConsentMethod.FORM, actor=user.subject.id, notice_version=guard.policy.version
    )
    if request.method == "DELETE":
        record = await guard.ledger.awithdraw(
            user.subject, P.EXHIBITOR_DISCLOSURE, scope=booth, evidence=evidence
        )
    else:
        record = await guard.ledger.agrant(
            user.subject, P.EXHIBITOR_DISCLOSURE, scope=booth, evidence=evidence
        )
    return JSONResponse({"consent_id": record.consent_id, "action": record.action.value})


#: What the lead export offers an exhibitor; disclose() keeps what the policy lets it have.
LEAD_FIELDS = ("first_name", "last_name", "email", "company", "job_title", "card_number")
#: Keys the redactor's key names do not know, declared (C02).
DECLARED = {"company": C.ORGANIZATION, "job_title": C.JOB_TITLE}


@privacy(P.SERVICE, categories=[], redact=False)
async def leads(request: Request) -> JSONResponse:
    """The exhibitor's lead export: only attendees who consented to this exhibitor at this
    event, only the categories an exhibitor may receive, and a disclosure record for each
    one (C12)."""
    guard: Privguard = request.app.state.guard
    event, exhibitor = request.path_params["event_id"], request.path_params["exhibitor"]
    try:
        recipient = guard.recipients.exhibitor(event, exhibitor)
    except PolicyError:
        return JSONResponse({"error": "no such exhibitor at this event"}, status_code=404)
    result = await guard.adisclose(
        [(contact(a["id"]), {k: a[k] for k in LEAD_FIELDS}) for a in ATTENDEES],
        to=recipient,
        purpose=P.EXHIBITOR_DISCLOSURE,
        controller=TENANT,
        fields=DECLARED,
    )
    return JSONResponse(
        {
            "exhibitor": exhibitor,
            "leads": list(result.records),
            "left_out": dict(result.dropped),
            "withheld": sorted(result.withheld),
            "batch": result.batch_id,
        }
    )


@privacy(P.PAYMENT, categories=[C.NAME, C.EMAIL, C.CARD])
async def buy_ticket(request: Request) -> JSONResponse:
    """An attendee pays for a ticket: the card goes to the payment processor, unmasked,
    through the guarded httpx client, and the payment is recorded as a disclosure (C10).
    The subject is the signed-in attendee, from the privacy context."""
    a = next(a for a in ATTENDEES if a["id"] == request.scope["user"].subject.id)
    charge = {
        "name": f"{a['first_name']} {a['last_name']}",
        "email": a["email"],
        "card_number": a["card_number"],
        "amount": 4900,
        "currency": "eur",
        "description": f"Ticket {request.path_params['event_id']}",
    }
    async with request.app.state.payment_client() as client:
        r = await client.post(PAYMENTS_URL, json=charge)
    return JSONResponse({"charge": r.json()})


@privacy(P.SERVICE, categories=[], redact=False)
async def share_with_tracker(request: Request) -> JSONResponse:
    """Someone wires the attendee list to a tracking service that is no registered
    recipient: the outbound guard blocks it and nothing is sent (C13)."""
    sent: list[httpx.Request] = []
    tracker = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))  # type: ignore[func-returns-value]
    transport = AsyncGuardedTransport(tracker, guard=request.app.state.guard, purpose=P.ANALYTICS)
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            await client.post("https://tracker.example/collect", json={"attendees": ATTENDEES})
        except DisclosureBlocked as blocked:
            return JSONResponse(
                {"blocked": blocked.reason, "host": blocked.host, "requests_sent": len(sent)},
                status_code=403,
            )
    return JSONResponse({"requests_sent": len(sent)})  # pragma: no cover - always blocked


def _record(r: DisclosureRecord) -> dict[str, Any]:
    return {
        "at": r.at.isoformat(),
        "subject": r.subject_id,
        "recipient": r.recipient,
        "recipient_kind": r.recipient_kind,
        "purpose": r.purpose,
        "categories": list(r.categories),
        "basis": r.basis,
        "consent_id": r.consent_id,
        "channel": r.channel,
        "batch": r.batch_id,
    }


@privacy(P.SERVICE, categories=[], redact=False)
async def disclosure_log(request: Request) -> JSONResponse:
    """The operator's view of the disclosure log: by attendee (who got their data, for an
    access request) or by recipient and time range (what did they get, when)."""
    user: User = request.scope["user"]
    if user.role != "organizer":
        return JSONResponse({"error": "operators only"}, status_code=403)
    guard: Privguard = request.app.state.guard
    query = request.query_params
    if "subject" in query:
        try:
            subject = contact(query["subject"])
        except StopIteration:
            return JSONResponse({"error": "no such attendee"}, status_code=404)
        found = await guard.disclosures.afor_subject(subject)
    elif "recipient" in query:
        since = datetime.fromisoformat(query["since"]) if "since" in query else None
        until = datetime.fromisoformat(query["until"]) if "until" in query else None
        found = await guard.disclosures.afor_recipient(query["recipient"], since=since, until=until)
    else:
        return JSONResponse({"error": "give ?subject= or ?recipient="}, status_code=400)
    return JSONResponse({"disclosures": [_record(r) for r in found]})


@requires(P.SALE)
def sell_attendee_list() -> list[dict[str, Any]]:
    return ATTENDEES


@privacy(P.SERVICE, categories=[], redact=False)
async def sell(request: Request) -> JSONResponse:
    """Selling personal data is forbidden, consent or not (C08)."""
    try:
        sell_attendee_list()
    except PurposeDenied as denied:
        return JSONResponse({"refused": denied.reason, "purpose": denied.purpose}, status_code=403)
    return JSONResponse({"sold": True})  # pragma: no cover - the policy never allows it


@privacy(P.SERVICE, categories=[], redact=False)
async def mail(request: Request) -> JSONResponse:
    """Event announcements go only to people registered for *that* event (C09)."""
    guard: Privguard = request.app.state.guard
    target_event = request.path_params["event_id"]
    registered_for = Provenance(
        P.EVENT_COMMUNICATIONS, Source.FORM, scope=ConsentScope(event=EVENT)
    )
    results = {}
    for a in ATTENDEES:
        decision = await guard.acheck(
            contact(a["id"]),
            P.EVENT_COMMUNICATIONS,
            [C.EMAIL],
            scope=ConsentScope(event=target_event),
            provenance=registered_for,
        )
        results[a["id"]] = "sent" if decision.allowed else f"refused: {decision.reason.value}"
    return JSONResponse({"event": target_event, "mail": results})


@privacy(P.SERVICE, categories=[], redact=False)
async def analytics_demo(request: Request) -> HTMLResponse:
    """A page with a Google Analytics tag. For an opted-out visitor privguard puts its
    opt-out script first in <head>, removes gtag.js and adds a CSP without Google (C22)."""
    return HTMLResponse(ANALYTICS_PAGE)


@privacy(P.SERVICE, categories=[], redact=False)
async def pageview(request: Request) -> JSONResponse:
    """The server reports a page view to Google Analytics, carelessly: the user id and a
    URL with the attendee's e-mail in it. privguard sends nothing for an opted-out person
    (C22) and strips the personal data for everyone else (C21)."""
    user: User | None = request.scope.get("user")
    email = next((a["email"] for a in ATTENDEES if user and a["id"] == user.subject.id), "")
    hit = {
        "client_id": "555.1",
        "user_id": user.subject.id if user else None,
        "events": [
            {
                "name": "page_view",
                "params": {
                    "page_location": f"https://demo.local/events/{EVENT}?email={email}",
                    "page_title": f"Your ticket, {email}",
                },
            }
        ],
    }
    collector: AnalyticsCollector = request.app.state.analytics_collector
    before = len(collector.received)
    async with request.app.state.analytics_client() as client:
        r = await client.post(GA_COLLECT, json=hit)
    status = current_analytics()
    return JSONResponse(
        {
            "opted_out": status.opted_out if status else False,
            "signal": status.signal.value if status and status.signal else None,
            "hits_sent": len(collector.received) - before,
            "blocked": r.headers.get("x-privguard-analytics") == "blocked",
        }
    )


@privacy(P.SERVICE, categories=[], redact=False)
async def whoami(request: Request) -> JSONResponse:
    ctx = current_context()
    return JSONResponse({"subject": ctx.subject.id if ctx and ctx.subject else None})


def _lifespan(guard: Privguard) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        guard.close()

    return lifespan


def create_app(
    db_path: str | os.PathLike[str] | None = None, *, store_url: str | None = None
) -> Starlette:
    """The demo app on SQLite (``db_path``), or on ``store_url`` when given."""
    path = Path(db_path or os.environ.get("PRIVGUARD_DEMO_DB", "demo-data/privguard.sqlite3"))
    if not store_url:
        path.parent.mkdir(parents=True, exist_ok=True)
    guard = make_guard(path, store_url=store_url)
    processor = PaymentProcessor()

    def payment_client() -> httpx.AsyncClient:
        # The guarded transport wraps the one that reaches the processor (here an ASGI
        # app; in production httpx's own): card data leaves only through it.
        inner = httpx.ASGITransport(app=processor.app)
        transport = AsyncGuardedTransport(
            inner, guard=guard, purpose=P.PAYMENT, fields={"name": C.NAME}
        )
        return httpx.AsyncClient(transport=transport)

    collector = AnalyticsCollector()
    # Keyed pseudonyms for the user ids analytics may see (a demo key, made per run).
    pseudonyms = Pseudonymizer(
        Keyring([Key("demo-analytics", os.urandom(32))], primary="demo-analytics")
    )

    def analytics_client() -> httpx.AsyncClient:
        # Server-side analytics go through AnalyticsGuardTransport (C21, C22).
        transport = AnalyticsGuardTransport(
            httpx.ASGITransport(app=collector.app),
            guard=guard,
            rules=AnalyticsScrubRules(pseudonymizer=pseudonyms),
        )
        return httpx.AsyncClient(transport=transport)

    app = Starlette(
        routes=[
            Route("/me", whoami),
            Route("/analytics-demo", analytics_demo),
            Route("/events/{event_id}/pageview", pageview, methods=["POST"]),
            Route("/.well-known/gpc.json", gpc_endpoint(ANALYTICS)),
            Mount("/privacy/analytics", app=analytics_app(guard, ANALYTICS)),
            Route("/events/{event_id}/attendees", attendees),
            Route("/events/{event_id}/chat", chat),
            Route("/events/{event_id}/questions", questions),
            Route("/events/{event_id}/badge", badge),
            Route(
                "/events/{event_id}/exhibitors/{exhibitor}/consent",
                consent,
                methods=["POST", "DELETE"],
            ),
            Route("/events/{event_id}/exhibitors/{exhibitor}/leads", leads),
            Route("/events/{event_id}/tickets", buy_ticket, methods=["POST"]),
            Route("/events/{event_id}/tracker", share_with_tracker, methods=["POST"]),
            Route("/disclosures", disclosure_log),
            Route("/events/{event_id}/mail", mail, methods=["POST"]),
            Route("/marketing/sell", sell, methods=["POST"]),
        ],
        middleware=[
            Middleware(BearerAuth),
            # After authentication (it reads the user), before PrivacyMiddleware.
            Middleware(AnalyticsOptOutMiddleware, guard=guard, config=ANALYTICS),
            Middleware(PrivacyMiddleware, guard=guard, subject_resolver=subject_of),
        ],
        lifespan=_lifespan(guard),
    )
    app.state.guard = guard
    app.state.payment_processor = processor
    app.state.payment_client = payment_client
    app.state.analytics_collector = collector
    app.state.analytics_client = analytics_client
    return app


__all__ = ["EXHIBITOR", "create_app"]
