"""Named tuples are records, and tuple or list subclasses keep working."""

from __future__ import annotations

from collections import namedtuple
from typing import NamedTuple

from privguard import Redactor

Contact = namedtuple("Contact", "email note")


class Phone(NamedTuple):
    phone: str
    count: int


def test_a_named_tuple_is_redacted_by_its_field_names() -> None:
    out = Redactor().redact(Contact("jane@example.com", "card 4111 1111 1111 1111"))
    assert out == Contact("j***@example.com", "card **** **** **** 1111")
    assert type(out) is Contact


def test_a_typed_named_tuple_in_a_list() -> None:
    out = Redactor().redact([Phone("+1 415 555 0132", 3)])
    assert out == [Phone("+* *** *** **32", 3)]


class Pair(tuple):  # type: ignore[type-arg]
    def __new__(cls, a: object, b: object) -> Pair:
        return super().__new__(cls, (a, b))


def test_a_tuple_subclass_with_its_own_constructor_becomes_a_tuple() -> None:
    out = Redactor().redact(Pair("jane@example.com", 1))
    assert out == ("j***@example.com", 1)
    assert type(out) is tuple


def test_event_passes_and_postal_pincodes_are_not_credentials() -> None:
    out = Redactor().redact({"pass": "VIP", "pincode": "560001", "pin": "1234", "password": "x"})
    assert out == {"pass": "VIP", "pincode": "560001", "pin": None, "password": None}
