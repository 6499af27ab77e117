"""Structured redaction: dicts and lists (JSON), dataclasses, Pydantic models, free text.

Fields map to categories by, in order of precedence:

1. annotations on the host's own types (``Annotated[str, Personal("user.contact.email")]``,
   or dataclass field metadata ``{"privguard": "user.contact.email"}``);
2. path patterns (``attendees[*].email``, ``**.card_number``);
3. a default list of key names (``email``, ``phone``, ``card_number``, ``pan``, ``cvv``,
   ``iban``, ...), matched case- and separator-insensitively, also as a suffix
   (``billingEmail``);
4. the free-text detectors on strings under keys that say nothing (``notes``), and on
   ints of 13 to 16 digits there (a card number sent as a JSON number).

Everything below a categorised key has that category. The input is never mutated; the
result has the same shape (``remove`` leaves ``None`` in place of the value). The
per-key and per-type plans are computed once and cached.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import decimal
import enum
import functools
import json
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._detection import _IDENTIFIER, _IDENTIFIER_MAX, _UNICODE_SEPARATORS, is_identifier
from ._errors import PolicyError, RedactionError, UnparseableBody
from ._operators import (
    card_masker,
    label,
    mask_card,
    mask_email,
    mask_generic,
    mask_phone,
    phone_masker,
)
from ._policy import Operator, Policy, Protection
from ._taxonomy import Categories as C
from ._taxonomy import RecipientKind, Taxonomy, covers

if TYPE_CHECKING:
    from ._crypto import Keyring
    from ._detection import Finding, TextScanner

__all__ = [
    "DEFAULT_KEY_NAMES",
    "DEFAULT_OPERATORS",
    "Personal",
    "RedactionContext",
    "Redactor",
    "normalize_key",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Personal:
    """Marks a field of the host's own type as personal data of ``category``.

    >>> @dataclass
    ... class Attendee:
    ...     email: Annotated[str, Personal("user.contact.email")]
    """

    category: str
    operator: Operator | None = None


@dataclass(frozen=True, slots=True)
class RedactionContext:
    """Opaque ids that bind keyed operators (encrypt, tokenize, pseudonymize)."""

    tenant: str = ""
    table: str = ""
    record_id: str = ""
    purpose: str = ""


# Everything but letters and digits: separators, and marks such as "#" ("phone#").
_SEPARATORS: Final = re.compile(r"[\W_]+")


def normalize_key(key: str) -> str:
    """``Card-Number`` / ``card_number`` / ``cardNumber`` / ``Phone #`` become
    ``cardnumber`` and ``phone``: lower case, letters and digits only."""
    return _SEPARATORS.sub("", key).lower()


# Exact key names (normalised). In the spirit of sentry-python's denylist, but wider.
DEFAULT_KEY_NAMES: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        [
            "email",
            "emailaddress",
            "mail",
            "email1",
            "email2",
            "workemail",
            "emailaddr",
            "emailid",
            "mailaddress",
            "mailaddr",
            "emails",
            "emailaddresses",
        ],
        C.EMAIL,
    ),
    **dict.fromkeys(
        [
            "phone",
            "phonenumber",
            "telephone",
            "tel",
            "mobile",
            "mobilephone",
            "cell",
            "cellphone",
            "msisdn",
            "whatsapp",
            "phoneno",
            "phonenum",
            "phonenr",
            "phones",
            "phonenumbers",
            "telefon",
            "telefonnummer",
            "telno",
            "telnr",
            "telnumber",
            "mobileno",
            "mobilenumber",
            "mobilenum",
            "cellnumber",
            "cellno",
            "contactnumber",
            "landline",
        ],
        C.PHONE,
    ),
    **dict.fromkeys(["fax", "faxnumber", "faxno"], C.FAX),
    **dict.fromkeys(
        [
            "cardnumber",
            "ccnumber",
            "creditcard",
            "creditcardnumber",
            "debitcard",
            "pan",
            "cardno",
            "ccnum",
            "card",
            "primaryaccountnumber",
            "cardnum",
            "pannumber",
            "cardpan",
            "ccno",
            "creditcardno",
            "creditcardnum",
        ],
        C.CARD,
    ),
    # Card verification values and the card's PIN (sensitive authentication data).
    **dict.fromkeys(
        [
            "cvv",
            "cvv2",
            "cvc",
            "cvc2",
            "cid",
            "securitycode",
            "cardsecuritycode",
            "csc",
            "cvvcode",
            "cvccode",
            "cvn",
            "cvn2",
            "cvd",
            "cav2",
            "cardcode",
            "cardverificationvalue",
            "cardverificationcode",
            "cardverificationnumber",
            "cardpin",
            "pinblock",
        ],
        C.CARD_SECURITY_CODE,
    ),
    **dict.fromkeys(
        [
            "expiry",
            "expirydate",
            "expiration",
            "expirationdate",
            "exp",
            "expdate",
            "cardexpiry",
            "cardexpiration",
            "expmonth",
            "expyear",
            "validthru",
            "validthrough",
            "expirymonth",
            "expiryyear",
            "expirationmonth",
            "expirationyear",
            "cardexp",
            "ccexp",
            "ccexpiry",
            "cardexpirydate",
            "cardexpirationdate",
        ],
        C.CARD_EXPIRY,
    ),
    "iban": C.IBAN,
    **dict.fromkeys(
        ["bankaccount", "accountnumber", "bic", "swift", "routingnumber"], C.BANK_ACCOUNT
    ),
    "billingaddress": C.BILLING_ADDRESS,
    **dict.fromkeys(["ip", "ipaddress", "remoteaddr", "clientip", "xforwardedfor"], C.IP_ADDRESS),
    **dict.fromkeys(
        [
            "firstname",
            "givenname",
            "lastname",
            "surname",
            "familyname",
            "fullname",
            "middlename",
            "displayname",
            "attendeename",
            "contactname",
        ],
        C.NAME,
    ),
    **dict.fromkeys(
        [
            "address",
            "address1",
            "address2",
            "addressline1",
            "addressline2",
            "postaladdress",
            "homeaddress",
        ],
        C.ADDRESS,
    ),
    **dict.fromkeys(["street", "streetaddress"], C.STREET),
    **dict.fromkeys(["city", "town"], C.CITY),
    **dict.fromkeys(["zip", "zipcode", "postcode", "postalcode"], C.POSTAL_CODE),
    **dict.fromkeys(["dob", "dateofbirth", "birthdate", "birthday"], C.DATE_OF_BIRTH),
    **dict.fromkeys(
        [
            "password",
            "passwd",
            "pwd",
            "secret",
            "apikey",
            "accesstoken",
            "refreshtoken",
            "authorization",
            "sessionid",
            "cookie",
            # After sentry-python's DEFAULT_DENYLIST, and PINs that are no card's.
            "passwordhash",
            "pwhash",
            "passhash",
            "passphrase",
            "passcode",
            "pin",
            "pinnumber",
            "otp",
            "privatekey",
            "clientsecret",
            "secretkey",
            "apisecret",
            "xapikey",
            "token",
            "authtoken",
            "idtoken",
            "auth",
            "credentials",
            "setcookie",
            "csrf",
            "csrftoken",
            "xcsrftoken",
            "xsrftoken",
            "jsessionid",
            "phpsessid",
        ],
        C.CREDENTIALS,
    ),
    "ssn": C.USER_ID,
    "socialsecuritynumber": C.USER_ID,
    "passportnumber": C.USER_ID,
}

# A key that ends in one of these is that category (``billingEmail``, ``contact_phone``).
_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("emailaddress", C.EMAIL),
    ("email", C.EMAIL),
    ("phonenumber", C.PHONE),
    ("phone", C.PHONE),
    ("mobile", C.PHONE),
    ("cardnumber", C.CARD),
    ("ccnumber", C.CARD),
    ("iban", C.IBAN),
    ("cvv", C.CARD_SECURITY_CODE),
    ("cvc", C.CARD_SECURITY_CODE),
    ("ipaddress", C.IP_ADDRESS),
    ("password", C.CREDENTIALS),
    ("firstname", C.NAME),
    ("lastname", C.NAME),
    ("fullname", C.NAME),
)

#: What happens to each category when nothing more specific is configured.
DEFAULT_OPERATORS: Final[Mapping[str, Operator]] = {
    "user": Operator.LABEL,
    C.EMAIL: Operator.MASK,
    C.PHONE: Operator.MASK,
    C.CARD: Operator.MASK,
    C.CARD_SECURITY_CODE: Operator.REMOVE,
    C.IBAN: Operator.MASK,
    C.CREDENTIALS: Operator.REMOVE,
}

_STRICTNESS: Final = {
    Operator.KEEP: 0,
    Operator.TOKENIZE: 1,
    Operator.ENCRYPT: 1,
    Operator.PSEUDONYMIZE: 2,
    Operator.MASK: 3,
    Operator.LABEL: 4,
    Operator.REMOVE: 5,
}

_SAFE_SCALARS: Final = (
    int,
    float,
    bool,
    type(None),
    decimal.Decimal,
    _dt.date,
    _dt.datetime,
    _dt.time,
    _dt.timedelta,
    uuid.UUID,
)

MAX_DEPTH: Final = 200
#: The reason an :class:`UnparseableBody` gives for JSON nested beyond what can be read.
JSON_TOO_DEEP: Final = "JSON nested too deeply"
# A card number sent as a JSON number has 13 to 16 digits (19-digit cards are printed,
# not stored as numbers): an int with fewer passes after one comparison, and only one in
# between is scanned (as its digits, with the free-text detectors). Longer ints are ids:
# a random 64-bit id (a span id, a snowflake, a bigint key) has 17 to 20 digits, and one
# in twenty of those would pass for a 19-digit card number. A negative int is not taken
# for one, nor an int under a key that names an id (``id``, ``span_id``, ``orderId``).
_INT_SCAN_MIN: Final = 10**12
_INT_SCAN_MAX: Final = 10**16
_ID_KEY: Final = re.compile(r"(?:(?:^|[\W_])(?i:ids?)|(?<=[a-z0-9])(?:Ids?|IDs?))\Z")


# -- path patterns --------------------------------------------------------------------------
_SEGMENT: Final = re.compile(r"\[\*\]|\[(\d+)\]|\*\*|\*|[^.\[\]]+")


def _compile_pattern(pattern: str) -> tuple[str, ...]:
    """``attendees[*].email`` → ``("attendees", "[]", "email")``; ``**`` any depth."""
    text = pattern.removeprefix("$.").removeprefix("$")
    segments: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        m = _SEGMENT.match(text, pos)
        if m is None:
            raise PolicyError(f"invalid path pattern {pattern!r}")
        token = m.group(0)
        segments.append("[]" if token.startswith("[") else token)
        pos = m.end()
    if not segments:
        raise PolicyError(f"empty path pattern {pattern!r}")
    return tuple(segments)


class _PathAutomaton:
    """Matches paths against many patterns at once; transitions cached by (state, step)."""

    __slots__ = ("_cache", "categories", "patterns")

    def __init__(self, patterns: Mapping[str, str]) -> None:
        self.patterns = [(_compile_pattern(p), c) for p, c in patterns.items()]
        self.categories: dict[frozenset[tuple[int, int]], str | None] = {}
        self._cache: dict[tuple[frozenset[tuple[int, int]], str], frozenset[tuple[int, int]]] = {}

    def start(self) -> frozenset[tuple[int, int]]:
        return self._close(frozenset((i, 0) for i in range(len(self.patterns))))

    def _close(self, positions: frozenset[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        out = set(positions)
        for i, j in positions:
            segs = self.patterns[i][0]
            while j < len(segs) and segs[j] == "**":
                j += 1
                out.add((i, j))
        return frozenset(out)

    def step(
        self, state: frozenset[tuple[int, int]], key: str, *, remember: bool = True
    ) -> frozenset[tuple[int, int]]:
        """``key`` is a dict key, or ``"[]"`` for a list element. ``remember=False`` for a
        key that may hold personal data: the transition is not cached under it."""
        cache_key = (state, key)
        nxt = self._cache.get(cache_key)
        if nxt is None:
            out: set[tuple[int, int]] = set()
            for i, j in state:
                segs = self.patterns[i][0]
                if j >= len(segs):
                    continue
                seg = segs[j]
                if seg == "**":
                    out.add((i, j))  # ** consumes this step and stays
                    if (j + 1 < len(segs) and segs[j + 1] in (key, "*")) or (
                        j + 1 < len(segs) and segs[j + 1] == "[]" and key == "[]"
                    ):
                        out.add((i, j + 2))
                elif seg == key or (seg == "*" and key != "[]"):
                    out.add((i, j + 1))
            nxt = self._close(frozenset(out))
            if remember and len(key) <= _CACHED_KEY_MAX and len(self._cache) < 65536:
                self._cache[cache_key] = nxt
        return nxt

    def category(self, state: frozenset[tuple[int, int]]) -> str | None:
        if state in self.categories:
            return self.categories[state]
        found = None
        for i, j in state:
            segs, cat = self.patterns[i]
            if j == len(segs):
                found = cat
                break
        self.categories[state] = found
        return found


_EMPTY_STATE: Final[frozenset[tuple[int, int]]] = frozenset()

# Every detector needs one of these: an at-sign (e-mail: "@", the fullwidth "＠" or the
# small "﹫"), a stretch of seven digits and separators (card, phone) or two letters and
# two digits (IBAN). Most strings in a JSON document have none, and one C-level search
# rules them out before the scanner runs. The pattern starts with a character class so
# that the regex engine skips, in C, to the first at-sign or digit; a string with
# neither (most of them) costs one short scan.
_NOTHING_TO_FIND: Final = re.compile(
    r"[@\uff20\ufe6b\d](?:(?<=[@\uff20\ufe6b])|[\d \-./()"
    + re.escape(_UNICODE_SEPARATORS)  # "4111\u202f1111…": separators in any script
    + r"]{5,}\d|\d(?<=[A-Za-z]{2}\d\d))"
).search
# A list of these is copied as it is, in C: with the detectors on, only if its largest
# int has fewer than 13 digits (None cannot be compared, so such a list takes the walk);
# with them off, any.
_NUMBER_ITEMS: Final = frozenset({int, float, bool})
_PLAIN_ITEMS: Final = frozenset({int, float, bool, type(None)})


def _int_text(value: int) -> str:
    """``str(value)``, or :class:`RedactionError` for an int longer than Python will
    write (``sys.get_int_max_str_digits``), which no card or phone number is."""
    try:
        return str(value)
    except ValueError:
        raise RedactionError("an integer too long to write as text cannot be redacted") from None


class _Constant:
    """A one-argument operator that always gives the same text (a label)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, value: str) -> str:
        return self.text


_ShapeFunction = Callable[[dict[Any, Any], "RedactionContext | None", int], dict[Any, Any]]


class _Shape:
    """What one key set (in order) means for one audience, and its generated function.

    ``personal`` holds the positions of keys that may hold personal data (an e-mail
    address as a key): such a shape is redacted key by key and never kept.
    """

    __slots__ = ("compiled", "personal", "plan", "seen")

    def __init__(
        self,
        plan: tuple[tuple[str | None, Callable[[str], str | None] | None], ...],
        personal: tuple[int, ...] = (),
    ) -> None:
        self.plan = plan
        self.personal = personal
        self.seen = 1
        self.compiled: _ShapeFunction | None = None


def _unique_keys(keys: list[object], renamed: dict[int, str]) -> list[object]:
    """``keys`` with ``renamed`` put in at their positions; a new name already taken (by a
    key left as it was, or an earlier new name) gets ``#2``, ``#3``, ... so no entry is
    lost.

    Linear in the number of keys: each new name remembers the next number to try (names
    are only ever added to ``taken``, so no smaller number can have come free), and a
    try fails only on a taken name, and each taken name fails at most two tries (as a
    bare name, and as the ``name#n`` of one name and number).
    Counting up from 1 again for every key made a dict keyed by e-mail addresses that
    all mask alike quadratic (8,000 keys: 4 s, on the event loop).
    """
    taken = {k for i, k in enumerate(keys) if i not in renamed}
    out = list(keys)
    next_number: dict[str, int] = {}
    for i, name in renamed.items():
        n = next_number.get(name, 1)
        candidate = name if n == 1 else f"{name}#{n}"
        while candidate in taken:
            n += 1
            candidate = f"{name}#{n}"
        next_number[name] = n + 1
        taken.add(candidate)
        out[i] = candidate
    return out


# A key set gets its own function the third time it is seen: a dict keyed by ids (a new
# key set each time) never pays for generating one. Each Redactor keeps at most
# _SHAPE_LIMIT key sets and _COMPILED_LIMIT functions per audience (a few KB each); a
# dict with more keys than _SHAPE_MAX_KEYS is walked by the general loop.
_COMPILE_AFTER: Final = 2
_SHAPE_LIMIT: Final = 2048
_COMPILED_LIMIT: Final = 256
_SHAPE_MAX_KEYS: Final = 64
# Caches of keys (categories, path steps, shapes) hold keys of at most this length: the
# memory they pin across requests stays bounded whatever keys responses carry.
_CACHED_KEY_MAX: Final = 128


def _generate_shape(
    keys: tuple[object, ...],
    plan: tuple[tuple[str | None, Callable[[str], str | None] | None], ...],
    ops: list[Operator | None],
    *,
    identifiers: frozenset[object] = frozenset(),
    audience: RecipientKind | None,
    walk: Callable[..., object],
    text: Callable[[str, RecipientKind | None, RedactionContext | None], str] | None,
    apply_op: Callable[..., str | None],
    max_depth: int,
) -> _ShapeFunction:
    """A function that redacts a dict with exactly ``keys``, in that order.

    It unpacks the values and builds the result in one dict display, doing per key only
    what that key needs: a string under a masked key goes straight to its mask, a label
    is a constant, a string under a key that says nothing meets the one-search
    prefilter (under a key in ``identifiers``, one that held a UUID or a timestamp when
    the function was made, the identifier check first), ``None``, floats and ints of
    fewer than 13 digits are kept,
    and anything else (a nested dict, a list, an unexpected type) goes to the general
    walk, so the result is the walk's result for any values. Keys, categories and
    operators reach the generated code as names bound in its globals, never as source
    text: no key of the data decides what code runs.
    """
    env: dict[str, object] = {
        "_walk": walk,
        "_text": text,
        "_nothing": _NOTHING_TO_FIND,
        "_E": _EMPTY_STATE,
        "_aud": audience,
        "_apply": apply_op,
        "_plain_items": _PLAIN_ITEMS.issuperset,
        "_number_items": _NUMBER_ITEMS.issuperset,
        "_max": max_depth,
        "_B": _INT_SCAN_MIN,
        "_top": max,
        "_ident": _IDENTIFIER,
        "_ident_max": _IDENTIFIER_MAX,
    }
    items = []
    for i, (key, (cat, fn), op) in enumerate(zip(keys, plan, ops, strict=True)):
        v = f"v{i}"
        env[f"_k{i}"] = key
        env[f"_s{i}"] = key if type(key) is str else str(key)
        env[f"_c{i}"] = cat
        general = f"_walk({v}, _E, _c{i}, _aud, ctx, depth + 1, _s{i})"
        if cat is None:
            if text is None:
                on_str = v
            elif key in identifiers:
                on_str = (
                    f"({v} if (len({v}) <= _ident_max and _ident({v}) is not None) "
                    f"or _nothing({v}) is None else _text({v}, _aud, ctx))"
                )
            else:
                on_str = f"({v} if _nothing({v}) is None else _text({v}, _aud, ctx))"
            if text is None:  # no detectors: every number is kept
                expr = (
                    f"{on_str} if (t := type({v})) is str else {v} if {v} is None or t is int "
                    f"or t is bool or t is float else ({v}.copy() if depth < _max and "
                    f"_plain_items(map(type, {v})) else {general}) "
                    f"if t is list else {general}"
                )
            else:
                # An int of fewer than 13 digits costs one comparison (in a list of
                # numbers, inside max); one that could be a card number goes to the walk.
                expr = (
                    f"{on_str} if (t := type({v})) is str else {v} if {v} is None or "
                    f"(t is int and {v} < _B) or t is bool or t is float else ({v}.copy() "
                    f"if depth < _max and _number_items(map(type, {v})) and "
                    f"(not {v} or _top({v}) < _B) else {general}) "
                    f"if t is list else {general}"
                )
        else:
            if fn is None:  # a keyed operator: needs the context and the field
                env[f"_o{i}"] = op
                on_str = f"_apply(_o{i}, _c{i}, {v}, ctx, _s{i})"
            elif fn is _identity:
                on_str = v
            elif fn is _none:
                on_str = "None"
            elif isinstance(fn, _Constant):
                env[f"_f{i}"] = fn.text
                on_str = f"_f{i}"
            else:
                env[f"_f{i}"] = fn
                on_str = f"_f{i}({v})"
            expr = f"{on_str} if type({v}) is str else None if {v} is None else {general}"
        items.append(f"_k{i}: ({expr})")
    unpack = (
        f"    {', '.join(f'v{i}' for i in range(len(keys)))}, = value.values()\n" if keys else ""
    )
    source = "def shape(value, ctx, depth):\n" + unpack + "    return {" + ", ".join(items) + "}\n"
    exec(compile(source, "<privguard.redaction shape>", "exec"), env)  # noqa: S102
    return typing.cast(_ShapeFunction, env["shape"])


def _no_shape(keys: tuple[object, ...]) -> None:
    return None


def _identity(value: str) -> str | None:
    return value


def _none(value: str) -> str | None:
    return None


def _keyed_marker(value: str) -> str | None:  # pragma: no cover - never called
    raise AssertionError("keyed operators go through _apply_op")


_KEYED: Final = _keyed_marker


# -- the redactor -----------------------------------------------------------------------------
class Redactor:
    """Redacts data for an audience (a recipient kind, or ``None`` for any client).

    The same record redacts differently per audience: with the default policy a card
    number stays readable only for a ``payment_processor`` (C03, C10).

    >>> redactor = Redactor(Policy.default(), paths={"attendees[*].badge": "user.name"})
    >>> redactor.redact({"email": "jane@example.com"})
    {'email': 'j***@example.com'}
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        paths: Mapping[str, str] | None = None,
        key_names: Mapping[str, str] | None = None,
        extra_key_names: Mapping[str, str] | None = None,
        detect_text: bool = True,
        scanner: TextScanner | None = None,
        operators: Mapping[str, Operator | str] | None = None,
        audiences: Mapping[RecipientKind | str | None, Mapping[str, Operator | str]] | None = None,
        card_keep_first: int = 0,
        keyring: Keyring | None = None,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        if policy is None:
            policy = Policy.default()
        self.policy = policy
        self.taxonomy: Taxonomy = policy.taxonomy
        self.protections: tuple[Protection, ...] = policy.protections
        names = dict(DEFAULT_KEY_NAMES if key_names is None else key_names)
        names.update(extra_key_names or {})
        self._key_names = {normalize_key(k): self.taxonomy.category(c) for k, c in names.items()}
        self._suffixes = tuple(
            (s, c) for s, c in _SUFFIXES if key_names is None and c in self.taxonomy.categories
        )
        self._paths = _PathAutomaton(
            {p: self.taxonomy.category(c) for p, c in (paths or {}).items()}
        )
        self._has_paths = bool(paths)
        self._operators = self._check_ops(operators or {})
        self._audiences = {
            (None if a is None else self.taxonomy.recipient_kind(a)): self._check_ops(ops)
            for a, ops in (audiences or {}).items()
        }
        if not 0 <= card_keep_first <= 6:
            raise PolicyError("card_keep_first must be 0..6 (PCI DSS 3.4.1: at most BIN + last 4)")
        self._card_keep_first = card_keep_first
        self._detect = detect_text
        if scanner is None and detect_text:
            from ._detection import DEFAULT_SCANNER

            scanner = DEFAULT_SCANNER
        self._scanner = scanner
        self._max_depth = max_depth
        self._keyring = keyring
        self._keyed: _KeyedOps | None = None
        needs_keys = {Operator.ENCRYPT, Operator.TOKENIZE, Operator.PSEUDONYMIZE}
        configured = set(self._operators.values()).union(
            *(ops.values() for ops in self._audiences.values())
        )
        if configured & needs_keys and keyring is None:
            raise PolicyError("encrypt, tokenize and pseudonymize need a keyring")
        self._key_cat: dict[str, str | None] = {}
        self._op_cache: dict[tuple[str, RecipientKind | None], Operator] = {}
        self._type_plans: dict[type, tuple[tuple[str, str | None], ...]] = {}
        self._shapes: dict[RecipientKind | None, dict[tuple[object, ...], _Shape]] = {}
        # The generated functions by audience and key set, for lists of records.
        self._compiled: collections.defaultdict[
            RecipientKind | None, dict[tuple[object, ...], _ShapeFunction]
        ] = collections.defaultdict(dict)

    def _check_ops(self, ops: Mapping[str, Operator | str]) -> dict[str, Operator]:
        out: dict[str, Operator] = {}
        for category, op in ops.items():
            try:
                out[self.taxonomy.category(category)] = Operator(op)
            except ValueError:
                raise PolicyError(f"unknown operator {op!r} for {category!r}") from None
        return out

    # -- what happens to a category -----------------------------------------------------
    def operator_for(self, category: str, audience: RecipientKind | None = None) -> Operator:
        cache_key = (category, audience)
        op = self._op_cache.get(cache_key)
        if op is None:
            op = self._resolve(category, audience)
            self._op_cache[cache_key] = op
        return op

    def _configured(self, category: str, audience: RecipientKind | None) -> Operator | None:
        ancestors = self.taxonomy.ancestors(category)
        for table in (self._audiences.get(audience), self._operators):
            if table:
                for a in ancestors:
                    if a in table:
                        return table[a]
        return None

    def _resolve(self, category: str, audience: RecipientKind | None) -> Operator:
        configured = self._configured(category, audience)
        default = next(
            (
                DEFAULT_OPERATORS[a]
                for a in self.taxonomy.ancestors(category)
                if a in DEFAULT_OPERATORS
            ),
            Operator.LABEL,
        )
        protection = self._protection_for(category)
        if protection is not None:
            if audience in protection.readable_by:
                return configured if configured is not None else Operator.KEEP
            # A protection can be tightened by configuration, never loosened.
            if configured is not None and configured is not Operator.KEEP:
                return configured
            return protection.operator
        return configured if configured is not None else default

    def _protection_for(self, category: str) -> Protection | None:
        """The most specific protection over ``category``; for a parent category (a
        field labelled ``user.financial``), the strictest protection below it."""
        above = [p for p in self.protections if covers(p.category, category)]
        if above:
            return max(above, key=lambda p: p.category.count("."))
        below = [p for p in self.protections if covers(category, p.category)]
        if below:
            return max(below, key=lambda p: _STRICTNESS[p.operator])
        return None

    # -- applying operators -----------------------------------------------------------------
    def apply(
        self,
        category: str,
        value: str,
        *,
        audience: RecipientKind | None = None,
        context: RedactionContext | None = None,
        field: str = "",
    ) -> str | None:
        """Apply the operator for ``category`` and ``audience`` to one value."""
        op = self.operator_for(category, audience)
        return self._apply_op(op, category, value, context, field)

    def _apply_op(
        self,
        op: Operator,
        category: str,
        value: str,
        context: RedactionContext | None,
        field: str,
    ) -> str | None:
        if op is Operator.KEEP:
            return value
        if op is Operator.MASK:
            if category == C.CARD:
                return mask_card(value, keep_first=self._card_keep_first)
            if category == C.EMAIL:
                return mask_email(value)
            if covers(C.PHONE, category) or covers(C.FAX, category):
                return mask_phone(value)
            if covers(C.BANK_ACCOUNT, category):
                return mask_card(value, keep_last=4) if len(value) >= 12 else mask_generic(value)
            return mask_generic(value)
        if op is Operator.LABEL:
            return label(category)
        if op is Operator.REMOVE:
            return None
        keyed = self._keyed_ops()
        ctx = context or RedactionContext()
        if op is Operator.PSEUDONYMIZE:
            return keyed.pseudonymize(value, ctx, category)
        if op is Operator.ENCRYPT:
            return keyed.encrypt(value, ctx, field or category)
        if op is Operator.TOKENIZE:
            return keyed.tokenize(value, ctx, field or category)
        raise RedactionError(f"unsupported operator {op!r}")  # pragma: no cover

    def _keyed_ops(self) -> _KeyedOps:
        if self._keyed is None:
            if self._keyring is None:
                raise PolicyError("this operator needs a keyring")
            self._keyed = _KeyedOps(self._keyring)
        return self._keyed

    # -- free text ------------------------------------------------------------------------
    def redact_text(
        self,
        text: str,
        *,
        audience: RecipientKind | str | None = None,
        context: RedactionContext | None = None,
    ) -> str:
        """Redact personal data the detectors find in free text."""
        aud = None if audience is None else self.taxonomy.recipient_kind(audience)
        return self._text(text, aud, context)

    def _text(self, text: str, audience: RecipientKind | None, ctx: RedactionContext | None) -> str:
        if self._scanner is None or _NOTHING_TO_FIND(text) is None:
            return text
        return self._scan_text(text, audience, ctx)

    def _scan_text(
        self, text: str, audience: RecipientKind | None, ctx: RedactionContext | None
    ) -> str:
        """:meth:`_text` for a string the caller already put through the prefilter (the
        scanner itself passes identifiers and timestamps without running its detectors)."""
        return self._scanner.redact(text, self.text_replacer(audience, ctx))  # type: ignore[union-attr]

    def text_replacer(
        self, audience: RecipientKind | None = None, context: RedactionContext | None = None
    ) -> Callable[[Finding, str], str]:
        """A ``replace`` callback for the scanner and the stream redactors."""

        def replace(finding: Finding, matched: str) -> str:
            out = self._apply_op(
                self.operator_for(finding.category, audience),
                finding.category,
                matched,
                context,
                "",
            )
            return label(finding.category) if out is None else out

        return replace

    # -- structured data --------------------------------------------------------------------
    def redact(
        self,
        data: T,
        *,
        audience: RecipientKind | str | None = None,
        context: RedactionContext | None = None,
    ) -> T:
        """A redacted copy of ``data`` (dict/list/tuple, dataclass, Pydantic model, str)."""
        aud = None if audience is None else self.taxonomy.recipient_kind(audience)
        state = self._paths.start() if self._has_paths else _EMPTY_STATE
        try:
            return typing.cast(T, self._walk(data, state, None, aud, context, 0, ""))
        except RecursionError:
            raise RedactionError("data is nested too deeply to redact") from None

    @property
    def scanner(self) -> TextScanner | None:
        """The free-text scanner, or ``None`` when free-text detection is off."""
        return self._scanner

    def category_of_key(self, key: str) -> str | None:
        """The category a key name maps to (``billingEmail`` → ``user.contact.email``)."""
        return self._key_category(key)

    def _key_category(self, key: str) -> str | None:
        return self._key_info(key)[0]

    def _key_info(self, key: str) -> tuple[str | None, bool]:
        """A key's category, and whether it may hold personal data. Only keys found to
        hold none are cached: the cache never keeps an e-mail address."""
        try:
            return self._key_cat[key], False
        except KeyError:
            pass
        personal = self._may_hold_personal_data(key)
        norm = normalize_key(key)
        category = self._key_names.get(norm)
        if category is None:
            for suffix, cat in self._suffixes:
                if norm.endswith(suffix):
                    category = cat
                    break
        if not personal and len(key) <= _CACHED_KEY_MAX and len(self._key_cat) < 65536:
            self._key_cat[key] = category
        return category, personal

    def _may_hold_personal_data(self, text: str) -> bool:
        """True when the detectors find something in ``text`` (a key), or when it passes
        the prefilter and there is no scanner to ask (then it is only never cached)."""
        if _NOTHING_TO_FIND(text) is None:
            return False
        return self._scanner is None or bool(self._scanner.scan(text))

    def _int_key_may_hold_personal_data(self, key: int) -> bool:
        if not _INT_SCAN_MIN <= key < _INT_SCAN_MAX:
            return False
        return self._scanner is None or bool(self._scanner.scan(str(key)))

    def _rename_keys(
        self,
        out: dict[Any, Any],
        personal: tuple[int, ...] | list[int],
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
    ) -> dict[Any, Any]:
        """``out`` with the keys at ``personal`` redacted as free text; colliding new
        keys get ``#2``, ``#3``, ... (see :func:`_unique_keys`)."""
        if not self._detect:
            return out
        keys = list(out)
        renamed: dict[int, str] = {}
        for i in personal:
            k = keys[i]
            text = str.__str__(k) if isinstance(k, str) else str(k)
            new = self._text(text, audience, ctx)
            if new != text:
                renamed[i] = new
        if not renamed:
            return out
        return dict(zip(_unique_keys(keys, renamed), out.values(), strict=True))

    def _leaf(
        self,
        value: object,
        category: str,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        field: str,
    ) -> object:
        if type(value) is str:
            return self._apply_op(
                self.operator_for(category, audience), category, value, ctx, field
            )
        if type(value) is int:
            op = self.operator_for(category, audience)
            if op is Operator.KEEP:
                return value
            return self._apply_op(op, category, _int_text(value), ctx, field)
        return value

    def _number(
        self, value: int, audience: RecipientKind | None, ctx: RedactionContext | None
    ) -> object:
        """An int under a key that says nothing, in a list or alone: its digits redacted
        as in text when the detectors find a card number in them (13 to 16 digits), else
        the int itself. The operator's output is a string, or ``None`` for ``remove``."""
        if not _INT_SCAN_MIN <= value < _INT_SCAN_MAX or not self._detect:
            return value
        text = str(value)
        scanner = typing.cast("TextScanner", self._scanner)
        findings = scanner.scan(text)
        if not findings:
            return value
        if len(findings) == 1 and findings[0].start == 0 and findings[0].end == len(text):
            category = findings[0].category
            out = self._apply_op(self.operator_for(category, audience), category, text, ctx, "")
        else:
            out = scanner.redact(text, self.text_replacer(audience, ctx))
        return value if out == text else out

    def _walk(
        self,
        value: object,
        state: frozenset[tuple[int, int]],
        category: str | None,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
        field: str,
    ) -> object:
        kind = type(value)
        if kind is str:
            text = typing.cast(str, value)
            if category is not None:
                op = self.operator_for(category, audience)
                return self._apply_op(op, category, text, ctx, field)
            if self._detect:
                return self._text(text, audience, ctx)
            return value
        if depth > self._max_depth:
            raise RedactionError("data is nested too deeply to redact")
        if kind is dict:
            return self._walk_dict(value, state, category, audience, ctx, depth)  # type: ignore[arg-type]
        if kind is list or kind is tuple:
            step = self._paths.step(state, "[]") if state else state
            walk = self._walk
            if category is None:
                if not step and depth < self._max_depth:
                    # A list of records: each dict straight to the function generated
                    # for its key set, else to the dict plans.
                    plain_dict = self._walk_dict_plain
                    get = self._compiled[audience].get if ctx is None else _no_shape
                    d = depth + 1
                    out = [
                        (
                            fn(v, None, d)
                            if (fn := get(tuple(v))) is not None
                            else plain_dict(v, audience, ctx, d)
                        )
                        if type(v) is dict
                        else v
                        if v is None
                        or ((t := type(v)) is int and v < _INT_SCAN_MIN)
                        or t is float
                        or t is bool
                        else walk(v, step, None, audience, ctx, d, field)
                        for v in value  # type: ignore[attr-defined]
                    ]
                else:
                    out = [
                        v
                        if v is None
                        or ((t := type(v)) is int and v < _INT_SCAN_MIN)
                        or t is float
                        or t is bool
                        else walk(v, step, None, audience, ctx, depth + 1, field)
                        for v in value  # type: ignore[attr-defined]
                    ]
            else:
                out = [
                    v if v is None else walk(v, step, category, audience, ctx, depth + 1, field)
                    for v in value  # type: ignore[attr-defined]
                ]
            return out if kind is list else tuple(out)
        if kind is int:
            if category is not None:
                return self._leaf(value, category, audience, ctx, field)
            if value >= _INT_SCAN_MIN and _ID_KEY.search(field):  # type: ignore[operator]
                return value  # an id, by its key's name
            return self._number(value, audience, ctx)  # type: ignore[arg-type]
        if isinstance(value, (*_SAFE_SCALARS, enum.Enum)):
            return value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._walk_dataclass(value, state, category, audience, ctx, depth)
        if hasattr(type(value), "model_fields") and hasattr(value, "model_copy"):
            return self._walk_pydantic(value, state, category, audience, ctx, depth)
        if isinstance(value, Mapping):
            items = self._walk_dict(dict(value), state, category, audience, ctx, depth)
            return _same_kind(value, items) if isinstance(value, dict) else items
        if isinstance(value, str):
            return self._walk(str(value), state, category, audience, ctx, depth, field)
        if isinstance(value, tuple) and hasattr(value, "_asdict"):
            # A named tuple is a record: its field names say what its values are.
            fields = self._walk_dict(value._asdict(), state, category, audience, ctx, depth)
            try:
                return type(value)(**fields)
            except TypeError:  # a constructor of its own: the fields as a plain dict
                return fields
        if isinstance(value, (list, tuple, set, frozenset)):
            walked = [
                self._walk(v, state, category, audience, ctx, depth + 1, field) for v in value
            ]
            try:
                return type(value)(walked)
            except TypeError:  # a subclass with a constructor of its own: its base type
                for base in (list, tuple, frozenset, set):
                    if isinstance(value, base):
                        return base(walked)
                raise
        raise RedactionError(
            f"cannot redact a {kind.__name__}: use dicts, lists, dataclasses or Pydantic models"
        )

    def _walk_dict(
        self,
        value: dict[Any, Any],
        state: frozenset[tuple[int, int]],
        category: str | None,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
    ) -> dict[Any, Any]:
        if not state and category is None:
            return self._walk_dict_plain(value, audience, ctx, depth)
        if ctx is not None and ctx.record_id == "" and "id" in value:
            ctx = dataclasses.replace(ctx, record_id=str(value["id"]))
        out: dict[Any, Any] = {}
        key_info = self._key_info
        walk = self._walk
        personal: list[int] = []
        for i, (k, v) in enumerate(value.items()):
            cat = category
            nxt = state
            if isinstance(k, str):
                k_text = str.__str__(k)  # a StrEnum key is its text
                own, holds = key_info(k_text)
                if holds:
                    personal.append(i)
                if state:
                    nxt = self._paths.step(state, k_text, remember=not holds)
                    cat = cat or self._paths.category(nxt)
                if cat is None:
                    cat = own
                elif category is not None and own is not None and own.startswith(category + "."):
                    cat = own  # a more precise key below a categorised one refines it
                field = k_text
            else:
                if type(k) is int and self._int_key_may_hold_personal_data(k):
                    personal.append(i)
                field = str(k)
            vt = type(v)
            if v is None or (
                cat is None
                and (
                    (vt is int and v < _INT_SCAN_MIN)
                    or vt is float
                    or vt is bool
                    or (vt is str and not self._detect)
                )
            ):
                out[k] = v
            else:
                out[k] = walk(v, nxt, cat, audience, ctx, depth + 1, field)
        if personal:
            return self._rename_keys(out, personal, audience, ctx)
        return out

    def _walk_dict_plain(
        self,
        value: dict[Any, Any],
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
    ) -> dict[Any, Any]:
        """The common case: no path patterns in play, no inherited category.

        Each distinct key set is planned once per audience (each key's category and, for
        string values, its operator as a one-argument function); a key set seen again
        gets a function generated for exactly that shape (see :func:`_generate_shape`).
        """
        if ctx is not None and ctx.record_id == "" and "id" in value:
            ctx = dataclasses.replace(ctx, record_id=str(value["id"]))
        shapes = self._shapes.get(audience)
        if shapes is None:
            shapes = self._shapes.setdefault(audience, {})
        keys = tuple(value)
        shape = shapes.get(keys)
        if shape is None:
            shape = self._new_shape(keys, audience, shapes)
        elif shape.compiled is not None:
            return shape.compiled(value, ctx, depth)
        elif shape.seen < _COMPILE_AFTER:
            shape.seen += 1
        elif len(compiled := self._compiled[audience]) < _COMPILED_LIMIT:
            shape.compiled = self._compile_shape(keys, shape.plan, audience, value)
            if shape.compiled is not None:
                compiled[keys] = shape.compiled
                return shape.compiled(value, ctx, depth)
        out: dict[Any, Any] = {}
        walk = self._walk
        text = self._scan_text if self._detect else None
        nothing = _NOTHING_TO_FIND
        for (k, v), (cat, fn) in zip(value.items(), shape.plan, strict=True):
            vt = type(v)
            if vt is str:
                if fn is not None:
                    out[k] = fn(v)
                elif cat is not None:  # a keyed operator: needs the context and the field
                    out[k] = self._apply_op(self.operator_for(cat, audience), cat, v, ctx, k)
                elif text is None or nothing(v) is None:
                    out[k] = v
                else:
                    out[k] = text(v, audience, ctx)
            elif v is None or (
                cat is None and ((vt is int and v < _INT_SCAN_MIN) or vt is float or vt is bool)
            ):
                out[k] = v
            else:
                out[k] = walk(v, _EMPTY_STATE, cat, audience, ctx, depth + 1, str(k))
        if shape.personal:
            return self._rename_keys(out, shape.personal, audience, ctx)
        return out

    def _new_shape(
        self,
        keys: tuple[object, ...],
        audience: RecipientKind | None,
        shapes: dict[tuple[object, ...], _Shape],
    ) -> _Shape:
        """Per key: its category and, for string values, the operator as a function.

        The keys are checked for personal data here, once per key set: a key set with a
        key that holds some is planned for this dict only and never kept (the cache is
        keyed by the keys)."""
        plan = []
        personal = []
        for i, k in enumerate(keys):
            cat = None
            if isinstance(k, str):
                # A str subclass (a StrEnum key) equals and hashes like its text, so it
                # shares this plan with plain keys: categorised by its text.
                cat, holds = self._key_info(str.__str__(k))
                if holds:
                    personal.append(i)
            elif type(k) is int and self._int_key_may_hold_personal_data(k):
                personal.append(i)
            fn = None if cat is None else self._leaf_function(cat, audience)
            plan.append((cat, None if fn is _KEYED else fn))
        shape = _Shape(tuple(plan), tuple(personal))
        if (
            not personal
            and len(shapes) < _SHAPE_LIMIT
            and len(keys) <= _SHAPE_MAX_KEYS
            and all(type(k) is not str or len(k) <= _CACHED_KEY_MAX for k in keys)
        ):
            shapes[keys] = shape
        return shape

    def _compile_shape(
        self,
        keys: tuple[object, ...],
        plan: tuple[tuple[str | None, Callable[[str], str | None] | None], ...],
        audience: RecipientKind | None,
        sample: Mapping[Any, Any],
    ) -> _ShapeFunction | None:
        # Only for plain string keys: the function emits the keys it was made with, so
        # equal keys of other types (1 and True, a StrEnum) keep the loop's exact output.
        if len(keys) > _SHAPE_MAX_KEYS or not all(type(k) is str for k in keys):
            return None
        ops = [None if cat is None else self.operator_for(cat, audience) for cat, _ in plan]
        # Keys that held an identifier or a timestamp this time (an id, created_at) will
        # again: their values meet the identifier check first, cheaper than the
        # prefilter on a UUID's many digits. Only which keys, never a value, is kept.
        identifiers = frozenset(k for k, v in sample.items() if type(v) is str and is_identifier(v))
        return _generate_shape(
            keys,
            plan,
            ops,
            identifiers=identifiers,
            audience=audience,
            walk=self._walk,
            text=self._scan_text if self._detect else None,
            apply_op=self._apply_op,
            max_depth=self._max_depth,
        )

    def _leaf_function(
        self, category: str, audience: RecipientKind | None
    ) -> Callable[[str], str | None]:
        """The operator for (category, audience) as a one-argument function, or _KEYED."""
        op = self.operator_for(category, audience)
        fn: Callable[[str], str | None]
        if op in (Operator.ENCRYPT, Operator.TOKENIZE, Operator.PSEUDONYMIZE):
            fn = _KEYED
        elif op is Operator.KEEP:
            fn = _identity
        elif op is Operator.REMOVE:
            fn = _none
        elif op is Operator.LABEL:
            fn = _Constant(label(category))
        elif category == C.CARD:
            fn = card_masker(keep_first=self._card_keep_first)
        elif category == C.EMAIL:
            fn = mask_email
        elif covers(C.PHONE, category) or covers(C.FAX, category):
            fn = phone_masker()
        else:
            fn = functools.partial(self._apply_op, op, category, context=None, field="")
        return fn

    def _plan(self, cls: type) -> tuple[tuple[str, str | None], ...]:
        plan = self._type_plans.get(cls)
        if plan is None:
            hints: dict[str, Any] = {}
            try:
                hints = typing.get_type_hints(cls, include_extras=True)
            except Exception:  # unresolvable forward references: fall back to names
                hints = {}
            fields: list[tuple[str, str | None]] = []
            if dataclasses.is_dataclass(cls):
                for f in dataclasses.fields(cls):
                    cat = f.metadata.get("privguard") if f.metadata else None
                    if isinstance(cat, Personal):
                        cat = cat.category
                    cat = cat or _annotated_category(hints.get(f.name))
                    fields.append((f.name, self.taxonomy.category(cat) if cat else None))
            else:
                model_fields: Mapping[str, Any] = getattr(cls, "model_fields", {})
                for name, info in model_fields.items():
                    cat = next(
                        (
                            m.category
                            for m in getattr(info, "metadata", ())
                            if isinstance(m, Personal)
                        ),
                        None,
                    ) or _annotated_category(hints.get(name))
                    fields.append((name, self.taxonomy.category(cat) if cat else None))
            plan = tuple(fields)
            self._type_plans[cls] = plan
        return plan

    def _walk_fields(
        self,
        value: object,
        state: frozenset[tuple[int, int]],
        category: str | None,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
    ) -> dict[str, object]:
        changes: dict[str, object] = {}
        for name, declared in self._plan(type(value)):
            current = getattr(value, name)
            nxt = self._paths.step(state, name) if state else state
            cat = category or declared or (self._paths.category(nxt) if state else None)
            cat = cat or self._key_category(name)
            new = self._walk(current, nxt, cat, audience, ctx, depth + 1, name)
            if new is not current:
                changes[name] = new
        return changes

    def _walk_dataclass(
        self,
        value: Any,
        state: frozenset[tuple[int, int]],
        category: str | None,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
    ) -> object:
        changes = self._walk_fields(value, state, category, audience, ctx, depth)
        if not changes:
            return value
        import copy

        new = copy.copy(value)
        for name, v in changes.items():
            object.__setattr__(new, name, v)
        return new

    def _walk_pydantic(
        self,
        value: Any,
        state: frozenset[tuple[int, int]],
        category: str | None,
        audience: RecipientKind | None,
        ctx: RedactionContext | None,
        depth: int,
    ) -> object:
        changes = self._walk_fields(value, state, category, audience, ctx, depth)
        return value.model_copy(update=changes) if changes else value

    # -- JSON bytes ---------------------------------------------------------------------------
    def redact_json(
        self,
        body: bytes | str,
        *,
        audience: RecipientKind | str | None = None,
        context: RedactionContext | None = None,
        max_depth: int | None = None,
    ) -> bytes:
        """Parse, redact and serialise a JSON document. Unparseable: :class:`UnparseableBody`."""
        data = parse_json(body)
        if max_depth is not None and _depth_exceeds(data, max_depth):
            raise UnparseableBody(JSON_TOO_DEEP)
        return dump_json(self.redact(data, audience=audience, context=context))


def _same_kind(original: dict[Any, Any], items: dict[Any, Any]) -> dict[Any, Any]:
    """``items`` as ``type(original)`` (an OrderedDict, a defaultdict with the same
    default factory, a Counter, a subclass of yours) when that type rebuilds from a dict
    and then holds exactly ``items``, in order; otherwise ``items``, a plain dict."""
    kind: Any = type(original)
    try:
        if isinstance(original, collections.defaultdict):
            rebuilt = kind(original.default_factory, items)
        else:
            rebuilt = kind(items)
    except Exception:  # a constructor that takes something else: a plain dict
        return items
    if type(rebuilt) is not kind or dict.__len__(rebuilt) != len(items):
        return items
    for (k1, v1), (k2, v2) in zip(dict.items(rebuilt), items.items(), strict=True):
        if k1 is not k2 or v1 is not v2:
            return items
    return rebuilt  # type: ignore[no-any-return]


def _annotated_category(hint: object) -> str | None:
    if hint is None:
        return None
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, Personal):
            return meta.category
    for arg in typing.get_args(hint):  # Optional[Annotated[...]], list[Annotated[...]]
        found = _annotated_category(arg)
        if found:
            return found
    return None


def _depth_exceeds(data: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


try:  # orjson is optional: faster where installed, stdlib json otherwise.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson = None  # type: ignore[assignment]


def parse_json(body: bytes | str) -> Any:
    """Parse JSON strictly; every failure is :class:`UnparseableBody`, without the body."""
    try:
        if _orjson is not None:
            return _orjson.loads(body)
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        return json.loads(body)
    except UnicodeDecodeError:
        raise UnparseableBody("body is not valid UTF-8") from None
    except RecursionError:
        raise UnparseableBody(JSON_TOO_DEEP) from None
    except ValueError as exc:
        message = str(exc).lower()
        nested = "recursion" in message or "depth" in message
        reason = JSON_TOO_DEEP if nested else "invalid JSON"
        raise UnparseableBody(reason) from None


def dump_json(data: object) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(data)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _KeyedOps:
    """The keyed operators, bound to a keyring. Built on first use."""

    def __init__(self, keyring: Keyring) -> None:
        from ._crypto import EncryptionContext, FieldCipher, Pseudonymizer, Tokenizer

        self._context = EncryptionContext
        self._cipher = FieldCipher(keyring)
        self._tokenizer = Tokenizer(keyring)
        self._pseudonymizer = Pseudonymizer(keyring)

    def encrypt(self, value: str, ctx: RedactionContext, field: str) -> str:
        # An encrypted value stays as it is: encrypting twice is refused by the cipher,
        # and the value is already protected.
        if self._cipher.is_encrypted(value):
            return value
        return self._cipher.encrypt(
            value,
            context=self._context(
                tenant=ctx.tenant, table=ctx.table, field=field, record_id=ctx.record_id
            ),
        )

    def tokenize(self, value: str, ctx: RedactionContext, field: str) -> str:
        if self._cipher.is_encrypted(value):
            return value
        return self._tokenizer.tokenize(value, tenant=ctx.tenant, field=field, purpose=ctx.purpose)

    def pseudonymize(self, value: str, ctx: RedactionContext, category: str) -> str:
        if self._cipher.is_encrypted(value):
            return value
        return self._pseudonymizer.pseudonymize(value, tenant=ctx.tenant, namespace=category)
