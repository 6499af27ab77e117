"""The vocabulary: data categories, purposes, subject kinds, recipient kinds, jurisdictions.

Categories and purposes are dotted hierarchies. Keys follow fideslang, the open taxonomy
of the Fides privacy-as-code platform, where it has them; privguard's own additions sit
under fideslang parents (``user.financial.credit_card.expiry``) so declarations can be
exported to Fides later. A rule on a parent covers its children.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ._errors import PolicyError, UnknownCategory, UnknownPurpose, UnknownRecipientKind

__all__ = [
    "EEA",
    "Categories",
    "Purposes",
    "RecipientKind",
    "SubjectKind",
    "Taxonomy",
    "covers",
]


class SubjectKind(StrEnum):
    """The three classes of people the policy speaks of (C01)."""

    CUSTOMER = "customer"
    BUSINESS_CONTACT = "business_contact"
    VISITOR = "visitor"


class RecipientKind(StrEnum):
    """Who data may be disclosed to."""

    AFFILIATE = "affiliate"
    PROCESSOR = "processor"
    PAYMENT_PROCESSOR = "payment_processor"
    EXHIBITOR = "exhibitor"
    ORGANIZER = "organizer"
    ATTENDEE = "attendee"
    SOCIAL_PROVIDER = "social_provider"
    ANALYTICS_PROVIDER = "analytics_provider"
    AUTHORITY = "authority"
    ACQUIRER = "acquirer"
    RESELLER = "reseller"
    PARTNER = "partner"


def covers(parent: str, child: str) -> bool:
    """True when ``child`` is ``parent`` or sits below it in a dotted hierarchy."""
    return child == parent or child.startswith(parent + ".")


class Categories:
    """Names of the default data categories, for autocompletion and typo safety."""

    USER = "user"
    NAME = "user.name"
    FIRST_NAME = "user.name.first"
    LAST_NAME = "user.name.last"
    CONTACT = "user.contact"
    EMAIL = "user.contact.email"
    PHONE = "user.contact.phone_number"
    FAX = "user.contact.fax_number"
    URL = "user.contact.url"
    ORGANIZATION = "user.contact.organization"
    ADDRESS = "user.contact.address"
    STREET = "user.contact.address.street"
    CITY = "user.contact.address.city"
    POSTAL_CODE = "user.contact.address.postal_code"
    STATE = "user.contact.address.state"
    COUNTRY = "user.contact.address.country"
    JOB_TITLE = "user.job_title"
    WORKPLACE = "user.workplace"
    SOCIAL_ACCOUNT_ID = "user.social.account_id"
    DEMOGRAPHIC = "user.demographic"
    AGE = "user.demographic.age_range"
    DATE_OF_BIRTH = "user.demographic.date_of_birth"
    GENDER = "user.demographic.gender"
    LANGUAGE = "user.demographic.language"
    EDUCATION = "user.demographic.education"
    OCCUPATION = "user.demographic.occupation"
    PROFILE = "user.demographic.profile"
    DIETARY = "user.demographic.profile.dietary"
    INTERESTS = "user.demographic.profile.interests"
    OPINIONS = "user.demographic.profile.opinions"
    ACTIVITIES = "user.demographic.profile.activities"
    FINANCIAL = "user.financial"
    CARD = "user.financial.credit_card"
    CARD_EXPIRY = "user.financial.credit_card.expiry"
    CARD_SECURITY_CODE = "user.financial.credit_card.security_code"
    BANK_ACCOUNT = "user.financial.bank_account"
    IBAN = "user.financial.bank_account.iban"
    BILLING_ADDRESS = "user.financial.billing_address"
    DEVICE = "user.device"
    IP_ADDRESS = "user.device.ip_address"
    COOKIE_ID = "user.device.cookie_id"
    DEVICE_ID = "user.device.device_id"
    BROWSER = "user.device.browser"
    BEHAVIOR = "user.behavior"
    BROWSING_HISTORY = "user.behavior.browsing_history"
    CLICKS = "user.behavior.clicks"
    TIMING = "user.behavior.timing"
    PURCHASE_HISTORY = "user.behavior.purchase_history"
    CONTENT = "user.content"
    SELF_IMAGE = "user.content.self_image"
    CHAT = "user.content.chat"
    MESSAGES = "user.content.messages"
    COMMENTS = "user.content.comments"
    SURVEY = "user.content.survey_response"
    POLL = "user.content.poll_response"
    QNA = "user.content.qna"
    CALL_RECORDING = "user.content.call_recording"
    USER_ID = "user.id"
    PSEUDONYMOUS_ID = "user.id.pseudonymous"
    USERNAME = "user.account.username"
    CREDENTIALS = "user.authorization.credentials"


class Purposes:
    """Names of the default purposes (fideslang data uses, plus privguard's additions)."""

    ESSENTIAL = "essential"
    SERVICE = "essential.service"
    OPERATIONS = "essential.service.operations"
    SUPPORT = "essential.service.operations.support"
    AUTHENTICATION = "essential.service.authentication"
    SECURITY = "essential.service.security"
    NOTIFICATIONS = "essential.service.notifications"
    EVENT_COMMUNICATIONS = "essential.service.notifications.event"
    PAYMENT = "essential.service.payment_processing"
    BILLING = "essential.service.billing"
    LEGAL = "essential.legal_obligation"
    FRAUD = "essential.fraud_detection"
    IMPROVE = "functional.service.improve"
    ANALYTICS = "analytics"
    ANALYTICS_REPORTING = "analytics.reporting"
    MARKETING = "marketing"
    MARKETING_EMAIL = "marketing.communications.email"
    ADVERTISING = "marketing.advertising"
    PERSONALIZE = "personalize"
    SHARING = "third_party_sharing"
    EXHIBITOR_DISCLOSURE = "third_party_sharing.exhibitor"
    SOCIAL_SHARING = "third_party_sharing.social"
    PARTNER_SHARING = "third_party_sharing.partner"
    PROMOTIONAL_SHARING = "third_party_sharing.promotional"
    CORPORATE_TRANSACTION = "third_party_sharing.corporate_transaction"
    LEGAL_DISCLOSURE = "third_party_sharing.legal_obligation"
    SALE = "third_party_sharing.sale"


_FIDESLANG_CATEGORIES: Final[Mapping[str, str]] = {
    "user": "Data about a person",
    "user.name": "Name",
    "user.name.first": "First name",
    "user.name.last": "Last name",
    "user.contact": "Contact data",
    "user.contact.email": "E-mail address",
    "user.contact.phone_number": "Telephone number",
    "user.contact.fax_number": "Fax number",
    "user.contact.url": "Website or profile link",
    "user.contact.organization": "Organization",
    "user.contact.address": "Postal address",
    "user.contact.address.street": "Street",
    "user.contact.address.city": "City",
    "user.contact.address.postal_code": "Postal code",
    "user.contact.address.state": "State",
    "user.contact.address.country": "Country",
    "user.job_title": "Title",
    "user.workplace": "Organization of employment",
    "user.social": "Social data",
    "user.demographic": "Demographic data",
    "user.demographic.age_range": "Age",
    "user.demographic.date_of_birth": "Date of birth",
    "user.demographic.gender": "Gender",
    "user.demographic.language": "Language preference",
    "user.demographic.profile": "Profile and preferences",
    "user.financial": "Financial data",
    "user.financial.credit_card": "Credit or debit card number",
    "user.financial.bank_account": "Bank information",
    "user.financial.account_number": "Financial account number",
    "user.device": "Device data",
    "user.device.ip_address": "IP address",
    "user.device.cookie_id": "Cookie id",
    "user.device.cookie": "Data in a cookie",
    "user.device.device_id": "Device id",
    "user.behavior": "Observed behaviour",
    "user.behavior.browsing_history": "Pages visited",
    "user.behavior.purchase_history": "Purchases",
    "user.behavior.media_consumption": "Media consumption",
    "user.behavior.search_history": "Searches",
    "user.content": "Content by or about the person",
    "user.content.private": "Private content",
    "user.content.public": "Public content",
    "user.content.self_image": "Picture",
    "user.location": "Location",
    "user.location.precise": "Precise location",
    "user.location.imprecise": "Imprecise location",
    "user.id": "Identifier assigned by a system",
    "user.id.pseudonymous": "Pseudonymous identifier",
    "user.account": "Account data",
    "user.account.username": "Username",
    "user.authorization": "Authorization data",
    "user.authorization.credentials": "Credentials",
}

# privguard's additions, each under a fideslang parent.
_PRIVGUARD_CATEGORIES: Final[Mapping[str, str]] = {
    "user.social.account_id": "Social media account id",
    "user.demographic.education": "Education",
    "user.demographic.occupation": "Occupation",
    "user.demographic.profile.dietary": "Dietary preferences",
    "user.demographic.profile.interests": "Interests",
    "user.demographic.profile.opinions": "Opinions",
    "user.demographic.profile.activities": "Activities",
    "user.financial.credit_card.expiry": "Card expiration date",
    "user.financial.credit_card.security_code": "Card security code",
    "user.financial.bank_account.iban": "IBAN",
    "user.financial.billing_address": "Billing address",
    "user.device.browser": "Browser information",
    "user.behavior.clicks": "Clicks",
    "user.behavior.timing": "When actions were taken",
    "user.content.chat": "Chat messages",
    "user.content.messages": "Messages",
    "user.content.comments": "Comments",
    "user.content.survey_response": "Survey answers",
    "user.content.poll_response": "Poll answers",
    "user.content.qna": "Questions and answers",
    "user.content.call_recording": "Call recordings",
}

_FIDESLANG_PURPOSES: Final[Mapping[str, str]] = {
    "analytics": "Analytics",
    "analytics.reporting": "Analytics for reporting",
    "analytics.reporting.ad_performance": "Advertising performance",
    "analytics.reporting.content_performance": "Content performance",
    "analytics.reporting.campaign_insights": "Campaign insights",
    "analytics.reporting.system": "System activity",
    "collect": "Collect for a purpose not yet defined",
    "essential": "Operate the service",
    "essential.fraud_detection": "Fraud detection and prevention",
    "essential.legal_obligation": "Legal obligation",
    "essential.service": "Provide the contracted service",
    "essential.service.authentication": "Authentication",
    "essential.service.notifications": "Service notifications",
    "essential.service.notifications.email": "Service e-mail",
    "essential.service.notifications.sms": "Service SMS",
    "essential.service.operations": "Operations",
    "essential.service.operations.support": "Support",
    "essential.service.operations.improve": "Improve support",
    "essential.service.payment_processing": "Payment processing",
    "essential.service.security": "Security",
    "finance": "Finance and accounting",
    "functional": "Functional",
    "functional.service": "Functional service",
    "functional.service.improve": "Improve the services",
    "marketing": "Marketing",
    "marketing.advertising": "Advertising",
    "marketing.advertising.first_party": "First-party advertising",
    "marketing.advertising.third_party": "Third-party advertising",
    "marketing.advertising.profiling": "Profiling for advertising",
    "marketing.communications": "Marketing communications",
    "marketing.communications.email": "Marketing e-mail",
    "marketing.communications.sms": "Marketing SMS",
    "personalize": "Personalization",
    "sales": "Sales outreach",
    "third_party_sharing": "Sharing with third parties",
    "third_party_sharing.legal_obligation": "Disclosure required by law",
    "train_ai_system": "Training AI systems",
}

_PRIVGUARD_PURPOSES: Final[Mapping[str, str]] = {
    "essential.service.notifications.event": "Information about an event the person registered for",
    "essential.service.billing": "Billing",
    "third_party_sharing.exhibitor": "Disclosure to an event's exhibitors",
    "third_party_sharing.social": "Sharing with a social login or sharing provider",
    "third_party_sharing.partner": "Sharing with business partners",
    "third_party_sharing.promotional": "Sharing with third parties for their promotion",
    "third_party_sharing.corporate_transaction": "Transfer in a merger or sale of assets",
    "third_party_sharing.sale": "Sale of personal data",
}

EEA: Final = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    ]
)

_DEFAULT_JURISDICTION_GROUPS: Final[Mapping[str, frozenset[str]]] = {
    "EEA": EEA,
    "UK": frozenset({"GB"}),
}


_KEY: Final = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")


def _check_hierarchy(kind: str, entries: Mapping[str, str]) -> None:
    for key in entries:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise PolicyError(f"invalid {kind} key {key!r}: use dotted snake_case")
        parent, _, _ = key.rpartition(".")
        if parent and parent not in entries:
            raise PolicyError(f"{kind} {key!r} has no parent {parent!r} in the taxonomy")


def _ancestors(key: str) -> tuple[str, ...]:
    parts = key.split(".")
    return tuple(".".join(parts[:i]) for i in range(len(parts), 0, -1))


class Taxonomy:
    """An immutable vocabulary. ``Taxonomy.default()`` is privguard's; ``extend`` adds.

    Lookups used on the hot path (``ancestors``) are precomputed tuples.
    """

    __slots__ = ("_ancestors", "categories", "jurisdiction_groups", "purposes")

    def __init__(
        self,
        categories: Mapping[str, str],
        purposes: Mapping[str, str],
        jurisdiction_groups: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        _check_hierarchy("category", categories)
        _check_hierarchy("purpose", purposes)
        groups = {
            name: frozenset(code.upper() for code in codes)
            for name, codes in (jurisdiction_groups or _DEFAULT_JURISDICTION_GROUPS).items()
        }
        set_ = object.__setattr__
        self.categories: Mapping[str, str]
        self.purposes: Mapping[str, str]
        self.jurisdiction_groups: Mapping[str, frozenset[str]]
        self._ancestors: dict[str, tuple[str, ...]]
        set_(self, "categories", MappingProxyType(dict(categories)))
        set_(self, "purposes", MappingProxyType(dict(purposes)))
        set_(self, "jurisdiction_groups", MappingProxyType(groups))
        set_(
            self,
            "_ancestors",
            {key: _ancestors(key) for key in (*self.categories, *self.purposes)},
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use extend()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def default(cls) -> Taxonomy:
        return _DEFAULT

    def extend(
        self,
        *,
        categories: Mapping[str, str] | None = None,
        purposes: Mapping[str, str] | None = None,
        jurisdiction_groups: Mapping[str, Iterable[str]] | None = None,
    ) -> Taxonomy:
        """A new taxonomy with the host's own categories, purposes or groups added.

        >>> t = Taxonomy.default().extend(categories={"user.content.badge_scan": "Badge scans"})
        """
        for key in categories or {}:
            if key in self.categories:
                raise PolicyError(f"category {key!r} already exists")
        for key in purposes or {}:
            if key in self.purposes:
                raise PolicyError(f"purpose {key!r} already exists")
        groups: dict[str, Iterable[str]] = dict(self.jurisdiction_groups)
        groups.update(jurisdiction_groups or {})
        return Taxonomy(
            {**self.categories, **(categories or {})},
            {**self.purposes, **(purposes or {})},
            groups,
        )

    def category(self, key: str) -> str:
        if key not in self.categories:
            raise UnknownCategory(key)
        return key

    def purpose(self, key: str) -> str:
        if key not in self.purposes:
            raise UnknownPurpose(key)
        return key

    @staticmethod
    def recipient_kind(kind: str | RecipientKind) -> RecipientKind:
        try:
            return RecipientKind(kind)
        except ValueError:
            raise UnknownRecipientKind(str(kind)) from None

    def ancestors(self, key: str) -> tuple[str, ...]:
        """``key`` and every parent, most specific first."""
        try:
            return self._ancestors[key]
        except KeyError:
            if key in self.categories or key in self.purposes:  # pragma: no cover
                raise
            raise UnknownCategory(key) from None

    def jurisdiction_keys(self, jurisdiction: str) -> tuple[str, ...]:
        """Keys an override may be written under, most specific first.

        ``"US-CA"`` gives ``("US-CA", "US")``; ``"DE"`` gives ``("DE", "EEA")``.
        """
        code = jurisdiction.upper()
        keys = [code]
        country = code.split("-", 1)[0]
        if country != code:
            keys.append(country)
        keys.extend(name for name, codes in self.jurisdiction_groups.items() if country in codes)
        return tuple(keys)


_DEFAULT = Taxonomy(
    {**_FIDESLANG_CATEGORIES, **_PRIVGUARD_CATEGORIES},
    {**_FIDESLANG_PURPOSES, **_PRIVGUARD_PURPOSES},
)
