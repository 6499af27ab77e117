"""Structured redaction: key names, paths, annotations, audiences, operators, shapes."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic
import pytest

from privguard import (
    Categories,
    Operator,
    Personal,
    PolicyError,
    RedactionError,
    Redactor,
    UnparseableBody,
)

PAN = "4111 1111 1111 1111"
PAN_DIGITS = PAN.replace(" ", "")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_default_key_names_mask_contact_and_card(redactor: Redactor) -> None:
    out = redactor.redact(
        {
            "email": "jane.doe@example.com",
            "phone": "+1 415 555 0132",
            "card_number": PAN,
            "cvv": "123",
            "event": "devcon",
            "seats": 2,
        }
    )
    assert out == {
        "email": "j***@example.com",
        "phone": "+* *** *** **32",
        "card_number": "**** **** **** 1111",
        "cvv": None,
        "event": "devcon",
        "seats": 2,
    }


@pytest.mark.parametrize(
    "key", ["card_number", "Card-Number", "cardNumber", "CARD_NUMBER", "card number", "pan"]
)
def test_key_names_match_case_and_separator_insensitively(redactor: Redactor, key: str) -> None:
    assert redactor.redact({key: PAN})[key] == "**** **** **** 1111"


@pytest.mark.parametrize("key", ["billingEmail", "contact_email", "work-phone", "mobilePhone"])
def test_key_names_match_as_suffix(redactor: Redactor, key: str) -> None:
    value = "jane@example.com" if "mail" in key.lower() else "+1 415 555 0132"
    assert redactor.redact({key: value})[key] != value


def test_everything_under_a_categorised_key_takes_its_category(redactor: Redactor) -> None:
    out = redactor.redact({"address": {"street": "1 Main St", "lines": ["Flat 2", "Springfield"]}})
    assert out == {
        "address": {
            "street": "[user.contact.address.street]",
            "lines": ["[user.contact.address]", "[user.contact.address]"],
        }
    }


def test_input_is_never_mutated_and_shape_is_kept(redactor: Redactor) -> None:
    data = {
        "attendees": [
            {"email": "a@example.com", "card_number": PAN, "tags": ("vip", "speaker")},
            {"email": "b@example.com", "cvv": "999", "nested": {"phone": "+44 20 7946 0958"}},
        ],
        "count": 2,
    }
    before = copy.deepcopy(data)
    out = redactor.redact(data)
    assert data == before
    assert out is not data
    assert list(out) == list(data)
    assert [list(a) for a in out["attendees"]] == [list(a) for a in data["attendees"]]
    assert isinstance(out["attendees"][0]["tags"], tuple)
    assert out["attendees"][1]["cvv"] is None


def test_free_text_under_keys_that_say_nothing(redactor: Redactor) -> None:
    out = redactor.redact({"notes": f"paid with {PAN}, mail jane@example.com"})
    assert PAN_DIGITS not in out["notes"].replace(" ", "")
    assert "jane@example.com" not in out["notes"]


def test_free_text_detection_can_be_turned_off() -> None:
    out = Redactor(detect_text=False).redact({"notes": "mail jane@example.com"})
    assert out == {"notes": "mail jane@example.com"}


def test_integer_card_numbers_are_redacted(redactor: Redactor) -> None:
    assert redactor.redact({"pan": int(PAN_DIGITS)}) == {"pan": "************1111"}


# -- paths ---------------------------------------------------------------------------------
def test_path_patterns() -> None:
    r = Redactor(
        paths={
            "attendees[*].badge": Categories.NAME,
            "**.secret_note": Categories.COMMENTS,
            "$.organizer.*.handle": Categories.SOCIAL_ACCOUNT_ID,
        },
        detect_text=False,
    )
    data = {
        "attendees": [{"badge": "Jane D."}, {"badge": "Lukas S."}],
        "badge": "not matched at the top",
        "deep": {"a": [{"b": {"secret_note": "x"}}]},
        "organizer": {"twitter": {"handle": "@jane"}, "handle": "kept"},
    }
    out = r.redact(data)
    assert out["attendees"] == [{"badge": "[user.name]"}, {"badge": "[user.name]"}]
    assert out["badge"] == "not matched at the top"
    assert out["deep"]["a"][0]["b"]["secret_note"] == "[user.content.comments]"
    assert out["organizer"] == {"twitter": {"handle": "[user.social.account_id]"}, "handle": "kept"}


def test_bad_path_pattern_or_category_fails_at_construction() -> None:
    with pytest.raises(PolicyError):
        Redactor(paths={"a..b[": Categories.EMAIL})
    with pytest.raises(PolicyError):
        Redactor(paths={"a.b": "user.not_a_category"})


# -- annotations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attendee:
    id: str
    contact: Annotated[str, Personal(Categories.EMAIL)]
    badge: str = field(metadata={"privguard": Categories.NAME})
    bio: str = ""


@dataclass
class Registration:
    event: str
    attendees: list[Attendee]


def test_dataclass_annotations_and_metadata(redactor: Redactor) -> None:
    jane = Attendee("att-1", "jane@example.com", "Jane D.", bio=f"card {PAN}")
    reg = Registration("devcon", [jane])
    out = redactor.redact(reg)
    assert isinstance(out, Registration) and isinstance(out.attendees[0], Attendee)
    assert out.attendees[0].contact == "j***@example.com"
    assert out.attendees[0].badge == "[user.name]"
    assert PAN not in out.attendees[0].bio
    assert out.attendees[0].id == "att-1"
    assert reg.attendees[0] is jane and jane.contact == "jane@example.com"


class Contact(pydantic.BaseModel):
    id: str
    email: Annotated[str, Personal(Categories.EMAIL)]
    handle: Annotated[str, Personal(Categories.SOCIAL_ACCOUNT_ID)]
    company: str


def test_pydantic_models_without_a_pydantic_dependency(redactor: Redactor) -> None:
    c = Contact(id="c1", email="jane@example.com", handle="@jane", company="Initech")
    out = redactor.redact(c)
    assert isinstance(out, Contact)
    assert out.email == "j***@example.com"
    assert out.handle == "[user.social.account_id]"
    assert out.company == "Initech"
    assert c.email == "jane@example.com"


# -- audiences and protections -------------------------------------------------------------------
def test_card_stays_readable_only_for_a_payment_processor(redactor: Redactor) -> None:
    data = {"card_number": PAN, "expiry": "12/27", "cvv": "123", "email": "jane@example.com"}
    assert redactor.redact(data, audience="payment_processor") == {
        "card_number": PAN,
        "expiry": "12/27",
        "cvv": "123",
        "email": "j***@example.com",
    }
    for audience in (None, "exhibitor", "processor", "analytics_provider", "authority"):
        out = redactor.redact(data, audience=audience)
        assert out["card_number"] == "**** **** **** 1111", audience
        assert out["expiry"] != "12/27", audience
        assert out["cvv"] is None, audience


def test_configuration_can_tighten_a_protection_but_never_loosen_it() -> None:
    r = Redactor(operators={Categories.CARD: "keep", Categories.EMAIL: "keep"})
    out = r.redact({"card_number": PAN, "email": "jane@example.com"})
    assert out == {"card_number": "**** **** **** 1111", "email": "jane@example.com"}
    strict = Redactor(operators={Categories.CARD: "remove"})
    assert strict.redact({"card_number": PAN}) == {"card_number": None}


def test_per_audience_operators() -> None:
    r = Redactor(
        audiences={
            "organizer": {Categories.CONTACT: Operator.KEEP},
            "exhibitor": {Categories.EMAIL: Operator.LABEL},
        }
    )
    data = {"email": "jane@example.com"}
    assert r.redact(data, audience="organizer") == data
    assert r.redact(data, audience="exhibitor") == {"email": "[user.contact.email]"}
    assert r.redact(data) == {"email": "j***@example.com"}


def test_card_mask_keeps_at_most_first_six_and_last_four() -> None:
    r = Redactor(card_keep_first=6)
    assert r.redact({"pan": PAN_DIGITS}) == {"pan": "411111******1111"}
    with pytest.raises(PolicyError):
        Redactor(card_keep_first=7)


def test_keyed_operators_need_a_keyring() -> None:
    with pytest.raises(PolicyError):
        Redactor(operators={Categories.EMAIL: "pseudonymize"})


def test_unknown_operator_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        Redactor(operators={Categories.EMAIL: "scramble"})


# -- what cannot be redacted is not released -------------------------------------------------------
def test_unknown_objects_are_refused(redactor: Redactor) -> None:
    class Opaque:
        def __init__(self) -> None:
            self.email = "jane@example.com"

    with pytest.raises(RedactionError) as info:
        redactor.redact({"who": Opaque()})
    assert "jane" not in str(info.value)


def test_too_deep_nesting_is_refused(redactor: Redactor) -> None:
    data: object = "jane@example.com"
    for _ in range(5000):
        data = [data]
    with pytest.raises(RedactionError):
        redactor.redact(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"email": "jane@example.com"', "invalid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
)
def test_unparseable_json_is_refused_without_echo(
    redactor: Redactor, body: bytes, reason: str
) -> None:
    with pytest.raises(UnparseableBody) as info:
        redactor.redact_json(body)
    assert "jane" not in str(info.value)
    assert reason.lower().split()[0] in str(info.value).lower() or isinstance(
        info.value, UnparseableBody
    )


def test_redact_json_round_trip(redactor: Redactor) -> None:
    body = json.dumps({"attendees": [{"email": "jane@example.com", "card_number": PAN}]})
    out = json.loads(redactor.redact_json(body.encode()))
    assert out == {
        "attendees": [{"email": "j***@example.com", "card_number": "**** **** **** 1111"}]
    }


def test_dataclass_that_needs_no_change_is_returned_as_is(redactor: Redactor) -> None:
    @dataclass
    class Event:
        name: str
        seats: int

    e = Event("devcon", 10)
    assert redactor.redact(e) is e
    assert dataclasses.asdict(redactor.redact(e)) == {"name": "devcon", "seats": 10}


# -- keyed operators ------------------------------------------------------------------------------
from privguard import (  # noqa: E402
    CryptoError,
    EncryptionContext,
    FieldCipher,
    Key,
    Keyring,
    RedactionContext,
    Tokenizer,
)


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring([Key.generate("k1")], primary="k1")


def test_pseudonymize_is_stable_per_tenant_and_keyed(keyring: Keyring) -> None:
    r = Redactor(operators={Categories.EMAIL: "pseudonymize"}, keyring=keyring)
    a = r.redact({"email": "jane@example.com"}, context=RedactionContext(tenant="acme"))
    b = r.redact({"email": "jane@example.com"}, context=RedactionContext(tenant="acme"))
    c = r.redact({"email": "jane@example.com"}, context=RedactionContext(tenant="globex"))
    assert a == b
    assert a != c
    assert "jane" not in a["email"]
    other = Redactor(
        operators={Categories.EMAIL: "pseudonymize"},
        keyring=Keyring([Key.generate("k1")], primary="k1"),
    )
    assert other.redact({"email": "jane@example.com"}, context=RedactionContext("acme")) != a


def test_encrypt_binds_tenant_table_field_and_record(keyring: Keyring) -> None:
    r = Redactor(operators={Categories.PHONE: "encrypt"}, keyring=keyring)
    ctx = RedactionContext(tenant="acme", table="attendees")
    out = r.redact({"id": "att-1", "phone": "+1 415 555 0132"}, context=ctx)
    assert out["phone"].startswith("pg1.")
    cipher = FieldCipher(keyring)
    right = EncryptionContext(tenant="acme", table="attendees", field="phone", record_id="att-1")
    assert cipher.decrypt(out["phone"], context=right) == "+1 415 555 0132"
    wrong = EncryptionContext(tenant="acme", table="attendees", field="phone", record_id="att-2")
    with pytest.raises(CryptoError):
        cipher.decrypt(out["phone"], context=wrong)
    # An already encrypted value is left as it is, never encrypted twice.
    assert r.redact(out, context=ctx) == out


def test_encrypt_without_record_ids_fails_closed(keyring: Keyring) -> None:
    r = Redactor(operators={Categories.PHONE: "encrypt"}, keyring=keyring)
    with pytest.raises(CryptoError) as info:
        r.redact({"phone": "+1 415 555 0132"})
    assert "415" not in str(info.value)


def test_tokenize_is_deterministic_for_lookups(keyring: Keyring) -> None:
    r = Redactor(operators={Categories.EMAIL: "tokenize"}, keyring=keyring)
    ctx = RedactionContext(tenant="acme", purpose="essential.service")
    one = r.redact([{"email": "jane@example.com"}, {"email": "jane@example.com"}], context=ctx)
    assert one[0] == one[1]
    back = Tokenizer(keyring).detokenize(
        one[0]["email"], tenant="acme", field="email", purpose="essential.service"
    )
    assert back == "jane@example.com"


# -- generated functions per key set -------------------------------------------------------------
def test_a_key_set_seen_again_gets_a_generated_function_with_the_same_result() -> None:
    r = Redactor()
    row = {"id": "att-1", "email": "jane@example.com", "card": "4111 1111 1111 1111", "n": 3}
    first = r.redact(row)
    for _ in range(3):
        assert r.redact(row) == first
    (shape,) = r._shapes[None].values()
    assert shape.compiled is not None
    assert first == {
        "id": "att-1",
        "email": "j***@example.com",
        "card": "**** **** **** 1111",
        "n": 3,
    }


def test_keys_never_become_code() -> None:
    # Keys reach the generated function as bound names, never as source text.
    hostile = {
        "'}; import os; os._exit(1); {'": "jane@example.com",
        "\n    raise SystemExit\n": "x",
        "email": "jane@example.com",
        7: "4111 1111 1111 1111",
        None: "plain",
    }
    r = Redactor()
    results = [r.redact(hostile) for _ in range(4)]
    assert all(res == results[0] for res in results)
    assert list(results[0]) == list(hostile)
    assert results[0]["email"] == "j***@example.com"
    assert "4111 1111 1111 1111" not in str(results[0])


def test_wide_dicts_and_many_key_sets_still_redact() -> None:
    r = Redactor()
    wide = {f"k{i}": i for i in range(100)} | {"email": "jane@example.com"}
    for _ in range(4):
        assert r.redact(wide)["email"] == "j***@example.com"
    # Past the limit of generated functions, key sets take the loop, with the same result.
    for i in range(300):
        for _ in range(3):
            assert r.redact({f"f{i}": 1, "email": "jane@example.com"}) == {
                f"f{i}": 1,
                "email": "j***@example.com",
            }
    assert len(r._compiled[None]) == 256
    # A dict keyed by ids has a new key set each time: redacted by the loop, no function.
    for i in range(50):
        assert r.redact({f"att-{i}": {"email": "a@example.com"}}) == {
            f"att-{i}": {"email": "a***@example.com"}
        }


def test_generated_functions_bind_each_record_id_for_encryption(keyring: Keyring) -> None:
    r = Redactor(operators={Categories.PHONE: "encrypt"}, keyring=keyring)
    ctx = RedactionContext(tenant="acme", table="attendees")
    rows = [{"id": f"att-{i}", "phone": f"+1 415 555 01{i:02d}"} for i in range(6)]
    out = r.redact(rows, context=ctx)
    assert r._shapes[None][("id", "phone")].compiled is not None
    cipher = FieldCipher(keyring)
    for i, row in enumerate(out):
        right = EncryptionContext("acme", "attendees", "phone", f"att-{i}")
        assert cipher.decrypt(row["phone"], context=right) == rows[i]["phone"]


def test_mask_layouts_with_letters_are_never_remembered() -> None:
    from privguard import _operators

    masker = _operators.masker(0, 2, 6)
    assert masker("call Jane on 0151 2345 6789") == "call Jane on **** **** **89"
    assert masker("+49 151 2345 6789") == "+** *** **** **89"
    cell = masker.__closure__  # the layouts dict is the closure's only dict
    layouts = next(c.cell_contents for c in cell if isinstance(c.cell_contents, dict))
    assert list(layouts) == ["+** *** **** ****"]


def test_str_subclass_keys_are_categorised_by_their_text_and_never_poison_plain_keys() -> None:
    import enum

    class Field(enum.StrEnum):
        FIRST = "first_name"
        CVV = "cvv"

    r = Redactor()
    expected = {"first_name": "[user.name]", "cvv": None}
    for _ in range(4):
        assert r.redact({Field.FIRST: "Jane", Field.CVV: "123"}) == expected
        assert r.redact({"first_name": "Jane", "cvv": "123"}) == expected


def test_equal_keys_of_other_types_keep_their_own_type() -> None:
    r = Redactor()
    for _ in range(4):
        r.redact({1: "a", "n": 0})
    assert list(r.redact({True: "a", "n": 0})) == [True, "n"]
    assert type(next(iter(r.redact({True: "a", "n": 0})))) is bool


def test_none_under_a_personal_key_at_the_depth_limit_is_kept() -> None:
    r = Redactor(max_depth=1)
    for _ in range(5):
        assert r.redact([{"iban": "x", "fax": None}]) == [{"iban": "********", "fax": None}]


def test_mask_phone_keeps_what_it_is_asked_to_keep() -> None:
    from privguard._operators import mask_phone

    assert mask_phone("+1 415 555 0132", keep_last=8) == "+* **5 555 0132"
    assert mask_phone("123456", keep_last=6) == "******"


def test_identifiers_and_timestamps_come_back_as_they_were_and_cheaply() -> None:
    from privguard._detection import TextScanner

    class CountingScanner(TextScanner):
        scanned: list[str]

        def _candidates(self, text: str, floor: int, *, first_only: bool = False) -> list[Any]:
            self.scanned.append(text)
            return super()._candidates(text, floor, first_only=first_only)

    scanner = CountingScanner()
    scanner.scanned = []
    redactor = Redactor(scanner=scanner)
    record = {
        "id": "3f2b8c1e-9d4a-4e6b-8a7c-1d2e3f4a5b6c",
        "starts_at": "2026-11-26T10:00:00Z",
        "updated": "2026-11-26 10:00:00.250",
        "etag": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        "note": "paid with 4111 1111 1111 1111 on 2026-11-26",
    }
    out = [redactor.redact(record) for _ in range(4)]  # the 3rd and 4th: generated code
    for got in out:
        assert {k: got[k] for k in ("id", "starts_at", "updated", "etag")} == {
            k: record[k] for k in ("id", "starts_at", "updated", "etag")
        }
        assert "4111 1111 1111 1111" not in got["note"] and "1111" in got["note"]
    assert scanner.scanned == [record["note"]] * 4  # only the free text met the detectors


def test_a_key_that_held_identifiers_is_still_scanned_when_it_holds_personal_data() -> None:
    # The function generated for this key set checks "id" for an identifier first,
    # because the record it was made from had one there; other values still get scanned.
    redactor = Redactor()
    rows = [{"id": f"3f2b8c1e-9d4a-4e6b-8a7c-1d2e3f4a5b{i:02d}", "note": "hi"} for i in range(3)]
    rows += [
        {"id": "paid with 4111 1111 1111 1111", "note": "hi"},
        {"id": "jane.doe@example.com", "note": "2026-11-26T10:00:00Z"},
    ]
    out = redactor.redact({"rows": rows})["rows"]
    assert redactor._compiled[None]  # the last two went through the generated function
    assert [r["id"] for r in out[:3]] == [r["id"] for r in rows[:3]]
    assert out[3]["id"] == "paid with **** **** **** 1111"
    assert out[4] == {"id": "j***@example.com", "note": "2026-11-26T10:00:00Z"}
