"""The demo app (``make demo``) keeps its promises when driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from demo.__main__ import walkthrough
from demo.app import create_app
from demo.data import EVENT, EXHIBITOR, OTHER_EVENT

ORGANIZER = {"authorization": "Bearer organizer-token"}
EXHIBITOR_REP = {"authorization": "Bearer exhibitor-token"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    made = create_app(tmp_path / "demo.sqlite3")
    yield made
    made.state.guard.close()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://demo.local"
    ) as c:
        yield c


async def test_attendee_list_masks_cards_everywhere(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/events/{EVENT}/attendees")).status_code == 401
    r = await client.get(f"/events/{EVENT}/attendees", headers=ORGANIZER)
    assert r.status_code == 200
    for pan in ("4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"):
        assert pan not in r.text.replace(" ", "").replace("-", "")
    assert "jane.doe@example.com" in r.text  # the organiser is the controller (C05)


async def test_chat_stream_never_leaks_split_card_or_email(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/events/{EVENT}/chat", headers={"authorization": "Bearer att-1-token"})
    assert r.status_code == 200
    assert "4111" not in r.text.replace("**** **** **** 1111", "")
    assert "ana.silva@example.br" not in r.text


async def test_lead_export_follows_consent(client: httpx.AsyncClient) -> None:
    leads = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/leads"
    consent = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/consent"
    assert (await client.get(leads, headers=EXHIBITOR_REP)).json()["leads"] == []
    await client.post(consent, headers={"authorization": "Bearer att-2-token"})
    got = (await client.get(leads, headers=EXHIBITOR_REP)).json()["leads"]
    assert [lead["email"] for lead in got] == ["lukas.schmidt@example.de"]
    assert "card_number" not in got[0]
    await client.delete(consent, headers={"authorization": "Bearer att-2-token"})
    assert (await client.get(leads, headers=EXHIBITOR_REP)).json()["leads"] == []


async def test_mail_about_another_event_and_sale_are_refused(client: httpx.AsyncClient) -> None:
    other = (await client.post(f"/events/{OTHER_EVENT}/mail", headers=ORGANIZER)).json()
    assert set(other["mail"].values()) == {"refused: out_of_scope"}
    own = (await client.post(f"/events/{EVENT}/mail", headers=ORGANIZER)).json()
    assert set(own["mail"].values()) == {"sent"}
    sale = await client.post("/marketing/sell", headers=ORGANIZER)
    assert sale.status_code == 403 and sale.json()["refused"] == "forbidden"


async def test_lead_exports_leave_disclosure_records(client: httpx.AsyncClient) -> None:
    leads = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/leads"
    await client.post(
        f"/events/{EVENT}/exhibitors/{EXHIBITOR}/consent",
        headers={"authorization": "Bearer att-2-token"},
    )
    export = (await client.get(leads, headers=EXHIBITOR_REP)).json()
    assert export["left_out"] == {"consent_missing": 2}
    assert export["withheld"] == ["user.financial.credit_card"]

    log = await client.get(f"/disclosures?recipient={EXHIBITOR}", headers=ORGANIZER)
    (record,) = log.json()["disclosures"]
    assert record["subject"] == "att-2" and record["basis"] == "consent"
    assert record["batch"] == export["batch"] and record["consent_id"]
    assert not any("financial" in c for c in record["categories"])
    assert "lukas" not in log.text.lower()  # the log holds no personal value

    unknown = await client.get(f"/events/{EVENT}/exhibitors/initech/leads", headers=EXHIBITOR_REP)
    assert unknown.status_code == 404


async def test_a_ticket_payment_sends_the_card_only_to_the_payment_processor(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    r = await client.post(
        f"/events/{EVENT}/tickets", headers={"authorization": "Bearer att-1-token"}
    )
    assert r.status_code == 200 and r.json()["charge"]["status"] == "succeeded"
    (charge,) = app.state.payment_processor.received
    assert charge["card_number"] == "4111 1111 1111 1111"  # unmasked, to the processor only
    assert "4111 1111 1111 1111" not in r.text
    log = (await client.get("/disclosures?subject=att-1", headers=ORGANIZER)).json()
    (record,) = log["disclosures"]
    assert record["recipient"] == "demopay" and record["recipient_kind"] == "payment_processor"
    assert record["channel"] == "http" and record["basis"] == "contract"
    assert "user.financial.credit_card" in record["categories"]


async def test_the_attendee_list_never_reaches_an_unregistered_tracker(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(f"/events/{EVENT}/tracker", headers=ORGANIZER)
    assert r.status_code == 403
    assert r.json() == {
        "blocked": "unregistered_recipient",
        "host": "tracker.example",
        "requests_sent": 0,
    }


async def test_only_the_operator_reads_the_disclosure_log(client: httpx.AsyncClient) -> None:
    assert (
        await client.get("/disclosures?subject=att-1", headers=EXHIBITOR_REP)
    ).status_code == 403
    assert (await client.get("/disclosures", headers=ORGANIZER)).status_code == 400
    assert (await client.get("/disclosures?subject=nobody", headers=ORGANIZER)).status_code == 404


async def test_analytics_opt_out_holds_in_the_page_and_on_the_server(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    gpc = {"sec-gpc": "1"}
    page = await client.get("/analytics-demo", headers=gpc)
    assert "googletagmanager.com/gtag/js" not in page.text
    assert page.text.index("_gaUserPrefs") < page.text.index("gtag('config'")
    assert "google" not in page.headers["content-security-policy"]
    tracked = await client.get("/analytics-demo")
    assert "googletagmanager.com/gtag/js" in tracked.text  # nothing changes for the others
    assert (await client.get("/.well-known/gpc.json")).json()["gpc"] is True

    collector = app.state.analytics_collector
    r = await client.post(f"/events/{EVENT}/pageview", headers=gpc)
    assert (r.json()["hits_sent"], r.json()["signal"]) == (0, "gpc")
    assert collector.received == []

    att1 = {"authorization": "Bearer att-1-token"}
    r = await client.post(f"/events/{EVENT}/pageview", headers=att1)
    assert r.json()["hits_sent"] == 1
    (sent,) = collector.received
    assert "jane.doe@example.com" not in str(sent) and "att-1" not in str(sent)
    assert sent["user_id"].startswith("pg1.h.")

    r = await client.post("/privacy/analytics/opt-out", headers=att1)
    assert r.json()["opted_out"] is True
    client.cookies.clear()  # the objection is stored: it holds without the cookie
    r = await client.post(f"/events/{EVENT}/pageview", headers=att1)
    assert (r.json()["hits_sent"], r.json()["signal"]) == (0, "stored")
    assert len(collector.received) == 1


async def test_walkthrough_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await walkthrough(tmp_path / "walk.sqlite3")
    out = capsys.readouterr().out
    assert "11. Selling the attendee list" in out
    assert "4111 1111 1111 1111" not in out
    assert "15. att-1 asks who got their data" in out
    assert "demopay (payment_processor)" in out
    assert "20. att-1's next page view" in out
    assert "21. Live Q&A as server-sent events" in out
    assert "22. A speaker's badge page" in out
    live = out[out.index("21. Live Q&A") :]
    # The address in JSON spread over SSE data lines, and &#64;-escaped in HTML.
    assert "ana.silva@" not in live and "ana.silva&#" not in live.split("A browser shows")[0]
    assert "4111\u00a01111" not in live
    assert live.count("a***@example.br") == 3


@pytest.mark.postgres
async def test_demo_runs_on_postgresql_by_setting_one_variable(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``PRIVGUARD_STORE_URL=postgresql://...`` moves the demo's store to PostgreSQL."""
    import demo.app

    monkeypatch.setattr(demo.app, "DEMO_SCHEMA", pg_schema)
    app = create_app(tmp_path / "unused.sqlite3", store_url=pg_dsn)
    assert app.state.guard.store.name == "postgresql"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://demo.local"
    ) as client:
        leads = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/leads"
        consent = f"/events/{EVENT}/exhibitors/{EXHIBITOR}/consent"
        await client.post(consent, headers={"authorization": "Bearer att-2-token"})
        got = (await client.get(leads, headers=EXHIBITOR_REP)).json()["leads"]
        assert [lead["email"] for lead in got] == ["lukas.schmidt@example.de"]
    app.state.guard.close()
    assert not (tmp_path / "unused.sqlite3").exists()
