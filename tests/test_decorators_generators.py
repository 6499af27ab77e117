"""Decorated async generators are closed once, by their wrapper, in every way they end.

The wrapper of an async generator closes the generator it wraps. If the event loop also
closed that generator on its own (at the end of ``asyncio.run``, or when the garbage
collector finalizes both together), the two ``aclose()`` calls would race and asyncio
would report "aclose(): asynchronous generator is already running". These tests run each
way a decorated async generator can end, with a ``finally`` block that awaits (as closing
a database cursor does), and check that nothing is reported and the block runs once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any

import pytest

from privguard import (
    ConsentMethod,
    ConsentRequired,
    Evidence,
    MemoryStore,
    Purposes,
    Subject,
)
from privguard._context import configure
from privguard._decorators import redacts, requires
from privguard._guard import Privguard

ALICE = Subject.customer("u-alice", tenant="acme", jurisdiction="DE")
EVIDENCE = Evidence(method=ConsentMethod.FORM, actor="u-alice", notice_version="n1")
RECORD = {"email": "jane.doe@example.com"}

Decorate = Callable[[Callable[..., Any]], Callable[..., Any]]


@pytest.fixture
def guard() -> Iterator[Privguard]:
    made = Privguard(store=MemoryStore())
    configure(made)
    made.ledger.grant(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)
    yield made
    configure(None)
    made.close()


def _requires() -> Decorate:
    return requires(Purposes.MARKETING_EMAIL, subject_arg="contact")


def _redacts() -> Decorate:
    return redacts()


def _both() -> Decorate:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _requires()(_redacts()(fn))

    return decorate


DECORATORS = pytest.mark.parametrize(
    "decorator", [_requires, _redacts, _both], ids=["requires", "redacts", "both"]
)


class Rows:
    """A decorated async generator whose ``finally`` awaits, and what it went through."""

    def __init__(self, decorator: Callable[[], Decorate], *, fail_at: int | None = None) -> None:
        self.started = 0
        self.cleanups = 0
        self.cleaned_up = 0

        async def rows(contact: Subject) -> AsyncGenerator[dict[str, str], None]:
            self.started += 1
            try:
                for i in range(3):
                    if i == fail_at:
                        raise KeyError("in the generator")
                    yield dict(RECORD)
            finally:
                self.cleanups += 1
                await asyncio.sleep(0)  # a cursor closed over the network
                self.cleaned_up += 1

        self.gen_function = decorator()(rows)

    def __call__(self) -> AsyncGenerator[dict[str, str], None]:
        gen: AsyncGenerator[dict[str, str], None] = self.gen_function(ALICE)
        return gen

    def assert_closed_once(self) -> None:
        assert (self.started, self.cleanups, self.cleaned_up) == (1, 1, 1)


def _run(main: Callable[[], Coroutine[Any, Any, None]], caplog: pytest.LogCaptureFixture) -> None:
    """``asyncio.run(main())``, failing on anything the loop reports, shutdown included."""
    reported: list[dict[str, Any]] = []

    async def watched() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reported.append(context)
        )
        await main()
        for _ in range(5):  # let scheduled closes run, then collect what they leave
            await asyncio.sleep(0)
        gc.collect()

    with caplog.at_level(logging.ERROR):
        asyncio.run(watched())
        gc.collect()  # a failed task logs when it is collected
    assert reported == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@DECORATORS
def test_left_open_when_asyncio_run_ends(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)
    kept: list[object] = []

    async def main() -> None:
        gen = rows()
        await gen.__anext__()
        kept.append(gen)  # still open when main returns: shutdown_asyncgens closes it

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_collected_while_suspended(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)

    async def main() -> None:
        gen = rows()
        await gen.__anext__()
        del gen
        for _ in range(5):
            await asyncio.sleep(0)
        rows.assert_closed_once()

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_collected_in_a_reference_cycle_while_suspended(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)

    class Holder:
        gen: object
        me: object

    async def main() -> None:
        holder = Holder()
        holder.me = holder
        holder.gen = rows()
        await holder.gen.__anext__()  # type: ignore[attr-defined]
        del holder
        gc.collect()  # finalizes the wrapper and the generator it wraps together
        for _ in range(5):
            await asyncio.sleep(0)
        rows.assert_closed_once()

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_break_then_aclose(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)

    async def main() -> None:
        gen = rows()
        async for _ in gen:
            break
        await gen.aclose()
        rows.assert_closed_once()  # at once, not at shutdown
        await gen.aclose()  # closing again does nothing

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_exhausted(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)

    async def main() -> None:
        assert len([row async for row in rows()]) == 3
        rows.assert_closed_once()

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_athrow_that_the_generator_does_not_handle(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator)

    async def main() -> None:
        gen = rows()
        await gen.__anext__()
        with pytest.raises(ValueError, match="thrown in"):
            await gen.athrow(ValueError("thrown in"))
        rows.assert_closed_once()

    _run(main, caplog)
    rows.assert_closed_once()


@DECORATORS
def test_exception_inside_the_generator(
    guard: Privguard, caplog: pytest.LogCaptureFixture, decorator: Callable[[], Decorate]
) -> None:
    rows = Rows(decorator, fail_at=1)

    async def main() -> None:
        gen = rows()
        await gen.__anext__()
        with pytest.raises(KeyError, match="in the generator"):
            await gen.__anext__()
        rows.assert_closed_once()

    _run(main, caplog)
    rows.assert_closed_once()


def test_denied_before_the_first_item(guard: Privguard, caplog: pytest.LogCaptureFixture) -> None:
    rows = Rows(_both)
    guard.ledger.withdraw(ALICE, Purposes.MARKETING_EMAIL, evidence=EVIDENCE)

    async def main() -> None:
        gen = rows()
        with pytest.raises(ConsentRequired):
            await gen.__anext__()
        await gen.aclose()

    _run(main, caplog)
    assert (rows.started, rows.cleanups) == (0, 0)  # the generator never ran


def test_the_loop_hooks_are_back_for_the_generator_body(guard: Privguard) -> None:
    """Only the wrapped generator's own first step runs without the loop's hooks: its body,
    and generators it starts, run with them."""
    seen: list[object] = []

    async def main() -> None:
        loop_hooks = sys.get_asyncgen_hooks()

        @redacts()
        async def rows() -> AsyncGenerator[int, None]:
            seen.append(sys.get_asyncgen_hooks() == loop_hooks)
            yield 1

        async for _ in rows():
            seen.append(sys.get_asyncgen_hooks() == loop_hooks)

    asyncio.run(main())
    assert seen == [True, True]
