"""A sample event platform guarded by privguard.

Organisers list their attendees, attendees consent to exhibitors, exhibitors export
their leads, and the platform refuses what the policy forbids. Authentication is a toy
(bearer tokens from a fixed table) standing in for the host's real one: privguard only
reads the user that authentication put in the ASGI scope.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from privguard import (
    Categories as C,
)
from privguard import (
    Evidence,
    PathScope,
    PrivacyMiddleware,
    Privguard,
    Provenance,
    PurposeDenied,
    Redactor,
    Source,
    Subject,
    current_context,
    privacy,
    requires,
)
from privguard import Purposes as P
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


# -- the guard ------------------------------------------------------------------------------
def make_guard(path: str | os.PathLike[str]) -> Privguard:
    # The organiser (the controller of its attendees' data, C05) sees contact details;
    # card data stays masked for everyone but a payment processor (C10).
    redactor = Redactor(audiences={"organizer": {C.CONTACT: "keep", C.NAME: "keep"}})
    return Privguard.sqlite(path, redactor=redactor)


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


@privacy(P.SERVICE, categories=[], redact=False)
async def consent(request: Request) -> JSONResponse:
    """An attendee clicks "share my details with this exhibitor" (C12), or withdraws."""
    user: User = request.scope["user"]
    guard: Privguard = request.app.state.guard
    booth = ConsentScope(
        event=request.path_params["event_id"], exhibitor=request.path_params["exhibitor"]
    )
    evidence = Evidence("form", actor=user.subject.id, notice_version=guard.policy.version)
    if request.method == "DELETE":
        record = await guard.ledger.awithdraw(
            user.subject, P.EXHIBITOR_DISCLOSURE, scope=booth, evidence=evidence
        )
    else:
        record = await guard.ledger.agrant(
            user.subject, P.EXHIBITOR_DISCLOSURE, scope=booth, evidence=evidence
        )
    return JSONResponse({"consent_id": record.consent_id, "action": record.action.value})


@privacy(P.SERVICE, categories=[], redact=False)
async def leads(request: Request) -> JSONResponse:
    """The exhibitor's lead export: only attendees who consented to this exhibitor at this
    event, and only the categories an exhibitor may receive (C12)."""
    guard: Privguard = request.app.state.guard
    event, exhibitor = request.path_params["event_id"], request.path_params["exhibitor"]
    booth = ConsentScope(event=event, exhibitor=exhibitor)
    wanted = {
        "first_name": C.NAME,
        "last_name": C.NAME,
        "email": C.EMAIL,
        "company": C.ORGANIZATION,
        "job_title": C.JOB_TITLE,
        "card_number": C.CARD,
    }
    out: list[dict[str, Any]] = []
    for a in ATTENDEES:
        subject = contact(a["id"])
        permitted = set(
            guard.policy.permitted_categories(subject.kind, P.EXHIBITOR_DISCLOSURE, wanted.values())
        )
        decision = await guard.acheck(
            subject, P.EXHIBITOR_DISCLOSURE, sorted(permitted), recipient="exhibitor", scope=booth
        )
        if decision.allowed:
            out.append({k: a[k] for k, cat in wanted.items() if cat in permitted})
    return JSONResponse({"exhibitor": exhibitor, "leads": out})


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
async def whoami(request: Request) -> JSONResponse:
    ctx = current_context()
    return JSONResponse({"subject": ctx.subject.id if ctx and ctx.subject else None})


def _lifespan(guard: Privguard) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        guard.close()

    return lifespan


def create_app(db_path: str | os.PathLike[str] | None = None) -> Starlette:
    path = Path(db_path or os.environ.get("PRIVGUARD_DEMO_DB", "demo-data/privguard.sqlite3"))
    path.parent.mkdir(parents=True, exist_ok=True)
    guard = make_guard(path)
    app = Starlette(
        routes=[
            Route("/me", whoami),
            Route("/events/{event_id}/attendees", attendees),
            Route("/events/{event_id}/chat", chat),
            Route(
                "/events/{event_id}/exhibitors/{exhibitor}/consent",
                consent,
                methods=["POST", "DELETE"],
            ),
            Route("/events/{event_id}/exhibitors/{exhibitor}/leads", leads),
            Route("/events/{event_id}/mail", mail, methods=["POST"]),
            Route("/marketing/sell", sell, methods=["POST"]),
        ],
        middleware=[
            Middleware(BearerAuth),
            Middleware(PrivacyMiddleware, guard=guard, subject_resolver=subject_of),
        ],
        lifespan=_lifespan(guard),
    )
    app.state.guard = guard
    return app


__all__ = ["EXHIBITOR", "create_app"]
