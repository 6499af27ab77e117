"""Runtime state: the privacy context of the current request or job, and the default guard.

One ``ContextVar`` holds the :class:`PrivacyContext`; the middleware sets it for each
request and resets it with its token in ``finally``, so it is visible to the endpoint,
everything the endpoint calls, threads started with ``run_in_threadpool`` and Starlette
background tasks, and never leaks into the next request.

The default guard is process-wide configuration (``privguard.configure(guard)``): what
the decorators use outside a request when no ``guard=`` is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._errors import PolicyError, PrivguardError
from ._subject import EMPTY_SCOPE, Scope, Subject
from ._taxonomy import RecipientKind

if TYPE_CHECKING:
    from ._decisions import Decision
    from ._guard import Privguard
    from ._policy import Protection

__all__ = [
    "SUBJECT_REQUIRED",
    "NoPrivacyContext",
    "PrivacyContext",
    "bound_privacy_context",
    "configure",
    "current_context",
    "default_guard",
    "get_privacy_context",
]

#: Reason code when personal data would be processed without a known subject.
SUBJECT_REQUIRED: Final = "subject_required"


class NoPrivacyContext(PrivguardError, LookupError):
    """Code asked for the privacy context outside a request or ``bound_privacy_context``."""


class PrivacyContext(NamedTuple):
    """Who the current request or job is about, for which purpose, and what was decided.

    Immutable. A named tuple rather than a frozen dataclass: one is built per request,
    and a tuple costs a quarter as much to build.

    ``purpose`` and ``decision`` are ``None`` on a route that declares nothing (its
    response is still redacted) and when nobody is signed in. ``audience`` is who the
    response goes to: ``None`` for any client (the strictest), or a recipient kind such
    as ``exhibitor``. ``guard`` is the :class:`~privguard.Privguard` that decided.

    >>> ctx = privguard.get_privacy_context()
    >>> ctx.subject.id, ctx.purpose, ctx.decision.reason
    ('u-42', 'essential.service', <Reason.ALLOWED: 'allowed'>)
    """

    subject: Subject | None
    purpose: str | None = None
    decision: Decision | None = None
    categories: tuple[str, ...] = ()
    scope: Scope = EMPTY_SCOPE
    audience: RecipientKind | None = None
    route: str | None = None
    guard: Privguard | None = None

    @property
    def obligations(self) -> tuple[Protection, ...]:
        """The protections the decision attached (e.g. mask card numbers)."""
        return self.decision.obligations if self.decision is not None else ()

    @property
    def allowed(self) -> bool:
        """True when a decision was made and allowed the purpose."""
        return self.decision is not None and self.decision.allowed

    def evolve(self, **changes: Any) -> PrivacyContext:
        """A copy with some fields changed."""
        return self._replace(**changes)

    def __repr__(self) -> str:  # the guard is configuration, not context
        subject = None if self.subject is None else self.subject.id
        return (
            f"PrivacyContext(subject={subject!r}, purpose={self.purpose!r}, "
            f"allowed={self.allowed}, audience={self.audience}, route={self.route!r})"
        )


_CONTEXT: Final[ContextVar[PrivacyContext | None]] = ContextVar(
    "privguard_privacy_context", default=None
)


def current_context() -> PrivacyContext | None:
    """The privacy context of the running request or job, or ``None`` outside one."""
    return _CONTEXT.get()


def get_privacy_context() -> PrivacyContext:
    """The privacy context of the running request or job; :class:`NoPrivacyContext` if none."""
    ctx = _CONTEXT.get()
    if ctx is None:
        raise NoPrivacyContext(
            "no privacy context: add PrivacyMiddleware to the app, or use "
            "bound_privacy_context() in jobs and scripts"
        )
    return ctx


def set_context(ctx: PrivacyContext | None) -> Token[PrivacyContext | None]:
    return _CONTEXT.set(ctx)


def reset_context(token: Token[PrivacyContext | None]) -> None:
    _CONTEXT.reset(token)


@contextmanager
def bound_privacy_context(
    subject: Subject | None,
    *,
    purpose: str | None = None,
    decision: Decision | None = None,
    categories: tuple[str, ...] = (),
    scope: Scope = EMPTY_SCOPE,
    audience: RecipientKind | str | None = None,
    guard: Privguard | None = None,
) -> Iterator[PrivacyContext]:
    """Run a block (a job, a script, a test) with a privacy context, as a request would.

    >>> with bound_privacy_context(Subject.customer("u-42", tenant="acme"), guard=guard):
    ...     send_receipt(order)          # @requires(...) reads the subject from here
    """
    aud = None if audience is None else RecipientKind(audience)
    ctx = PrivacyContext(
        subject=subject,
        purpose=purpose,
        decision=decision,
        categories=tuple(categories),
        scope=scope,
        audience=aud,
        guard=guard,
    )
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


# -- the default guard ------------------------------------------------------------------------
_DEFAULT_GUARD: list[Privguard] = []


def configure(guard: Privguard | None) -> None:
    """Set (or, with ``None``, clear) the guard decorators use when none is given.

    Call it once at start-up, before modules with decorated functions are imported if
    the guard's taxonomy extends the default one: decorators validate their purposes and
    categories when they are applied.
    """
    _DEFAULT_GUARD.clear()
    if guard is not None:
        _DEFAULT_GUARD.append(guard)


def default_guard() -> Privguard | None:
    """The guard set with :func:`configure`, or ``None``."""
    return _DEFAULT_GUARD[0] if _DEFAULT_GUARD else None


def resolve_guard(explicit: Privguard | None) -> Privguard:
    """The guard to use: explicit, else the current request's, else the configured one."""
    if explicit is not None:
        return explicit
    ctx = _CONTEXT.get()
    if ctx is not None and ctx.guard is not None:
        return ctx.guard
    if _DEFAULT_GUARD:
        return _DEFAULT_GUARD[0]
    raise PolicyError(
        "no Privguard to check with: pass guard=..., run inside PrivacyMiddleware, "
        "or call privguard.configure(guard) at start-up"
    )
