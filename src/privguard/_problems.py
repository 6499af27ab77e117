"""Problem documents (RFC 9457) for what the middleware refuses.

Every document has ``type`` (a URI under a configurable base), ``title``, ``status`` and
``detail``, plus extension members (``purpose``, ``reason``). None holds personal data:
the detail names purposes and reason codes only. ``docs/errors.md`` lists every type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from starlette.types import Send

from ._decisions import Decision
from ._errors import PolicyError

__all__ = [
    "DEFAULT_PROBLEM_BASE",
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "ProblemType",
]

DEFAULT_PROBLEM_BASE: Final = "https://privguard.dev/problems/"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"


class ProblemType(StrEnum):
    """The slug of each problem type; the ``type`` URI is the base plus the slug."""

    CONSENT_REQUIRED = "consent-required"
    PURPOSE_DENIED = "purpose-denied"
    SUBJECT_REQUIRED = "subject-required"
    UNDECLARED_ROUTE = "undeclared-route"
    DECISION_UNAVAILABLE = "decision-unavailable"
    UNREDACTABLE_RESPONSE = "unredactable-response"
    RESPONSE_TOO_LARGE = "response-too-large"


_STATUS: Final[Mapping[ProblemType, int]] = {
    ProblemType.CONSENT_REQUIRED: 403,
    ProblemType.PURPOSE_DENIED: 403,
    ProblemType.SUBJECT_REQUIRED: 401,
    ProblemType.UNDECLARED_ROUTE: 403,
    ProblemType.DECISION_UNAVAILABLE: 503,
    ProblemType.UNREDACTABLE_RESPONSE: 502,
    ProblemType.RESPONSE_TOO_LARGE: 502,
}

_TITLE: Final[Mapping[ProblemType, str]] = {
    ProblemType.CONSENT_REQUIRED: "Consent required",
    ProblemType.PURPOSE_DENIED: "Purpose not permitted",
    ProblemType.SUBJECT_REQUIRED: "Identified subject required",
    ProblemType.UNDECLARED_ROUTE: "Route has no privacy declaration",
    ProblemType.DECISION_UNAVAILABLE: "Privacy decision unavailable",
    ProblemType.UNREDACTABLE_RESPONSE: "Response withheld: it could not be redacted",
    ProblemType.RESPONSE_TOO_LARGE: "Response withheld: too large to redact",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem document. ``extensions`` are extra members such as ``purpose``."""

    type: ProblemType
    detail: str
    extensions: Mapping[str, object] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return _STATUS[self.type]

    @property
    def title(self) -> str:
        return _TITLE[self.type]

    def to_dict(self, base: str = DEFAULT_PROBLEM_BASE) -> dict[str, object]:
        doc: dict[str, object] = {
            "type": base + self.type.value,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        for key, value in self.extensions.items():
            if value is not None:
                doc[key] = value
        return doc

    def to_bytes(self, base: str = DEFAULT_PROBLEM_BASE) -> bytes:
        return json.dumps(self.to_dict(base), separators=(",", ":")).encode("utf-8")

    async def send(
        self,
        send: Send,
        base: str = DEFAULT_PROBLEM_BASE,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        body = self.to_bytes(base)
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode("ascii")),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"cache-control", b"no-store"),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- the documents the middleware sends ----------------------------------------------
    @classmethod
    def denied(cls, decision: Decision) -> Problem:
        reason = decision.reason.value
        if decision.needs_consent:
            return cls(
                ProblemType.CONSENT_REQUIRED,
                f"Processing for purpose '{decision.purpose}' needs the subject's consent "
                f"({reason}).",
                {"purpose": decision.purpose, "reason": reason},
            )
        return cls(
            ProblemType.PURPOSE_DENIED,
            f"The policy does not permit purpose '{decision.purpose}' here ({reason}).",
            {"purpose": decision.purpose, "reason": reason},
        )

    @classmethod
    def subject_required(cls, purpose: str | None, reason: str) -> Problem:
        return cls(
            ProblemType.SUBJECT_REQUIRED,
            "This route processes personal data and needs an identified subject.",
            {"purpose": purpose, "reason": reason},
        )

    @classmethod
    def undeclared(cls) -> Problem:
        return cls(
            ProblemType.UNDECLARED_ROUTE,
            "This route declares no purpose and this service refuses undeclared routes.",
            {"reason": "undeclared"},
        )

    @classmethod
    def unavailable(cls, purpose: str | None) -> Problem:
        return cls(
            ProblemType.DECISION_UNAVAILABLE,
            "The privacy decision could not be made, so nothing was processed. Try again later.",
            {"purpose": purpose, "reason": "decision_unavailable"},
        )

    @classmethod
    def unredactable(cls, reason: str) -> Problem:
        return cls(
            ProblemType.UNREDACTABLE_RESPONSE,
            f"The response had to be redacted but could not be: {reason}.",
            {"reason": "unredactable"},
        )

    @classmethod
    def too_large(cls, limit: int) -> Problem:
        return cls(
            ProblemType.RESPONSE_TOO_LARGE,
            f"The response is larger than the {limit} bytes that may be held to redact it.",
            {"reason": "too_large", "max_bytes": limit},
        )


def check_base(base: str) -> str:
    """A problem type base must be an absolute URI ending in ``/`` (or ``about:``)."""
    if not isinstance(base, str) or not (
        base.startswith(("https://", "http://", "urn:", "tag:")) and base.endswith(("/", ":"))
    ):
        raise PolicyError("problem_base must be an absolute URI ending in '/' or ':'")
    return base
