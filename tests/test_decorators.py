"""@requires and @redacts on data-access functions; @privacy's declarations."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from privguard import (
    Categories,
    ConsentMethod,
    ConsentRequired,
    Evidence,
    MemoryStore,
    PolicyError,
    PurposeDenied,
    Purposes,
    RecipientKind,
    Scope,
    StoreUnavailable,
    Subject,
    UnknownCategory,
    UnknownPurpose,
    UnknownRecipientKind,
)
from privguard._context import (
    NoPrivacyContext,
    bound_privacy_context,
    configure,
    current_context,
    get_privacy_context,
)
from privguard._decorators import PathScope, RouteSpec, declaration_of, privacy, redacts, requires
from privguard._guard import Privguard

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
BOB = Subject.business_contact("c-bob", tenant="acme")
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
RECORD = {"email": "jane.doe@example.com", "card_number": "4111 1111 1111 1111"}


@pytest.fixture
def guard() -> Iterator[Privguard]:
    made = Privguard(store=MemoryStore())
    configure(made)
    yield made
    configure(None)
    made.close()


# -- @requires -----------------------------------------------------------------------------
def test_sync_function_subject_from_argument(guard: Privguard) -> None:
    ran: list[str] = []

    @requires(Purposes.MARKETING_EMAIL, categories=[Categories.EMAIL], subject_arg="contact")
    def send_newsletter(contact: Subject, issue: str) -> str:
        ran.append(issue)
        return f"sent {issue}"

    with pytest.raises(ConsentRequired) as denied:
        send_newsletter(ALICE, "may")
    assert (denied.value.purpose, denied.value.reason) == (
        Purposes.MARKETING_EMAIL,
        "consent_missing",
    )
    assert ran == []
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    assert send_newsletter(ALICE, issue="june") == "sent june"
    assert send_newsletter(contact=ALICE, issue="july") == "sent july"
    guard.ledger.withdraw(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    with pytest.raises(ConsentRequired, match="consent_withdrawn"):
        send_newsletter(ALICE, "august")
    assert ran == ["june", "july"]


async def test_async_function_subject_from_context(guard: Privguard) -> None:
    @requires(Purposes.SERVICE, categories=[Categories.EMAIL])
    async def load_profile(profile_id: str) -> dict[str, str]:
        return {"id": profile_id}

    with pytest.raises(PurposeDenied, match="subject_required"):
        await load_profile("p1")  # no context, no subject argument
    with bound_privacy_context(ALICE):
        assert await load_profile("p1") == {"id": "p1"}
    with bound_privacy_context(None), pytest.raises(PurposeDenied) as denied:
        await load_profile("p1")
    assert denied.value.reason == "subject_required"


async def test_forbidden_purpose_raises_purpose_denied_not_consent_required(
    guard: Privguard,
) -> None:
    @requires(Purposes.SALE, categories=[Categories.EMAIL], subject_arg="who")
    async def sell(who: Subject) -> None:
        raise AssertionError("must not run")

    with pytest.raises(PurposeDenied) as denied:
        await sell(ALICE)
    assert not isinstance(denied.value, ConsentRequired)
    assert denied.value.reason == "forbidden"


async def test_methods_and_scopes(guard: Privguard) -> None:
    class Exhibitors:
        def __init__(self) -> None:
            self.shared: list[str] = []

        @requires(
            Purposes.EXHIBITOR_DISCLOSURE,
            categories=[Categories.EMAIL],
            recipient=RecipientKind.EXHIBITOR,
            subject_arg="contact",
            scope=lambda self, contact, event, exhibitor: Scope(event=event, exhibitor=exhibitor),
        )
        async def share(self, contact: Subject, event: str, exhibitor: str) -> str:
            self.shared.append(exhibitor)
            return exhibitor

    repo = Exhibitors()
    guard.ledger.grant(
        BOB,
        Purposes.EXHIBITOR_DISCLOSURE,
        evidence=EVIDENCE,
        scope=Scope(event="e1", exhibitor="acme"),
    )
    assert await repo.share(BOB, "e1", "acme") == "acme"
    with pytest.raises(ConsentRequired):
        await repo.share(BOB, "e1", "globex")
    assert repo.shared == ["acme"]


def test_generators_are_checked_before_the_first_item(guard: Privguard) -> None:
    opened: list[bool] = []

    @requires(Purposes.MARKETING_EMAIL, subject_arg="contact")
    def rows(contact: Subject) -> Iterator[int]:
        opened.append(True)
        yield from range(3)

    with pytest.raises(ConsentRequired):
        list(rows(ALICE))
    assert opened == []
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    assert list(rows(ALICE)) == [0, 1, 2]


async def test_async_generators_are_checked(guard: Privguard) -> None:
    @requires(Purposes.MARKETING_EMAIL, subject_arg="contact")
    async def rows(contact: Subject) -> AsyncIterator[int]:
        for i in range(2):
            yield i

    with pytest.raises(ConsentRequired):
        [i async for i in rows(ALICE)]
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    assert [i async for i in rows(ALICE)] == [0, 1]


async def test_store_down_raises_and_the_function_never_runs(guard: Privguard) -> None:
    @requires(Purposes.MARKETING_EMAIL, subject_arg="contact")
    async def send(contact: Subject) -> None:
        raise AssertionError("must not run")

    assert isinstance(guard.store, MemoryStore)
    guard.store.unavailable = True
    with pytest.raises(StoreUnavailable):
        await send(ALICE)


def test_explicit_guard_wins_and_no_guard_is_a_policy_error() -> None:
    configure(None)
    mine = Privguard()
    try:

        @requires(Purposes.SERVICE, subject_arg="who", guard=mine)
        def with_guard(who: Subject) -> str:
            return "ok"

        @requires(Purposes.SERVICE, subject_arg="who")
        def without_guard(who: Subject) -> str:
            return "ok"

        assert with_guard(ALICE) == "ok"
        with pytest.raises(PolicyError, match="configure"):
            without_guard(ALICE)
        with bound_privacy_context(ALICE, guard=mine):
            assert without_guard(ALICE) == "ok"  # the request's guard
    finally:
        mine.close()


def test_unknown_names_fail_at_decoration() -> None:
    with pytest.raises(UnknownPurpose):
        requires("no.such.purpose")
    with pytest.raises(UnknownCategory):
        requires(Purposes.SERVICE, categories=["user.nope"])
    with pytest.raises(UnknownRecipientKind):
        requires(Purposes.SERVICE, recipient="martians")
    with pytest.raises(PolicyError, match="not a parameter"):

        @requires(Purposes.SERVICE, subject_arg="missing")
        def f(who: Subject) -> None: ...

    with pytest.raises(UnknownRecipientKind):
        redacts(audience="martians")


def test_a_subject_argument_of_the_wrong_type_is_refused(guard: Privguard) -> None:
    @requires(Purposes.SERVICE, subject_arg="who")
    def f(who: Any) -> None: ...

    with pytest.raises(TypeError, match="Subject"):
        f("u-alice")


def test_wraps_keeps_name_doc_and_signature(guard: Privguard) -> None:
    def original(contact: Subject, issue: str = "x") -> str:
        """Send the newsletter."""
        return issue

    for decorator in (requires(Purposes.SERVICE, subject_arg="contact"), redacts()):
        wrapped = decorator(original)
        assert wrapped.__name__ == "original"
        assert wrapped.__doc__ == "Send the newsletter."
        assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
        assert inspect.signature(wrapped) == inspect.signature(original)
    assert inspect.iscoroutinefunction(requires(Purposes.SERVICE)(_async_noop))
    assert inspect.iscoroutinefunction(redacts()(_async_noop))


async def _async_noop() -> None:
    return None


# -- @redacts ------------------------------------------------------------------------------
@dataclasses.dataclass
class Attendee:
    name: str
    email: str


def test_redacts_sync_return_values_for_an_audience(guard: Privguard) -> None:
    @redacts()
    def record() -> dict[str, str]:
        return dict(RECORD)

    @redacts(audience=RecipientKind.PAYMENT_PROCESSOR)
    def for_processor() -> dict[str, str]:
        return dict(RECORD)

    assert record() == {"email": "j***@example.com", "card_number": "**** **** **** 1111"}
    assert for_processor()["card_number"] == RECORD["card_number"]


async def test_redacts_async_functions_generators_and_dataclasses(guard: Privguard) -> None:
    @redacts()
    async def one() -> Attendee:
        return Attendee("Jane", "jane.doe@example.com")

    @redacts()
    async def many() -> AsyncIterator[dict[str, str]]:
        for _ in range(2):
            yield dict(RECORD)

    @redacts()
    def sync_many() -> Iterator[str]:
        yield "call 4111 1111 1111 1111"

    assert (await one()).email == "j***@example.com"
    assert [r["email"] async for r in many()] == ["j***@example.com"] * 2
    assert list(sync_many()) == ["call **** **** **** 1111"]


def test_redacts_uses_the_context_audience(guard: Privguard) -> None:
    @redacts()
    def card() -> dict[str, str]:
        return {"card_number": RECORD["card_number"]}

    with bound_privacy_context(ALICE, audience="payment_processor"):
        assert card() == {"card_number": RECORD["card_number"]}
    assert card() == {"card_number": "**** **** **** 1111"}


def test_decorators_compose(guard: Privguard) -> None:
    class Repo:
        @redacts()
        @requires(Purposes.SERVICE, categories=[Categories.EMAIL], subject_arg="who")
        def contact_of(self, who: Subject) -> dict[str, str]:
            return {"email": RECORD["email"]}

    assert Repo().contact_of(ALICE) == {"email": "j***@example.com"}
    assert Repo.contact_of.__name__ == "contact_of"


# -- the privacy context outside requests --------------------------------------------------
def test_get_privacy_context_outside_a_request() -> None:
    assert current_context() is None
    with pytest.raises(NoPrivacyContext):
        get_privacy_context()
    with bound_privacy_context(ALICE, purpose=Purposes.SERVICE) as ctx:
        assert get_privacy_context() is ctx
        assert ctx.obligations == () and not ctx.allowed
    assert current_context() is None


# -- @privacy ------------------------------------------------------------------------------
def test_privacy_marks_and_returns_the_endpoint_unchanged() -> None:
    async def endpoint() -> None: ...

    marked = privacy(Purposes.SERVICE, categories=Categories.EMAIL, scope=PathScope(event="id"))(
        endpoint
    )
    assert marked is endpoint
    spec = declaration_of(endpoint)
    assert spec == RouteSpec(
        Purposes.SERVICE, (Categories.EMAIL,), scope=spec.scope if spec else None
    )
    assert spec is not None and spec.scope_for({"path_params": {"id": 7}}) == Scope(event="7")
    assert declaration_of(object()) is None


def test_privacy_rejects_objects_without_attributes() -> None:
    with pytest.raises(PolicyError):
        privacy(Purposes.SERVICE)(42)


def test_route_spec_validation() -> None:
    with pytest.raises(PolicyError):
        RouteSpec(Purposes.SERVICE, scope="event=e1")  # type: ignore[arg-type]
    with pytest.raises(PolicyError):
        PathScope()
    assert repr(PathScope(event="event_id")) == "PathScope(event='event_id')"


# -- static types --------------------------------------------------------------------------
def test_type_checkers_see_the_original_signatures(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "typed.py"
    source.write_text(
        textwrap.dedent(
            """
            from privguard import Subject
            from privguard._decorators import redacts, requires

            @requires("essential.service", subject_arg="who")
            def sync_fn(who: Subject, n: int) -> str: ...

            @requires("essential.service")
            async def async_fn(n: int) -> list[str]: ...

            @redacts()
            def red(n: int) -> dict[str, str]: ...

            class Repo:
                @requires("essential.service")
                async def method(self, n: int) -> bytes: ...

            reveal_type(sync_fn)
            reveal_type(async_fn)
            reveal_type(red)
            reveal_type(Repo().method)
            """
        )
    )
    out, _, _ = api.run(
        [
            str(source),
            "--strict",
            "--disable-error-code=empty-body",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    lines = [line.split("note: ", 1)[1] for line in out.splitlines() if "note: Revealed" in line]
    simple = [line.replace("builtins.", "") for line in lines]  # mypy < 2 spells them out
    assert simple == [
        'Revealed type is "def (who: privguard._subject.Subject, n: int) -> str"',
        'Revealed type is "def (n: int) -> typing.Coroutine[Any, Any, list[str]]"',
        'Revealed type is "def (n: int) -> dict[str, str]"',
        'Revealed type is "def (n: int) -> typing.Coroutine[Any, Any, bytes]"',
    ], out


def test_functools_wraps_is_what_is_used() -> None:
    # Tools such as FastAPI follow __wrapped__ to the real signature.
    wrapped = requires(Purposes.SERVICE)(_async_noop)
    assert functools.WRAPPER_ASSIGNMENTS
    assert all(
        getattr(wrapped, a) == getattr(_async_noop, a) for a in ("__module__", "__qualname__")
    )


# -- generators are forwarded as `yield from` forwards them --------------------------------
def _async_rows(events: list[object]) -> Any:
    async def rows(contact: Subject) -> AsyncGenerator[dict[str, str], str | None]:
        try:
            got = yield dict(RECORD)
            events.append(("sent", got))
            try:
                yield dict(RECORD)
            except ValueError:
                events.append("thrown")
                yield {"email": "after@example.com"}
            yield dict(RECORD)
        finally:
            events.append("closed")

    return rows


@pytest.mark.parametrize("which", ["requires", "redacts"])
async def test_async_generators_get_asend_athrow_and_aclose(guard: Privguard, which: str) -> None:
    guard.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    events: list[object] = []
    decorate = (
        requires(Purposes.MARKETING_EMAIL, subject_arg="contact")
        if which == "requires"
        else redacts()
    )
    rows = decorate(_async_rows(events))
    assert inspect.isasyncgenfunction(rows)
    gen = rows(ALICE)
    first = await gen.asend(None)
    await gen.asend("page 2")
    third = await gen.athrow(ValueError("stop that"))
    assert events == [("sent", "page 2"), "thrown"]
    await gen.aclose()
    assert events[-1] == "closed"  # at once: a cursor in the generator is released now
    if which == "redacts":
        assert (first["email"], third["email"]) == ("j***@example.com", "a***@example.com")
    else:
        assert (first["email"], third["email"]) == (RECORD["email"], "after@example.com")


async def test_an_exception_the_async_generator_does_not_handle_comes_back_out(
    guard: Privguard,
) -> None:
    events: list[object] = []
    gen = redacts()(_async_rows(events))(ALICE)
    await gen.__anext__()
    with pytest.raises(KeyError):
        await gen.athrow(KeyError("not handled"))
    assert events == ["closed"]


def test_generators_under_redacts_get_send_throw_close_and_return(guard: Privguard) -> None:
    events: list[object] = []

    @redacts()
    def rows() -> Generator[dict[str, str], str | None, int]:
        try:
            got = yield dict(RECORD)
            events.append(("sent", got))
            try:
                yield dict(RECORD)
            except ValueError:
                events.append("thrown")
                yield {"email": "after@example.com"}
            return 7 if got != "give it back" else dict(RECORD)  # type: ignore[return-value]
        finally:
            events.append("closed")

    gen = rows()
    assert next(gen)["email"] == "j***@example.com"
    gen.send("page 2")
    assert gen.throw(ValueError("stop that"))["email"] == "a***@example.com"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == 7
    assert events == [("sent", "page 2"), "thrown", "closed"]

    returned = rows()
    next(returned)
    returned.send("give it back")
    with pytest.raises(StopIteration) as stop:
        next(returned)
    assert stop.value.value["card_number"] == "**** **** **** 1111"  # redacted too

    closed = rows()
    next(closed)
    closed.close()
    assert events[-1] == "closed" and events.count("closed") == 3
