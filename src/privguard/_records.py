"""Immutable records the stores keep. Stores store them; they never decide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ._errors import PolicyError
from ._subject import EMPTY_SCOPE, Scope, Source

__all__ = [
    "CollectionRecord",
    "ConsentAction",
    "ConsentEvent",
    "ConsentMethod",
    "ConsentState",
    "DisclosureRecord",
    "Evidence",
]


class ConsentAction(StrEnum):
    GRANT = "grant"
    WITHDRAW = "withdraw"


class ConsentMethod(StrEnum):
    """How a consent or withdrawal was expressed."""

    FORM = "form"
    API = "api"
    IMPORT = "import"
    GPC = "gpc"
    COOKIE = "cookie"
    EMAIL_LINK = "email_link"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Proof of a consent or withdrawal (C07): how, by whom, under which notice.

    ``actor`` is a pseudonymous id (the subject's own id, or an admin's), and
    ``request_trace`` a pseudonymous trace of the request (a hash or trace id), never an IP
    address or a user agent in the clear.
    """

    method: ConsentMethod
    actor: str
    notice_version: str
    jurisdiction: str = ""
    request_trace: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", ConsentMethod(self.method))
        except ValueError:
            raise PolicyError(f"unknown consent method {self.method!r}") from None


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One entry in the append-only consent history. The current state derives from these."""

    event_id: str
    consent_id: str
    controller: str
    subject_kind: str
    subject_id: str
    purpose: str
    scope: Scope
    action: ConsentAction
    policy_version: str
    at: datetime
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The latest event for one (subject, purpose, scope): what a check reads.

    ``seq`` orders states of one subject: the newest matching state wins.
    """

    consent_id: str
    purpose: str
    scope: Scope
    granted: bool
    policy_version: str
    at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    """Provenance of collected data (C16, C17): kept so the source stays queryable."""

    record_id: str
    controller: str
    subject_kind: str
    subject_id: str
    categories: tuple[str, ...]
    purpose: str
    source: Source
    scope: Scope
    policy_version: str
    bound: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class DisclosureRecord:
    """One subject's data disclosed to one recipient (C10-C15, C19): the disclosure log.

    Who (the subject's pseudonymous id, kind and controller), which categories, to whom
    (recipient name and kind), for what purpose, on what basis (``basis``; the
    ``consent_id`` it relied on; a ``reference`` such as a court order for a legal
    obligation), under which policy version and scope, when, through which ``channel``
    (``export``: :meth:`Privguard.disclose`; ``http``: the outbound guard), and the
    OpenTelemetry trace and span ids (hex) of the call that disclosed. ``batch_id`` is
    shared by every record of one call. ``agreement`` is the recipient's agreement or DPA
    reference at the time. Never a personal value.
    """

    disclosure_id: str
    batch_id: str
    controller: str
    subject_kind: str
    subject_id: str
    recipient: str
    recipient_kind: str
    purpose: str
    categories: tuple[str, ...]
    basis: str
    policy_version: str
    at: datetime
    channel: str
    scope: Scope = EMPTY_SCOPE
    consent_id: str | None = None
    reference: str | None = None
    agreement: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
