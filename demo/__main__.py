"""``make demo``: walk through privguard in action, then serve the demo app.

python -m demo              walkthrough, then serve on http://127.0.0.1:8000
python -m demo --no-serve   walkthrough only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import httpx

from .app import create_app
from .data import EVENT, EXHIBITOR, OTHER_EVENT

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def _show(title: str, response: httpx.Response, note: str) -> None:
    colour = GREEN if response.status_code < 400 else RED
    print(f"\n{BOLD}{title}{RESET}")
    print(
        f"  {response.request.method} {response.request.url.path}  ->  "
        f"{colour}{response.status_code}{RESET} {response.headers.get('content-type', '')}"
    )
    body = response.text
    if "json" in response.headers.get("content-type", ""):
        body = json.dumps(response.json(), indent=2)
    for line in body.strip().splitlines()[:24]:
        print(f"  {DIM}|{RESET} {line}")
    print(f"  {note}")


def _show_page(title: str, response: httpx.Response, note: str) -> None:
    """An HTML page, each line cut to fit."""
    print(f"\n{BOLD}{title}{RESET}")
    print(
        f"  {response.request.method} {response.request.url.path}  ->  "
        f"{GREEN}{response.status_code}{RESET} {response.headers.get('content-type', '')}"
    )
    for line in response.text.strip().splitlines()[:24]:
        print(f"  {DIM}|{RESET} {line[:96]}{'...' if len(line) > 96 else ''}")
    print(f"  {note}")


def _show_log(title: str, response: httpx.Response, note: str) -> None:
    """A disclosure log, one line per record."""
    print(f"\n{BOLD}{title}{RESET}")
    url = response.request.url
    print(
        f"  {response.request.method} {url.path}?{url.query.decode()}"
        f"  ->  {GREEN}{response.status_code}{RESET}"
    )
    for r in response.json()["disclosures"]:
        print(
            f"  {DIM}|{RESET} {r['at'][11:19]} {r['subject']:6s} -> {r['recipient']} "
            f"({r['recipient_kind']}), {r['purpose']}, basis {r['basis']}, {r['channel']}: "
            f"{', '.join(c.rsplit('.', 1)[-1] for c in r['categories'])}"
        )
    print(f"  {note}")


async def walkthrough(db_path: Path, *, store_url: str | None = None) -> None:
    app = create_app(db_path, store_url=store_url)
    transport = httpx.ASGITransport(app=app)
    base = "http://demo.local"

    def as_(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        r = await client.get(f"/events/{EVENT}/attendees")
        _show("1. Nobody signed in", r, "No subject, no personal data: a problem document.")

        r = await client.get(f"/events/{EVENT}/attendees", headers=as_("organizer-token"))
        _show(
            "2. The organiser lists attendees",
            r,
            "Contact details kept for the organiser; card numbers masked, also inside "
            "free-text notes (C10).",
        )

        r = await client.get(f"/events/{EVENT}/chat", headers=as_("att-1-token"))
        _show(
            "3. Event chat, streamed in pieces",
            r,
            "A card number and an e-mail split across chunks never leave in the clear.",
        )

        leads = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/leads"
        r = await client.get(leads, headers=as_("exhibitor-token"))
        _show(
            "4. Exhibitor lead export before anyone consented",
            r,
            "Nobody consented to this exhibitor: no leads (C12).",
        )

        consent = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/consent"
        for who in ("att-1", "att-3"):
            r = await client.post(consent, headers=as_(f"{who}-token"))
            _show(
                f"5. {who} shares their details with {EXHIBITOR}",
                r,
                "Recorded in the consent ledger with evidence (C07).",
            )

        r = await client.get(leads, headers=as_("exhibitor-token"))
        _show(
            "6. Lead export again",
            r,
            "Only the two who consented, and only what an exhibitor may get: no card data.",
        )

        r = await client.delete(consent, headers=as_("att-3-token"))
        _show("7. att-3 withdraws", r, "Effective for the very next check.")
        r = await client.get(leads, headers=as_("exhibitor-token"))
        _show("8. Lead export after the withdrawal", r, "att-3 is gone.")

        r = await client.post(f"/events/{OTHER_EVENT}/mail", headers=as_("organizer-token"))
        _show(
            "9. Mailing registrants of one event about another",
            r,
            "Registration e-mail serves that event only (C09).",
        )
        r = await client.post(f"/events/{EVENT}/mail", headers=as_("organizer-token"))
        _show("10. Mailing them about their own event", r, "Allowed: the contract (C06).")

        r = await client.post("/marketing/sell", headers=as_("organizer-token"))
        _show("11. Selling the attendee list", r, "Forbidden, consent or not (C08).")

        r = await client.get(f"/disclosures?recipient={EXHIBITOR}", headers=as_("organizer-token"))
        _show_log(
            "12. The operator reads the disclosure log for the exhibitor",
            r,
            "One record per lead each time it left (steps 6 and 8), with the consent it "
            "relied on; att-3's stays after the withdrawal: the log is append-only (C12).",
        )

        r = await client.post(f"/events/{EVENT}/tickets", headers=as_("att-1-token"))
        received = app.state.payment_processor.received[-1]["card_number"]
        _show(
            "13. att-1 pays for a ticket through the payment processor",
            r,
            f"The processor received the card unmasked ({received[:4]} ...), the only "
            "recipient that may, and the payment is recorded (C10).",
        )

        r = await client.post(f"/events/{EVENT}/tracker", headers=as_("organizer-token"))
        _show(
            "14. The attendee list wired to a tracker nobody registered",
            r,
            "Blocked by the outbound guard before anything was sent (C13).",
        )

        r = await client.get("/disclosures?subject=att-1", headers=as_("organizer-token"))
        _show_log(
            "15. att-1 asks who got their data",
            r,
            "The exhibitor (with consent) and the payment processor (the contract).",
        )

        gpc = {"sec-gpc": "1"}
        r = await client.get("/analytics-demo", headers=gpc)
        _show_page(
            "16. A visitor whose browser sends Global Privacy Control opens a page with a GA tag",
            r,
            "privguard's opt-out script comes first in <head> (ga-disable, Consent Mode "
            "denied), gtag.js is gone, and a second Content-Security-Policy leaves Google "
            f"out: {r.headers.get_list('content-security-policy')[-1][:60]}... (C22)",
        )

        r = await client.post(f"/events/{EVENT}/pageview", headers=gpc)
        _show(
            "17. The server reports a page view to Google Analytics for that visitor",
            r,
            "Not sent: GPC is an opt-out, server-side too (C22).",
        )

        r = await client.post(f"/events/{EVENT}/pageview", headers=as_("att-1-token"))
        sent = app.state.analytics_collector.received[-1]
        _show(
            "18. The same page view for att-1, who did not opt out",
            r,
            "Sent, without the e-mail address in the URL and title; the user id is a "
            "keyed pseudonym (C21). What Google received:",
        )
        print(f"  {DIM}|{RESET} {json.dumps(sent)}")

        r = await client.post(
            "/privacy/analytics/opt-out", headers=as_("att-1-token"), data={"next": "/me"}
        )
        _show(
            "19. att-1 opts out of analytics: a plain form, no token needed",
            r,
            "An objection in the consent ledger (it follows att-1 to every device) and an "
            "opt-out cookie.",
        )
        client.cookies.clear()  # another device: no opt-out cookie
        r = await client.post(f"/events/{EVENT}/pageview", headers=as_("att-1-token"))
        _show(
            "20. att-1's next page view, on another device (no cookie)",
            r,
            "Not sent: the stored objection holds (C22).",
        )

        r = await client.get(f"/events/{EVENT}/questions", headers=as_("att-1-token"))
        _show(
            "21. Live Q&A as server-sent events",
            r,
            "Each event is redacted as the browser will read it: the JSON spread over "
            "data lines as one document (the e-mail key masked), and a card number "
            "written with no-break spaces found in the text.",
        )

        r = await client.get(f"/events/{EVENT}/badge", headers=as_("organizer-token"))
        _show(
            "22. A speaker's badge page whose template escapes the at-sign",
            r,
            "A browser shows ana.silva&#64;example.br as an address, so privguard reads the "
            "page that way too: both forms are masked, the markup is kept.",
        )

    app.state.guard.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--no-serve", action="store_true", help="walkthrough only")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    store_url = os.environ.get("PRIVGUARD_STORE_URL") or None
    tmp = Path(tempfile.mkdtemp(prefix="privguard-demo-"))
    try:
        if store_url and store_url.startswith("postgres"):
            # The walkthrough starts from nothing: a schema of its own, dropped after.
            os.environ["PRIVGUARD_DEMO_SCHEMA"] = f"privguard_demo_walk_{os.getpid()}"
            import demo.app

            demo.app.DEMO_SCHEMA = os.environ["PRIVGUARD_DEMO_SCHEMA"]
            print(f"{DIM}store: PostgreSQL (PRIVGUARD_STORE_URL){RESET}")
            try:
                asyncio.run(walkthrough(tmp / "unused.sqlite3", store_url=store_url))
            finally:
                _drop_schema(store_url, demo.app.DEMO_SCHEMA)
                demo.app.DEMO_SCHEMA = "privguard_demo"
        else:
            asyncio.run(walkthrough(tmp / "walkthrough.sqlite3", store_url=store_url))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.no_serve:
        return
    import uvicorn

    print(f"\n{BOLD}Serving the demo on http://127.0.0.1:{args.port}{RESET} (Ctrl-C stops)")
    print(
        "  try: curl -H 'authorization: Bearer organizer-token' "
        f"http://127.0.0.1:{args.port}/events/{EVENT}/attendees"
    )
    print(
        f"  and open http://127.0.0.1:{args.port}/analytics-demo in a browser with and "
        "without Global Privacy Control"
    )
    app = create_app(store_url=store_url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def _drop_schema(store_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
