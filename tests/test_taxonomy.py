"""The vocabulary: categories (C02-C04), purposes, recipient and subject kinds, jurisdictions."""

from __future__ import annotations

import pytest

import privguard
from privguard import (
    EEA,
    Categories,
    PolicyError,
    Purposes,
    RecipientKind,
    SubjectKind,
    Taxonomy,
    UnknownCategory,
    UnknownPurpose,
    UnknownRecipientKind,
    covers,
)

TAXONOMY = Taxonomy.default()

# C02: what customers collect about business contacts.
C02 = {
    "name": Categories.NAME,
    "organization": Categories.ORGANIZATION,
    "title": Categories.JOB_TITLE,
    "postal address": Categories.ADDRESS,
    "e-mail": Categories.EMAIL,
    "telephone": Categories.PHONE,
    "fax": Categories.FAX,
    "social media account id": Categories.SOCIAL_ACCOUNT_ID,
    "card number": Categories.CARD,
    "dietary preferences": Categories.DIETARY,
    "interests": Categories.INTERESTS,
    "opinions": Categories.OPINIONS,
    "activities": Categories.ACTIVITIES,
    "age": Categories.AGE,
    "gender": Categories.GENDER,
    "education": Categories.EDUCATION,
    "occupation": Categories.OCCUPATION,
}
# C03: billing.
C03 = {
    "card number": Categories.CARD,
    "card expiry": Categories.CARD_EXPIRY,
    "billing address": Categories.BILLING_ADDRESS,
    "bank information": Categories.BANK_ACCOUNT,
}
# C04: usage data and device data.
C04 = {
    "pages visited": Categories.BROWSING_HISTORY,
    "clicks": Categories.CLICKS,
    "timing": Categories.TIMING,
    "language": Categories.LANGUAGE,
    "purchases": Categories.PURCHASE_HISTORY,
    "browser info": Categories.BROWSER,
    "IP address": Categories.IP_ADDRESS,
    "cookies": Categories.COOKIE_ID,
}


@pytest.mark.parametrize(
    ("what", "key"),
    [
        *(pytest.param(w, k, id=f"C02-{w}") for w, k in C02.items()),
        *(pytest.param(w, k, id=f"C03-{w}") for w, k in C03.items()),
        *(pytest.param(w, k, id=f"C04-{w}") for w, k in C04.items()),
    ],
)
def test_every_category_the_policy_names_exists(what: str, key: str) -> None:
    assert key in TAXONOMY.categories, what
    assert TAXONOMY.category(key) == key
    assert TAXONOMY.categories[key], f"{key} has no title"


def test_billing_categories_sit_under_user_financial() -> None:
    for key in C03.values():
        assert covers(Categories.FINANCIAL, key), key


def test_usage_and_device_categories_sit_under_behavior_or_device() -> None:
    usage = [Categories.BROWSING_HISTORY, Categories.CLICKS, Categories.TIMING]
    usage.append(Categories.PURCHASE_HISTORY)
    for key in usage:
        assert covers(Categories.BEHAVIOR, key), key
    for key in (Categories.BROWSER, Categories.IP_ADDRESS, Categories.COOKIE_ID):
        assert covers(Categories.DEVICE, key), key


@pytest.mark.parametrize(
    ("constant", "fideslang_key"),
    [
        (Categories.EMAIL, "user.contact.email"),
        (Categories.PHONE, "user.contact.phone_number"),
        (Categories.CARD, "user.financial.credit_card"),
        (Categories.BANK_ACCOUNT, "user.financial.bank_account"),
        (Categories.IP_ADDRESS, "user.device.ip_address"),
        (Categories.COOKIE_ID, "user.device.cookie_id"),
        (Categories.BROWSING_HISTORY, "user.behavior.browsing_history"),
    ],
)
def test_fideslang_keys_are_used_where_fideslang_has_them(
    constant: str, fideslang_key: str
) -> None:
    assert constant == fideslang_key
    assert fideslang_key in TAXONOMY.categories


def test_every_category_constant_is_in_the_default_taxonomy() -> None:
    constants = {v for k, v in vars(Categories).items() if k.isupper()}
    assert constants <= set(TAXONOMY.categories)


def test_every_purpose_constant_is_in_the_default_taxonomy() -> None:
    constants = {v for k, v in vars(Purposes).items() if k.isupper()}
    assert constants <= set(TAXONOMY.purposes)


def test_every_key_has_its_parent() -> None:
    for keys in (TAXONOMY.categories, TAXONOMY.purposes):
        for key in keys:
            parent = key.rpartition(".")[0]
            assert not parent or parent in keys, key


class TestHierarchy:
    def test_a_parent_covers_its_children(self) -> None:
        assert covers(Categories.CONTACT, Categories.EMAIL)
        assert covers(Categories.FINANCIAL, Categories.CARD_EXPIRY)
        assert covers(Categories.CARD, Categories.CARD_EXPIRY)
        assert covers("user", Categories.IP_ADDRESS)
        assert covers(Purposes.SHARING, Purposes.EXHIBITOR_DISCLOSURE)

    def test_a_key_covers_itself(self) -> None:
        assert covers(Categories.EMAIL, Categories.EMAIL)

    def test_a_child_does_not_cover_its_parent_nor_a_sibling(self) -> None:
        assert not covers(Categories.EMAIL, Categories.CONTACT)
        assert not covers(Categories.EMAIL, Categories.PHONE)

    def test_a_shared_prefix_is_not_a_parent(self) -> None:
        # "user.contact.email" is not covered by "user.contact.e": only whole segments count.
        assert not covers("user.contact.e", Categories.EMAIL)
        assert not covers("user.name", "user.name_suffix")

    def test_ancestors_are_most_specific_first(self) -> None:
        assert TAXONOMY.ancestors(Categories.CARD_EXPIRY) == (
            "user.financial.credit_card.expiry",
            "user.financial.credit_card",
            "user.financial",
            "user",
        )
        assert TAXONOMY.ancestors(Purposes.EVENT_COMMUNICATIONS)[-1] == "essential"

    def test_ancestors_of_an_unknown_key_raise(self) -> None:
        with pytest.raises(UnknownCategory):
            TAXONOMY.ancestors("user.no_such_thing")


class TestLookups:
    def test_unknown_category(self) -> None:
        with pytest.raises(UnknownCategory) as info:
            TAXONOMY.category("user.contact.emial")
        assert info.value.category == "user.contact.emial"

    def test_a_purpose_is_not_a_category(self) -> None:
        with pytest.raises(UnknownCategory):
            TAXONOMY.category(Purposes.ANALYTICS)

    def test_unknown_purpose(self) -> None:
        with pytest.raises(UnknownPurpose) as info:
            TAXONOMY.purpose("marketing.telepathy")
        assert info.value.purpose == "marketing.telepathy"

    def test_unknown_recipient_kind(self) -> None:
        with pytest.raises(UnknownRecipientKind) as info:
            Taxonomy.recipient_kind("data_broker")
        assert info.value.kind == "data_broker"

    def test_recipient_kind_accepts_strings_and_members(self) -> None:
        assert Taxonomy.recipient_kind("exhibitor") is RecipientKind.EXHIBITOR
        assert Taxonomy.recipient_kind(RecipientKind.ACQUIRER) is RecipientKind.ACQUIRER

    def test_lookup_errors_are_policy_errors(self) -> None:
        for exc in (UnknownCategory, UnknownPurpose, UnknownRecipientKind):
            assert issubclass(exc, privguard.PolicyError)
            assert issubclass(exc, privguard.PrivguardError)


class TestExtend:
    def test_adds_host_categories_and_purposes(self) -> None:
        extended = TAXONOMY.extend(
            categories={"user.content.badge_scan": "Badge scans"},
            purposes={"essential.service.badge_printing": "Print badges"},
        )
        assert extended.category("user.content.badge_scan") == "user.content.badge_scan"
        assert extended.purpose("essential.service.badge_printing")
        assert covers(Categories.CONTENT, "user.content.badge_scan")
        assert extended.ancestors("user.content.badge_scan")[1] == Categories.CONTENT
        # Everything the default had is still there.
        assert set(TAXONOMY.categories) < set(extended.categories)
        assert set(TAXONOMY.purposes) < set(extended.purposes)

    def test_does_not_change_the_original(self) -> None:
        TAXONOMY.extend(categories={"user.content.badge_scan": "Badge scans"})
        assert "user.content.badge_scan" not in TAXONOMY.categories
        assert "user.content.badge_scan" not in Taxonomy.default().categories

    def test_a_new_top_level_key_is_allowed(self) -> None:
        extended = TAXONOMY.extend(purposes={"research": "Research"})
        assert extended.purpose("research") == "research"

    def test_a_child_and_its_new_parent_may_come_together(self) -> None:
        extended = TAXONOMY.extend(
            categories={"user.badge": "Badge data", "user.badge.scan": "Badge scans"}
        )
        assert extended.category("user.badge.scan")

    def test_rejects_a_child_without_parent(self) -> None:
        with pytest.raises(PolicyError, match="parent"):
            TAXONOMY.extend(categories={"user.badge.scan": "Badge scans"})
        with pytest.raises(PolicyError, match="parent"):
            TAXONOMY.extend(purposes={"research.academic": "Academic research"})

    @pytest.mark.parametrize("key", [Categories.EMAIL, "user"])
    def test_rejects_a_duplicate_category(self, key: str) -> None:
        with pytest.raises(PolicyError, match="already exists"):
            TAXONOMY.extend(categories={key: "again"})

    def test_rejects_a_duplicate_purpose(self) -> None:
        with pytest.raises(PolicyError, match="already exists"):
            TAXONOMY.extend(purposes={Purposes.MARKETING: "again"})

    @pytest.mark.parametrize(
        "key",
        [
            "",
            " user.badge",
            "user.badge ",
            "user.badge scan",
            "user..badge",
            "user.badge.",
            "user.Badge",
            "user.badge-scan",
            "*",
        ],
    )
    def test_rejects_a_bad_key(self, key: str) -> None:
        with pytest.raises(PolicyError):
            TAXONOMY.extend(categories={key: "bad"})
        with pytest.raises(PolicyError):
            TAXONOMY.extend(purposes={key: "bad"})

    def test_adds_jurisdiction_groups(self) -> None:
        extended = TAXONOMY.extend(jurisdiction_groups={"DACH": ["de", "AT", "CH"]})
        assert extended.jurisdiction_keys("CH") == ("CH", "DACH")
        assert extended.jurisdiction_keys("DE") == ("DE", "EEA", "DACH")


class TestImmutability:
    def test_mappings_are_read_only(self) -> None:
        with pytest.raises(TypeError):
            TAXONOMY.categories["user.x"] = "x"  # type: ignore[index]
        with pytest.raises(TypeError):
            TAXONOMY.purposes["x"] = "x"  # type: ignore[index]

    def test_attributes_cannot_be_set(self) -> None:
        with pytest.raises(AttributeError):
            setattr(TAXONOMY, "categories", {})  # noqa: B010
        with pytest.raises(AttributeError):
            setattr(TAXONOMY, "purposes", {})  # noqa: B010
        with pytest.raises(AttributeError):
            setattr(TAXONOMY, "extra", 1)  # noqa: B010
        assert Categories.EMAIL in Taxonomy.default().categories


@pytest.mark.parametrize(
    ("what", "key"),
    [
        ("service delivery", Purposes.SERVICE),
        ("improvement", Purposes.IMPROVE),
        ("legal", Purposes.LEGAL),
        ("legal disclosure", Purposes.LEGAL_DISCLOSURE),
        ("fraud", Purposes.FRAUD),
        ("billing", Purposes.BILLING),
        ("payment", Purposes.PAYMENT),
        ("event communications", Purposes.EVENT_COMMUNICATIONS),
        ("exhibitor disclosure", Purposes.EXHIBITOR_DISCLOSURE),
        ("social sharing", Purposes.SOCIAL_SHARING),
        ("partner sharing", Purposes.PARTNER_SHARING),
        ("analytics", Purposes.ANALYTICS),
        ("marketing e-mail", Purposes.MARKETING_EMAIL),
        ("advertising", Purposes.ADVERTISING),
        ("corporate transaction", Purposes.CORPORATE_TRANSACTION),
        ("sale", Purposes.SALE),
        ("promotional sharing", Purposes.PROMOTIONAL_SHARING),
    ],
)
def test_every_purpose_the_policy_names_exists(what: str, key: str) -> None:
    assert TAXONOMY.purpose(key) == key, what


def test_purposes_nest_as_the_policy_reads() -> None:
    assert covers(Purposes.ESSENTIAL, Purposes.LEGAL)
    assert covers(Purposes.ESSENTIAL, Purposes.FRAUD)
    assert covers(Purposes.SERVICE, Purposes.EVENT_COMMUNICATIONS)
    assert covers(Purposes.MARKETING, Purposes.MARKETING_EMAIL)
    assert covers(Purposes.MARKETING, Purposes.ADVERTISING)
    for key in (
        Purposes.EXHIBITOR_DISCLOSURE,
        Purposes.SOCIAL_SHARING,
        Purposes.PARTNER_SHARING,
        Purposes.PROMOTIONAL_SHARING,
        Purposes.CORPORATE_TRANSACTION,
        Purposes.LEGAL_DISCLOSURE,
        Purposes.SALE,
    ):
        assert covers(Purposes.SHARING, key), key


def test_all_twelve_recipient_kinds() -> None:
    assert {k.value for k in RecipientKind} == {
        "affiliate",
        "processor",
        "payment_processor",
        "exhibitor",
        "organizer",
        "attendee",
        "social_provider",
        "analytics_provider",
        "authority",
        "acquirer",
        "reseller",
        "partner",
    }


def test_three_subject_kinds() -> None:
    assert {k.value for k in SubjectKind} == {"customer", "business_contact", "visitor"}


class TestJurisdictions:
    def test_a_country_in_the_eea(self) -> None:
        assert TAXONOMY.jurisdiction_keys("DE") == ("DE", "EEA")
        assert TAXONOMY.jurisdiction_keys("de") == ("DE", "EEA")

    def test_a_subdivision_falls_back_to_its_country(self) -> None:
        assert TAXONOMY.jurisdiction_keys("US-CA") == ("US-CA", "US")
        assert TAXONOMY.jurisdiction_keys("DE-BY") == ("DE-BY", "DE", "EEA")

    def test_the_uk_is_its_own_group(self) -> None:
        assert TAXONOMY.jurisdiction_keys("GB") == ("GB", "UK")
        assert "GB" not in EEA

    def test_eea_is_the_eu_plus_iceland_liechtenstein_norway(self) -> None:
        assert len(EEA) == 30
        assert {"IS", "LI", "NO", "DE", "FR", "IE"} <= EEA
        assert "CH" not in EEA
