"""Named tuples are records, and tuple or list subclasses keep working."""

from __future__ import annotations

from collections import namedtuple
from typing import NamedTuple

import pytest

from privguard import RedactionError, Redactor

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


def test_long_keys_and_wide_dicts_are_not_remembered_across_calls() -> None:
    """The key caches pin memory across requests: they hold short keys only, and key
    sets of at most 64 keys."""
    redactor = Redactor(paths={"$.a.*": "user.contact.email"})
    for i in range(300):
        redactor.redact({"a": {f"{'k' * 200}{i}": "x"}, f"{'z' * 200}{i}": 1})
        redactor.redact({f"field{j}_{i}": j for j in range(70)})
    assert all(len(k) <= 128 for k in redactor._key_cat)
    assert all(len(k) <= 128 for (_, k) in redactor._paths._cache)
    for shapes in redactor._shapes.values():
        assert all(len(keys) <= 64 for keys in shapes)
        assert all(len(k) <= 128 for keys in shapes for k in keys)


def test_an_int_too_long_to_write_is_a_redaction_error() -> None:
    with pytest.raises(RedactionError):
        Redactor().redact({"phone": 10**5000})


def test_ints_that_are_ids_are_not_taken_for_card_numbers() -> None:
    # A 19-digit Visa-prefixed, Luhn-valid int: a random 64-bit id often looks like one.
    long_id = 4111111111111111110
    assert str(long_id)[:1] == "4" and len(str(long_id)) == 19
    card = 4111111111111111
    redactor = Redactor()
    out = redactor.redact({"notes": long_id, "span_id": card, "orderId": card, "x": [long_id]})
    assert out == {"notes": long_id, "span_id": card, "orderId": card, "x": [long_id]}
    assert redactor.redact({"notes": card, "paid": card}) == {
        "notes": "************1111",
        "paid": "************1111",
    }
