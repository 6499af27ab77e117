"""Sample data for the demo event platform. Every person here is fictional."""

from __future__ import annotations

from typing import Any

TENANT = "acme-events"
EVENT = "devcon-2026"
OTHER_EVENT = "summit-2027"
EXHIBITOR = "globex"

ATTENDEES: list[dict[str, Any]] = [
    {
        "id": "att-1",
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane.doe@example.com",
        "phone": "+1 415 555 0132",
        "company": "Initech",
        "job_title": "CTO",
        "card_number": "4111 1111 1111 1111",
        "notes": "Paid with 5555-5555-5555-4444, call +44 20 7946 0958 before the event",
        "jurisdiction": "US",
    },
    {
        "id": "att-2",
        "first_name": "Lukas",
        "last_name": "Schmidt",
        "email": "lukas.schmidt@example.de",
        "phone": "+49 30 901820",
        "company": "Hooli",
        "job_title": "Engineer",
        "card_number": "378282246310005",
        "notes": "Vegetarian",
        "jurisdiction": "DE",
    },
    {
        "id": "att-3",
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana.silva@example.br",
        "phone": "+55 11 98456 5666",
        "company": "Umbrella",
        "job_title": "Marketing lead",
        "card_number": "6011111111111117",
        "notes": "Prefers e-mail: ana.silva@example.br",
        "jurisdiction": "BR",
    },
]
