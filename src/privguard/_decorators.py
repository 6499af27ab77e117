"""Declarations on host code: ``@privacy`` on endpoints, ``@requires`` and ``@redacts`` on
data-access functions.

``@privacy`` only marks the endpoint (an attribute the middleware finds by matching the
app's routes); it never wraps it, so frameworks see the endpoint unchanged.
``@requires`` checks the decision before the function runs and raises
:class:`~privguard.PurposeDenied` or :class:`~privguard.ConsentRequired`; ``@redacts``
redacts what the function returns. Both work on sync and async functions, methods and
generators, in a request (subject and guard from the privacy context) or outside one
(subject from an argument, guard given or configured).

Purposes and categories are validated when the decorator is applied, against the
taxonomy of ``guard=`` if given, else of the guard set with ``privguard.configure``,
else the default taxonomy.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, cast, overload

from ._context import (
    SUBJECT_REQUIRED,
    current_context,
    default_guard,
    resolve_guard,
)
from ._errors import PolicyError, PurposeDenied
from ._subject import EMPTY_SCOPE, Scope, Subject
from ._taxonomy import RecipientKind, Taxonomy

if TYPE_CHECKING:
    from ._guard import Privguard

__all__ = [
    "FROM_CONTEXT",
    "ROUTE_ATTRIBUTE",
    "PathScope",
    "RouteSpec",
    "declaration_of",
    "privacy",
    "redacts",
    "requires",
]

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E")

#: The attribute ``@privacy`` sets on an endpoint.
ROUTE_ATTRIBUTE: Final = "__privguard_route__"

ASGIScope = Mapping[str, Any]
ScopeFactory = Callable[[ASGIScope], Scope]


class _FromContext:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FROM_CONTEXT"


#: ``@redacts()``'s default audience: the current privacy context's audience.
FROM_CONTEXT: Final = _FromContext()


def _taxonomy_for(guard: Privguard | None) -> Taxonomy:
    if guard is not None:
        return guard.policy.taxonomy
    configured = default_guard()
    if configured is not None:
        return configured.policy.taxonomy
    return Taxonomy.default()


def _categories(categories: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(categories, str):
        return (categories,)
    return tuple(categories)


def _recipient(recipient: RecipientKind | str | None) -> RecipientKind | None:
    return None if recipient is None else Taxonomy.recipient_kind(recipient)


# -- route declarations ---------------------------------------------------------------------
class PathScope:
    """A consent scope read from path parameters: ``PathScope(event="event_id")``.

    For ``/events/{event_id}/attendees`` it gives ``Scope(event=<the event id>)``.
    """

    __slots__ = ("params",)

    def __init__(self, **params: str) -> None:
        if not params:
            raise PolicyError("PathScope needs at least one scope key")
        self.params: tuple[tuple[str, str], ...] = tuple(sorted(params.items()))

    def __call__(self, request_scope: ASGIScope) -> Scope:
        path_params = request_scope.get("path_params") or {}
        return Scope({key: str(path_params[param]) for key, param in self.params})

    def __repr__(self) -> str:
        return f"PathScope({', '.join(f'{k}={v!r}' for k, v in self.params)})"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What a route does with personal data: the privacy declaration of one endpoint.

    ``purpose``: what the route processes personal data for (``None``: nothing to check,
    only allowed without categories). ``categories``: the personal data it touches.
    ``recipient``: who the response goes to (``None``: any client, the strictest
    redaction). ``scope``: the consent scope, a :class:`~privguard.Scope` or a callable
    that takes the ASGI scope (with ``path_params``) and returns one, such as
    :class:`PathScope`. ``redact=False`` declares that the response carries no personal
    data, so it passes through unread (the fast path; the host vouches for it).
    """

    purpose: str | None
    categories: tuple[str, ...] = ()
    recipient: RecipientKind | None = None
    scope: Scope | ScopeFactory | None = None
    redact: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", _categories(self.categories))
        object.__setattr__(self, "recipient", _recipient(self.recipient))
        if self.purpose is None and self.categories:
            raise PolicyError("a route that declares personal data categories needs a purpose")
        if self.purpose is not None and not isinstance(self.purpose, str):
            raise PolicyError("purpose must be a string")
        if self.scope is not None and not (isinstance(self.scope, Scope) or callable(self.scope)):
            raise PolicyError("scope must be a Scope or a callable that returns one")
        if not isinstance(self.redact, bool):
            raise PolicyError("redact must be True or False")

    def validate(self, taxonomy: Taxonomy) -> RouteSpec:
        """Raise :class:`~privguard.PolicyError` if a purpose or category is unknown."""
        if self.purpose is not None:
            taxonomy.purpose(self.purpose)
        for category in self.categories:
            taxonomy.category(category)
        return self

    def scope_for(self, request_scope: ASGIScope) -> Scope:
        if self.scope is None:
            return EMPTY_SCOPE
        if isinstance(self.scope, Scope):
            return self.scope
        made = self.scope(request_scope)
        if not isinstance(made, Scope):
            made = Scope(made)
        return made


def privacy(
    purpose: str | None = None,
    *,
    categories: Iterable[str] | str = (),
    recipient: RecipientKind | str | None = None,
    scope: Scope | ScopeFactory | None = None,
    redact: bool = True,
    guard: Privguard | None = None,
) -> Callable[[E], E]:
    """Declare an endpoint's purpose and categories for :class:`~privguard.PrivacyMiddleware`.

    >>> @privacy(Purposes.SERVICE, categories=[Categories.EMAIL],
    ...          scope=PathScope(event="event_id"))
    ... async def attendees(request): ...

    The endpoint is returned unchanged, with the declaration as an attribute, so the
    order relative to a framework's route decorator does not matter. Also works on the
    ``get``/``post``/... methods of a Starlette ``HTTPEndpoint`` and on a FastAPI
    dependency used in ``dependencies=[...]`` (see ``privguard_fastapi.declare``).
    """
    spec = RouteSpec(
        purpose,
        categories=_categories(categories),
        recipient=_recipient(recipient),
        scope=scope,
        redact=redact,
    ).validate(_taxonomy_for(guard))

    def mark(endpoint: E) -> E:
        try:
            setattr(endpoint, ROUTE_ATTRIBUTE, spec)
        except (AttributeError, TypeError):
            raise PolicyError(
                f"cannot declare privacy on {endpoint!r}: it takes no attributes"
            ) from None
        return endpoint

    return mark


def declaration_of(endpoint: object) -> RouteSpec | None:
    """The :class:`RouteSpec` ``@privacy`` put on ``endpoint``, or ``None``."""
    spec = getattr(endpoint, ROUTE_ATTRIBUTE, None)
    return spec if isinstance(spec, RouteSpec) else None


# -- data-access decorators -------------------------------------------------------------------
class _Decorator(Protocol):
    """What ``@requires(...)`` and ``@redacts(...)`` return: the signature is kept."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...


def _subject_getter(
    fn: Callable[..., Any], subject_arg: str | None
) -> Callable[[tuple[Any, ...], dict[str, Any]], Subject | None]:
    if subject_arg is None:

        def from_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Subject | None:
            ctx = current_context()
            return ctx.subject if ctx is not None else None

        return from_context
    params = list(inspect.signature(fn).parameters.values())
    names = [p.name for p in params]
    if subject_arg not in names:
        raise PolicyError(
            f"subject_arg={subject_arg!r} is not a parameter of {getattr(fn, '__qualname__', fn)}"
        )
    param = params[names.index(subject_arg)]
    index = (
        names.index(subject_arg)
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        else None
    )
    default = None if param.default is param.empty else param.default

    def from_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Subject | None:
        if subject_arg in kwargs:
            value = kwargs[subject_arg]
        elif index is not None and index < len(args):
            value = args[index]
        else:
            value = default
        if value is not None and not isinstance(value, Subject):
            raise TypeError(f"argument {subject_arg!r} must be a privguard Subject")
        return value

    return from_argument


def requires(
    purpose: str,
    *,
    categories: Iterable[str] | str = (),
    recipient: RecipientKind | str | None = None,
    scope: Scope | Callable[..., Scope] | None = None,
    subject_arg: str | None = None,
    guard: Privguard | None = None,
) -> _Decorator:
    """Check the decision before a data-access function runs.

    >>> @requires(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL],
    ...           subject_arg="contact")
    ... async def send_newsletter(contact: Subject, issue: Issue) -> None: ...

    The subject is the argument named ``subject_arg``, or else the current privacy
    context's subject; with neither, :class:`~privguard.PurposeDenied` with reason
    ``subject_required``. ``scope`` is a :class:`~privguard.Scope`, or a callable that
    gets the function's arguments and returns one. A denial raises
    :class:`~privguard.ConsentRequired` (missing or withdrawn consent) or
    :class:`~privguard.PurposeDenied`; a store outage raises
    :class:`~privguard.StoreUnavailable`. The function never runs unless allowed.
    """
    cats = _categories(categories)
    rkind = _recipient(recipient)
    taxonomy = _taxonomy_for(guard)
    taxonomy.purpose(purpose)
    for category in cats:
        taxonomy.category(category)
    if scope is not None and not (isinstance(scope, Scope) or callable(scope)):
        raise PolicyError("scope must be a Scope or a callable that returns one")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        get_subject = _subject_getter(fn, subject_arg)

        def prepare(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[Privguard, Subject, Scope]:
            subject = get_subject(args, kwargs)
            if subject is None:
                raise PurposeDenied(purpose, SUBJECT_REQUIRED, categories=cats)
            if scope is None:
                check_scope = EMPTY_SCOPE
            elif isinstance(scope, Scope):
                check_scope = scope
            else:
                check_scope = scope(*args, **kwargs)
            return resolve_guard(guard), subject, check_scope

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                g, subject, check_scope = prepare(args, kwargs)
                decision = await g.acheck(
                    subject, purpose, cats, recipient=rkind, scope=check_scope
                )
                decision.raise_for_denial()
                return await fn(*args, **kwargs)

            return async_wrapper

        if inspect.isasyncgenfunction(fn):

            async def acheck(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                g, subject, check_scope = prepare(args, kwargs)
                decision = await g.acheck(
                    subject, purpose, cats, recipient=rkind, scope=check_scope
                )
                decision.raise_for_denial()

            return _async_generator_wrapper(fn, acheck, _same)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                g, subject, check_scope = prepare(args, kwargs)
                decision = g.check(subject, purpose, cats, recipient=rkind, scope=check_scope)
                decision.raise_for_denial()
                return (yield from fn(*args, **kwargs))

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g, subject, check_scope = prepare(args, kwargs)
            g.check(subject, purpose, cats, recipient=rkind, scope=check_scope).raise_for_denial()
            return fn(*args, **kwargs)

        return wrapper

    return cast(_Decorator, decorate)


def redacts(
    audience: RecipientKind | str | _FromContext | None = FROM_CONTEXT,
    *,
    guard: Privguard | None = None,
) -> _Decorator:
    """Redact what a function returns (or yields) for ``audience``.

    >>> @redacts(audience="exhibitor")
    ... async def attendee_card(attendee_id: str) -> dict[str, str]: ...

    ``audience`` defaults to the current privacy context's (``None``, any client, outside
    a request): ``None`` is the strictest. Return values may be dicts, lists,
    dataclasses, Pydantic models or strings, as :meth:`Redactor.redact` takes.
    """
    fixed: RecipientKind | None = None
    if not isinstance(audience, _FromContext):
        fixed = _recipient(audience)

    def audience_now() -> RecipientKind | None:
        if not isinstance(audience, _FromContext):
            return fixed
        ctx = current_context()
        return ctx.audience if ctx is not None else None

    def redact(value: Any) -> Any:
        return resolve_guard(guard).redactor.redact(value, audience=audience_now())

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return redact(await fn(*args, **kwargs))

            return async_wrapper

        if inspect.isasyncgenfunction(fn):
            return _async_generator_wrapper(fn, None, redact)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                return (yield from _forward(fn(*args, **kwargs), redact))

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                return _redact_later(result, redact)
            return redact(result)

        return wrapper

    return cast(_Decorator, decorate)


async def _redact_later(result: Awaitable[Any], redact: Callable[[Any], Any]) -> Any:
    return redact(await result)


def _same(item: Any) -> Any:
    return item


def _forward(
    gen: Generator[Any, Any, Any], transform: Callable[[Any], Any]
) -> Generator[Any, Any, Any]:
    """``yield from gen`` with ``transform`` applied to what it yields: values sent and
    exceptions thrown in reach ``gen``, closing closes it, its return value is returned."""
    try:
        item = next(gen)
        while True:
            try:
                sent = yield transform(item)
            except GeneratorExit:
                raise
            except BaseException as exc:
                item = gen.throw(exc)
            else:
                item = gen.send(sent)
    except StopIteration as stop:
        return None if stop.value is None else transform(stop.value)
    finally:
        gen.close()


def _async_generator_wrapper(
    fn: Callable[..., AsyncGenerator[Any, Any]],
    before: Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[None]] | None,
    transform: Callable[[Any], Any],
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function running ``before`` (the check) ahead of ``fn``'s first
    step, then forwarding as ``yield from`` would: values sent (``asend``) and exceptions
    thrown in (``athrow``) reach ``fn``'s generator, and closing the wrapper closes it at
    once (its ``finally`` blocks run then, not when the garbage collector gets to it).

    ``fn``'s generator is closed by the wrapper and by nothing else: it is kept out of the
    event loop's async generator hooks (see :func:`_first_step_unhooked`), so the loop
    never closes it on its own, at the same time as the wrapper does."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        if before is not None:
            await before(args, kwargs)
        agen = fn(*args, **kwargs)
        try:
            item = await _first_step_unhooked(agen)
            while True:
                try:
                    sent = yield transform(item)
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(sent)
        except StopAsyncIteration:
            return
        finally:
            await agen.aclose()

    return wrapper


def _first_step_unhooked(agen: AsyncGenerator[Any, Any]) -> Awaitable[Any]:
    """``agen.__anext__()``, with the thread's async generator hooks off while it is called.

    The hooks are read once, on an async generator's first step. asyncio's ``firstiter``
    hook would register ``agen`` with the loop, and the loop closes every registered
    generator that is still open when ``asyncio.run`` ends (``shutdown_asyncgens``), all
    at once. It would then close ``agen`` while the wrapper, closed by the same shutdown,
    is closing it too, and the second ``aclose()`` fails with "asynchronous generator is
    already running" (an ERROR in the loop's log). Likewise asyncio's ``finalizer`` hook,
    when the garbage collector finalizes the wrapper and ``agen`` together (in a
    reference cycle), would schedule ``agen.aclose()`` beside the wrapper's.

    Without the hooks, the wrapper is the one owner: it is registered (and finalized) as
    any async generator, and closing it closes ``agen``, whose ``finally`` blocks so run
    once. The body of ``agen`` does not run here (only once the result is awaited), so
    async generators it starts get the hooks as usual.
    """
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=None, finalizer=_closed_by_the_wrapper)
    try:
        return agen.__anext__()
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)


def _closed_by_the_wrapper(agen: AsyncGenerator[Any, Any]) -> None:
    """The ``finalizer`` hook of a wrapped generator: nothing to do. The generator is only
    collected with its wrapper still open when both are collected together, and then the
    wrapper's own finalization closes it (a no-op hook, not none: with none, Python would
    close it at once, without an event loop to run the ``await``s in its ``finally``)."""
