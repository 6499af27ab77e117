"""C05: one tenant can never read another tenant's contacts' records through the SDK."""

from __future__ import annotations

import pytest

from privguard import (
    Categories,
    ConsentMethod,
    Evidence,
    Privguard,
    Provenance,
    PurposeDenied,
    Purposes,
    Recipient,
    Source,
    Subject,
)

ACME_CONTACT = Subject.business_contact("att-1", tenant="acme")


@pytest.fixture
def guard() -> Privguard:
    processor = Recipient(
        "mailer",
        "processor",
        hosts=("mail.example",),
        purposes=(Purposes.SERVICE,),
        categories=(Categories.EMAIL,),
    )
    g = Privguard(recipients=[processor])
    evidence = Evidence(ConsentMethod.FORM, actor="att-1", notice_version=g.policy.version)
    g.ledger.grant(ACME_CONTACT, Purposes.MARKETING_EMAIL, evidence=evidence)
    g.ledger.record_collection(
        ACME_CONTACT, [Categories.EMAIL], Provenance(Purposes.SERVICE, Source.FORM)
    )
    g.disclose(
        [(ACME_CONTACT, {"email": "jane@example.com"})],
        to="mailer",
        purpose=Purposes.SERVICE,
    )
    return g


def test_c05_the_owning_tenant_reads_its_contacts_records(guard: Privguard) -> None:
    """C05: "Data about a business contact is under the control of the Customer"."""
    assert len(guard.ledger.history(ACME_CONTACT, controller="acme")) == 1
    assert len(guard.ledger.collections(ACME_CONTACT, controller="acme")) == 1
    assert len(guard.disclosures.for_subject(ACME_CONTACT, controller="acme")) == 1


def test_c05_another_tenant_is_refused_and_learns_nothing(guard: Privguard) -> None:
    """C05: one tenant can never read another tenant's contacts through the SDK."""
    for read in (
        guard.ledger.history,
        guard.ledger.collections,
        guard.disclosures.for_subject,
    ):
        with pytest.raises(PurposeDenied) as info:
            read(ACME_CONTACT, controller="globex")
        assert info.value.reason == "cross_tenant"
        assert "att-1" not in str(info.value)


async def test_c05_async_reads_are_guarded_too(guard: Privguard) -> None:
    with pytest.raises(PurposeDenied):
        await guard.ledger.ahistory(ACME_CONTACT, controller="globex")
    with pytest.raises(PurposeDenied):
        await guard.disclosures.afor_subject(ACME_CONTACT, controller="globex")
    assert len(await guard.ledger.ahistory(ACME_CONTACT, controller="acme")) == 1
