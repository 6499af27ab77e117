"""The default policy: the SalesExpert privacy policy's clauses as rules.

Each rule names the clause IDs (``../shared/policy/CLAUSES.md``) it encodes;
``docs/policy-map.md`` maps every clause to its code and test.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from ._policy import ANY_PURPOSE, Basis, Operator, Policy, Protection, Rule
from ._taxonomy import Categories as C
from ._taxonomy import Purposes as P
from ._taxonomy import RecipientKind as R
from ._taxonomy import SubjectKind as K

__all__ = ["DEFAULT_POLICY_VERSION", "default_policy"]

#: The notice's own date ("last modified December 17th, 2019").
DEFAULT_POLICY_VERSION: Final = "2019-12-17"

BC = (K.BUSINESS_CONTACT,)
CUST = (K.CUSTOMER,)
VIS = (K.VISITOR,)
ALL = tuple(K)

# What an exhibitor may receive when the contact consented (C12): name, contact
# information, picture, survey, Q&A and poll answers, comments, messages. Never card data.
EXHIBITOR_CATEGORIES: Final = (
    C.NAME,
    C.CONTACT,
    C.JOB_TITLE,
    C.WORKPLACE,
    C.SELF_IMAGE,
    C.SURVEY,
    C.QNA,
    C.POLL,
    C.COMMENTS,
    C.MESSAGES,
)

# Analytics never receives direct identifiers (C21): usage, device, language and a
# pseudonymous id only; no raw IP address. The opt-out (C22) is the objection on
# this rule.
ANALYTICS_CATEGORIES: Final = (
    C.BEHAVIOR,
    C.BROWSER,
    C.COOKIE_ID,
    C.DEVICE_ID,
    C.LANGUAGE,
    C.PSEUDONYMOUS_ID,
)

PAYMENT_CATEGORIES: Final = (C.NAME, C.EMAIL, C.FINANCIAL, C.ADDRESS)

SERVICE_RECIPIENTS: Final = (R.PROCESSOR, R.AFFILIATE, R.ORGANIZER)

DEFAULT_PROTECTIONS: Final = (
    # Card number and expiry leave unmasked only to a payment processor (C03, C10).
    Protection(C.CARD, Operator.MASK, readable_by=(R.PAYMENT_PROCESSOR,)),
    # A security code is never shown, stored or sent anywhere but the processor.
    Protection(C.CARD_SECURITY_CODE, Operator.REMOVE, readable_by=(R.PAYMENT_PROCESSOR,)),
    Protection(C.BANK_ACCOUNT, Operator.MASK, readable_by=(R.PAYMENT_PROCESSOR,)),
)


def _rules() -> list[Rule]:
    return [
        # -- every kind ------------------------------------------------------------
        # C08: no sale, no sharing with third parties for their promotion, consent or not.
        Rule(P.SALE, Basis.FORBIDDEN, ALL, clauses=("C08",)),
        Rule(P.PROMOTIONAL_SHARING, Basis.FORBIDDEN, ALL, clauses=("C08",)),
        Rule("marketing.advertising.third_party", Basis.FORBIDDEN, ALL, clauses=("C08",)),
        # C15: required by law, to authorities (also abroad), fraud prevention.
        Rule(
            P.LEGAL,
            Basis.LEGAL_OBLIGATION,
            ALL,
            recipients=(R.AUTHORITY, R.PROCESSOR),
            clauses=("C15",),
        ),
        Rule(
            P.LEGAL_DISCLOSURE,
            Basis.LEGAL_OBLIGATION,
            ALL,
            recipients=(R.AUTHORITY,),
            clauses=("C15",),
        ),
        Rule(
            P.FRAUD,
            Basis.LEGITIMATE_INTEREST,
            ALL,
            recipients=(R.PROCESSOR, R.PAYMENT_PROCESSOR, R.AUTHORITY),
            clauses=("C15",),
        ),
        # C14: a merger or sale of assets transfers the data to the acquirer.
        Rule(
            P.CORPORATE_TRANSACTION,
            Basis.LEGITIMATE_INTEREST,
            ALL,
            recipients=(R.ACQUIRER,),
            clauses=("C14",),
        ),
        # C10: card data to payment processors to validate and complete payment.
        Rule(
            P.PAYMENT,
            Basis.CONTRACT,
            ALL,
            categories=PAYMENT_CATEGORIES,
            recipients=(R.PAYMENT_PROCESSOR,),
            clauses=("C10",),
        ),
        Rule(
            P.BILLING,
            Basis.CONTRACT,
            ALL,
            categories=(*PAYMENT_CATEGORIES, C.ORGANIZATION, C.PURCHASE_HISTORY),
            recipients=(R.PAYMENT_PROCESSOR, R.PROCESSOR),
            clauses=("C03", "C10"),
        ),
        # C11: social login and sharing pass data to the person's social provider.
        Rule(
            P.SOCIAL_SHARING,
            Basis.CONTRACT,
            ALL,
            categories=(C.NAME, C.EMAIL, C.SOCIAL_ACCOUNT_ID, C.SELF_IMAGE, C.CONTENT),
            recipients=(R.SOCIAL_PROVIDER,),
            clauses=("C11",),
        ),
        # -- business contacts (C06, C07, C09, C12) --------------------------------
        # C07: any purpose without a rule below needs explicit consent.
        Rule(ANY_PURPOSE, Basis.CONSENT, BC, clauses=("C07",)),
        # C06: the contracted service, under the customer's control (C13 recipients).
        Rule(P.SERVICE, Basis.CONTRACT, BC, recipients=SERVICE_RECIPIENTS, clauses=("C06", "C13")),
        # C09: the registration e-mail serves announcements about *that* event.
        Rule(
            P.EVENT_COMMUNICATIONS,
            Basis.CONTRACT,
            BC,
            categories=(C.NAME, C.EMAIL, C.PHONE, C.LANGUAGE),
            recipients=(R.PROCESSOR,),
            bind_scope=("event",),
            clauses=("C06", "C09"),
        ),
        # C06: improving the services.
        Rule(
            P.IMPROVE,
            Basis.LEGITIMATE_INTEREST,
            BC,
            categories=(C.BEHAVIOR, C.DEVICE, C.LANGUAGE, C.PSEUDONYMOUS_ID),
            recipients=(R.PROCESSOR,),
            clauses=("C06",),
        ),
        Rule(
            P.ANALYTICS,
            Basis.LEGITIMATE_INTEREST,
            BC,
            categories=ANALYTICS_CATEGORIES,
            recipients=(R.ANALYTICS_PROVIDER, R.PROCESSOR),
            objectable=True,
            clauses=("C06", "C21", "C22", "C23"),
        ),
        # C12: to exhibitors only with the contact's consent for that exhibitor at that event.
        Rule(
            P.EXHIBITOR_DISCLOSURE,
            Basis.CONSENT,
            BC,
            categories=EXHIBITOR_CATEGORIES,
            recipients=(R.EXHIBITOR, R.ORGANIZER, R.ATTENDEE),
            consent_scope=("event", "exhibitor"),
            clauses=("C12",),
        ),
        # -- customers (staff of paying customers) -----------------------------------
        Rule(ANY_PURPOSE, Basis.CONSENT, CUST, clauses=("C07",)),
        Rule(P.SERVICE, Basis.CONTRACT, CUST, recipients=SERVICE_RECIPIENTS, clauses=("C13",)),
        Rule(
            P.SUPPORT,
            Basis.LEGITIMATE_INTEREST,
            CUST,
            recipients=(R.PROCESSOR,),
            clauses=("C30",),
        ),
        Rule(P.IMPROVE, Basis.LEGITIMATE_INTEREST, CUST, recipients=(R.PROCESSOR,)),
        Rule(
            P.ANALYTICS,
            Basis.LEGITIMATE_INTEREST,
            CUST,
            categories=ANALYTICS_CATEGORIES,
            recipients=(R.ANALYTICS_PROVIDER, R.PROCESSOR),
            objectable=True,
            clauses=("C21", "C22", "C23"),
        ),
        # C20: e-mail topics and unsubscribe: marketing mail to customers is an opt-out.
        Rule(
            P.MARKETING_EMAIL,
            Basis.LEGITIMATE_INTEREST,
            CUST,
            categories=(C.NAME, C.EMAIL, C.ORGANIZATION, C.JOB_TITLE, C.INTERESTS),
            recipients=(R.PROCESSOR,),
            objectable=True,
            jurisdictions={"EEA": Basis.CONSENT, "UK": Basis.CONSENT},
            clauses=("C18", "C20"),
        ),
        # -- visitors (kept apart: their controller is the platform, C01) ----------------
        Rule(ANY_PURPOSE, Basis.CONSENT, VIS, clauses=("C07",)),
        Rule(
            P.SERVICE,
            Basis.LEGITIMATE_INTEREST,
            VIS,
            recipients=(R.PROCESSOR, R.AFFILIATE, R.RESELLER),
            clauses=("C13",),
        ),
        Rule(
            P.ANALYTICS,
            Basis.LEGITIMATE_INTEREST,
            VIS,
            categories=ANALYTICS_CATEGORIES,
            recipients=(R.ANALYTICS_PROVIDER, R.PROCESSOR),
            objectable=True,
            clauses=("C21", "C22", "C23"),
        ),
        # C18: marketing e-mail is opt-out, but opt-in (consent first) in the EEA and UK.
        Rule(
            P.MARKETING,
            Basis.LEGITIMATE_INTEREST,
            VIS,
            categories=(C.NAME, C.CONTACT, C.JOB_TITLE, C.WORKPLACE, C.INTERESTS, C.BEHAVIOR),
            recipients=(R.PROCESSOR,),
            objectable=True,
            jurisdictions={"EEA": Basis.CONSENT, "UK": Basis.CONSENT},
            clauses=("C18", "C20", "C27"),
        ),
        # C19: visitor data to third parties after a marketing event: explicit consent.
        Rule(
            P.PARTNER_SHARING,
            Basis.CONSENT,
            VIS,
            categories=(C.NAME, C.CONTACT, C.JOB_TITLE, C.WORKPLACE, C.INTERESTS),
            recipients=(R.PARTNER, R.RESELLER),
            consent_scope=("event",),
            clauses=("C19",),
        ),
    ]


@cache
def default_policy() -> Policy:
    return Policy(
        _rules(),
        version=DEFAULT_POLICY_VERSION,
        protections=DEFAULT_PROTECTIONS,
        name="salesexpert-default",
    )
