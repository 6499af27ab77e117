"""privguard for FastAPI.

>>> from privguard_fastapi import PrivacyMiddleware, PrivacyContextDep, privacy
>>> app.add_middleware(PrivacyMiddleware, guard=guard, subject_resolver=current_subject)
>>> @router.get("/events/{event_id}/attendees")
... @privacy(Purposes.SERVICE, categories=[Categories.EMAIL])
... async def attendees(event_id: str, ctx: PrivacyContextDep): ...

``PrivacyMiddleware`` is privguard's middleware with a route matcher that also sees into
routers included with ``include_router`` (FastAPI keeps those as lazy route groups whose
match names no endpoint). Declarations go on the path operation function with
``@privacy`` (order relative to ``@router.get`` does not matter), or on a dependency with
``dependencies=[Depends(declare(...))]`` on the path operation, the router or the
``include_router`` call. The middleware runs before dependency injection, so it finds
declarations by matching routes, never by running dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Final

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - exercised without FastAPI installed
    raise ImportError(
        "privguard-fastapi needs FastAPI: pip install privguard-fastapi (or pip install fastapi)"
    ) from exc

from starlette.routing import Match
from starlette.types import Scope as ASGIScope

from privguard import (
    PrivacyContext,
    RecipientKind,
    RouteMatcher,
    RouteSpec,
    Scope,
    current_context,
    declaration_of,
    privacy,
)
from privguard import PrivacyMiddleware as _PrivacyMiddleware

__all__ = [
    "FastAPIRouteMatcher",
    "PrivacyContextDep",
    "PrivacyMiddleware",
    "declare",
    "privacy",
    "privacy_context",
]

__version__ = "0.1.0"

_DEPENDENCIES: Final = "privguard.dependencies"


class FastAPIRouteMatcher(RouteMatcher):
    """Matches FastAPI routes, including routers added with ``include_router``.

    FastAPI (0.16x) keeps an included router as one lazy route group whose ``matches``
    names no endpoint; its ``_match`` does. That private method is the one piece of
    FastAPI internals used here, and the reason this lives in its own distribution with
    its own version bounds. Also finds declarations on route, router and include-level
    dependencies.
    """

    def match_opaque(self, route: Any, scope: ASGIScope) -> tuple[Any, ASGIScope] | None:
        match_route = getattr(route, "_match", None)
        if match_route is None:
            return None
        match, child, inner, context = match_route(scope)
        if match is not Match.FULL or inner is None:
            return None
        child = dict(child)
        if context is not None:
            child[_DEPENDENCIES] = tuple(getattr(context, "dependencies", None) or ())
        return inner, child

    def spec_for(self, route: Any, endpoint: Any, scope: ASGIScope) -> RouteSpec | None:
        spec = super().spec_for(route, endpoint, scope)
        if spec is not None:
            return spec
        dependencies = scope.get(_DEPENDENCIES) or getattr(route, "dependencies", None) or ()
        for dependency in dependencies:
            spec = declaration_of(getattr(dependency, "dependency", None))
            if spec is not None:
                return spec
        return None

    def nested(self, route: Any) -> Sequence[Any]:
        original = getattr(route, "original_router", None)
        if original is not None:
            routes: Sequence[Any] = getattr(original, "routes", ())
            return list(routes)
        return super().nested(route)

    def targets(self, route: Any) -> Iterator[object]:
        yield from super().targets(route)
        include = getattr(route, "include_context", None)
        for holder in (route, include):
            for dependency in getattr(holder, "dependencies", None) or ():
                yield getattr(dependency, "dependency", None)


class PrivacyMiddleware(_PrivacyMiddleware):
    """:class:`privguard.PrivacyMiddleware` with :class:`FastAPIRouteMatcher` by default."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("route_matcher", FastAPIRouteMatcher())
        super().__init__(app, *args, **kwargs)


async def privacy_context() -> PrivacyContext:
    """A dependency: the request's :class:`~privguard.PrivacyContext`.

    Raises ``RuntimeError`` (a 500) when the middleware is not installed: an endpoint
    that asks for the context must not run unguarded.
    """
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("no privacy context: add privguard_fastapi.PrivacyMiddleware to the app")
    return ctx


#: ``ctx: PrivacyContextDep`` in a path operation's parameters.
PrivacyContextDep = Annotated[PrivacyContext, Depends(privacy_context)]


def declare(
    purpose: str | None = None,
    *,
    categories: Iterable[str] | str = (),
    recipient: RecipientKind | str | None = None,
    scope: Scope | Callable[[Mapping[str, Any]], Scope] | None = None,
    redact: bool = True,
) -> Callable[[], Awaitable[PrivacyContext]]:
    """A dependency that declares a route's privacy, for ``dependencies=[Depends(...)]``.

    >>> router = APIRouter(dependencies=[Depends(declare(Purposes.SERVICE,
    ...                                                   categories=[Categories.EMAIL]))])

    The middleware finds it on the route before the request reaches FastAPI (a
    ``@privacy`` on the endpoint itself takes precedence); when FastAPI then runs it, it
    fails closed (``RuntimeError``, a 500) if the middleware is not installed.
    """

    async def declared_privacy() -> PrivacyContext:
        ctx = current_context()
        if ctx is None:
            raise RuntimeError(
                "this route's privacy declaration was not applied: add "
                "privguard_fastapi.PrivacyMiddleware to the app"
            )
        return ctx

    marked: Callable[[], Awaitable[PrivacyContext]] = privacy(
        purpose, categories=categories, recipient=recipient, scope=scope, redact=redact
    )(declared_privacy)
    return marked
