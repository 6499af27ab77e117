"""The demo app (``make demo``) keeps its promises when driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from demo.__main__ import walkthrough
from demo.app import create_app
from demo.data import EVENT, EXHIBITOR, OTHER_EVENT

ORGANIZER = {"authorization": "Bearer organizer-token"}
EXHIBITOR_REP = {"authorization": "Bearer exhibitor-token"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(tmp_path / "demo.sqlite3")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://demo.local"
    ) as c:
        yield c
    app.state.guard.close()


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


async def test_walkthrough_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await walkthrough(tmp_path / "walk.sqlite3")
    out = capsys.readouterr().out
    assert "11. Selling the attendee list" in out
    assert "4111 1111 1111 1111" not in out
