"""Analytics payloads: which requests are analytics hits, and what a hit may carry (C21).

:func:`classify` recognises a hit by path and payload shape, not only by host: the GA4
Measurement Protocol (``/mp/collect``, ``/debug/mp/collect``), gtag.js hits
(``/g/collect``, or any path with ``v=2&tid=G-…``), Universal Analytics (``/collect``,
``/j/collect``, ``/r/collect``, ``/batch``, or ``v=1&tid=UA-…``), Adobe Analytics
(``/b/ss/`` on any host: first-party CNAMEs are common), the Adobe Edge Network
(``/ee/v1/…``, ``/ee/v2/…``) and Mixpanel ingestion (``/track``, ``/engage``,
``/groups``, ``/import`` on its API hosts, EU and India included, or anywhere with
Mixpanel's payload shape).

:func:`scrub` takes the personal data out: e-mail addresses, phone numbers, card numbers
and IBANs in URLs, titles, referrers, ``utm_*`` and event and user properties; keys that
name personal data (``email``, ``first_name``, Mixpanel's ``$name``, ...) dropped; raw IP
addresses dropped or truncated; user ids replaced by keyed pseudonyms; Google's
``user_data`` kept only as SHA-256 and only with ``ad_user_data`` consent. Then the whole
outgoing request is read again, decoded every way it could hide text (percent-encoding,
base64, JSON escapes, compression): if an e-mail address or a card number is still in
it, the hit is blocked.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, unquote_plus, urlsplit, urlunsplit

import httpx

from .._default_policy import ANALYTICS_CATEGORIES
from .._errors import PolicyError
from .._operators import label
from .._subject import PLATFORM
from .._taxonomy import Categories as C
from .._taxonomy import covers
from ._collectors import (
    ADOBE_HOSTS,
    GA_HIT_HOSTS,
    MIXPANEL_API_HOSTS,
    MIXPANEL_HOSTS,
    AnalyticsVendor,
    host_matches,
)

if TYPE_CHECKING:
    from .._crypto import Pseudonymizer
    from .._detection import Finding, TextScanner
    from .._redaction import Redactor

__all__ = [
    "AnalyticsHit",
    "AnalyticsHitKind",
    "AnalyticsScrubRules",
    "IpHandling",
    "ScrubbedHit",
    "classify",
    "classify_parts",
    "leftover_personal_data",
    "scrub",
    "user_id_of",
]

#: The largest (decompressed) body read to classify and scrub a hit; larger is blocked.
MAX_BODY: Final = 1 << 20


class AnalyticsHitKind(StrEnum):
    GA4_MEASUREMENT_PROTOCOL = "ga4_measurement_protocol"
    GA4_COLLECT = "ga4_collect"
    UA_COLLECT = "ua_collect"
    ADOBE_APPMEASUREMENT = "adobe_appmeasurement"
    ADOBE_EDGE = "adobe_edge"
    MIXPANEL = "mixpanel"
    #: Any other request to a collector host: treated as a hit (fail closed).
    OTHER = "other"


class IpHandling(StrEnum):
    """What happens to a raw IP address in a payload."""

    DROP = "drop"
    #: IPv4 to its /24, IPv6 to its /48.
    TRUNCATE = "truncate"


_V: Final = AnalyticsVendor
_K: Final = AnalyticsHitKind


@dataclass(frozen=True, slots=True)
class AnalyticsHit:
    """An outgoing request that is an analytics hit. ``endpoint``: Mixpanel's ``track``,
    ``engage``, ``groups`` or ``import``; the last path segment otherwise."""

    vendor: AnalyticsVendor
    kind: AnalyticsHitKind
    endpoint: str
    request: httpx.Request = field(repr=False, compare=False)

    @property
    def host(self) -> str:
        return self.request.url.host


# -- classify -----------------------------------------------------------------------------------
_EDGE_PATH: Final = re.compile(r"^/ee/(?:[a-z0-9-]+/)?v[12]/", re.I)
_MIXPANEL_ENDPOINTS: Final = frozenset({"track", "engage", "groups", "import"})
_UA_PATHS: Final = ("/collect", "/j/collect", "/r/collect", "/batch")
_MP_PATHS: Final = ("/mp/collect", "/debug/mp/collect")


def _pairs(text: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True)
    except ValueError:
        return []


def _ga_shape(params: dict[str, str]) -> AnalyticsHitKind | None:
    tid = params.get("tid", "")
    version = params.get("v", "")
    if tid.startswith("G-") and version == "2":
        return _K.GA4_COLLECT
    if tid.upper().startswith("UA-") and version == "1":
        return _K.UA_COLLECT
    return None


def _ga_body_shape(body: bytes | None) -> AnalyticsHitKind | None:
    if not body:
        return None
    for line in body[:MAX_BODY].decode("latin-1").splitlines()[:50]:
        kind = _ga_shape(dict(_pairs(line)))
        if kind is not None:
            return kind
    return None


def _decode_data(raw: str) -> Any:
    """Mixpanel's ``data``: JSON, or JSON in base64 (standard or URL-safe)."""
    text = raw.strip()
    if not text:
        return None
    if text[0] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return None
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return json.loads(decode(padded))
        except (ValueError, binascii.Error):
            continue
    return None


def _mixpanel_doc(doc: Any) -> bool:
    items = doc if isinstance(doc, list) else [doc]
    for item in items[:20]:
        if not isinstance(item, dict):
            continue
        props = item.get("properties")
        if isinstance(props, dict) and ("token" in props or "distinct_id" in props):
            return True
        if "$token" in item or "$distinct_id" in item:
            return True
    return False


def _mixpanel_shape(params: dict[str, str], body: bytes | None) -> bool:
    if "data" in params and _mixpanel_doc(_decode_data(params["data"])):
        return True
    if not body:
        return False
    text = body[:MAX_BODY].decode("utf-8", "replace").strip()
    if text[:1] in ("[", "{"):
        return _mixpanel_doc(_decode_data(text))
    form = dict(_pairs(text))
    return "data" in form and _mixpanel_doc(_decode_data(form["data"]))


def classify_parts(
    method: str,
    host: str,
    path: str,
    query: str,
    body: bytes | None = None,
) -> tuple[AnalyticsVendor, AnalyticsHitKind, str] | None:
    """:func:`classify` on the parts of a request (the middleware has no httpx request).
    ``body`` ``None``: judge by the URL alone."""
    host = host.lower().rstrip(".")
    low = path.lower()
    last = low.rstrip("/").rsplit("/", 1)[-1]
    if "/b/ss/" in low:
        return _V.ADOBE, _K.ADOBE_APPMEASUREMENT, "b/ss"
    if _EDGE_PATH.match(low):
        return _V.ADOBE, _K.ADOBE_EDGE, last
    params = dict(_pairs(query))
    ga_host = host_matches(host, GA_HIT_HOSTS)
    if low.endswith(_MP_PATHS) and (
        ga_host or "measurement_id" in params or "firebase_app_id" in params
    ):
        return (
            _V.GOOGLE_ANALYTICS,
            _K.GA4_MEASUREMENT_PROTOCOL,
            "mp/collect",
        )
    shape = _ga_shape(params) or _ga_body_shape(body)
    if shape is not None:
        return _V.GOOGLE_ANALYTICS, shape, last
    if ga_host:
        if low.endswith("/g/collect"):
            return _V.GOOGLE_ANALYTICS, _K.GA4_COLLECT, last
        if low.endswith(_UA_PATHS):
            return _V.GOOGLE_ANALYTICS, _K.UA_COLLECT, last
        return _V.GOOGLE_ANALYTICS, _K.OTHER, last
    first = low.strip("/").split("/", 1)[0]
    if host in MIXPANEL_API_HOSTS or (
        host_matches(host, MIXPANEL_HOSTS) and first in _MIXPANEL_ENDPOINTS
    ):
        return (
            _V.MIXPANEL,
            _K.MIXPANEL,
            first if first in _MIXPANEL_ENDPOINTS else last,
        )
    if last in _MIXPANEL_ENDPOINTS and _mixpanel_shape(params, body):
        return _V.MIXPANEL, _K.MIXPANEL, last
    if host_matches(host, ADOBE_HOSTS) and not host.endswith("adobedtm.com"):
        return _V.ADOBE, _K.OTHER, last
    return None


def _content(request: httpx.Request) -> bytes | None:
    try:
        return request.content
    except httpx.RequestNotRead:
        return None


def classify(request: httpx.Request) -> AnalyticsHit | None:
    """The analytics hit ``request`` is, or ``None``. Read the body first (``read()``)
    to have its shape count; unread, the URL decides alone.

    >>> classify(httpx.Request("POST", "https://region1.google-analytics.com/g/collect?v=2&tid=G-X1"))
    AnalyticsHit(vendor=<_V.GOOGLE_ANALYTICS: ...>, kind=<_K.GA4_COLLECT: ...>, ...)
    """
    url = request.url
    body = _content(request)
    if body is not None and request.headers.get("content-encoding"):
        body = _inflate(body, request.headers["content-encoding"])
    found = classify_parts(
        request.method, url.host, url.path, url.query.decode("ascii", "replace"), body
    )
    if found is None:
        return None
    return AnalyticsHit(*found, request=request)


def _inflate(body: bytes, encoding: str) -> bytes | None:
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None
    wbits = 31 if coding != "deflate" else (15 if body[:1] == b"\x78" else -15)
    try:
        obj = zlib.decompressobj(wbits)
        out = obj.decompress(body, MAX_BODY + 1)
    except zlib.error:
        return None
    return out if len(out) <= MAX_BODY else None


# -- scrub ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AnalyticsScrubRules:
    """How :func:`scrub` treats what it finds.

    ``pseudonymizer``: keyed HMAC pseudonyms for user ids (``Pseudonymizer(keyring)``);
    without one, user ids are dropped. ``ad_user_data``: the person consented to their
    hashed contact details going to Google for advertising (the default policy forbids
    it, C08); even then only SHA-256 values pass, and only when the payload itself says
    ``consent.ad_user_data: "GRANTED"``.
    """

    pseudonymizer: Pseudonymizer | None = None
    tenant: str = PLATFORM
    namespace: str = "analytics"
    ip: IpHandling = IpHandling.DROP
    ad_user_data: bool = False
    scanner: TextScanner | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "ip", IpHandling(self.ip))
        except ValueError:
            raise PolicyError("ip must be 'drop' or 'truncate'") from None
        if not isinstance(self.tenant, str) or not self.tenant:
            raise PolicyError("tenant must be a non-empty string")


@dataclass(frozen=True, slots=True)
class ScrubbedHit:
    """What :func:`scrub` made of a hit: the request to send, or why it is blocked.

    ``changes`` names the fields changed and how (``"dl:redacted"``, ``"uid:pseudonymized"``,
    ``"user_data:dropped"``): field names and actions, never values.
    """

    request: httpx.Request | None
    blocked: str | None = None
    changes: tuple[str, ...] = ()


_DROP: Final[Any] = object()

# Keys, normalised (lower case, no separators, no leading "$").
_ID_KEYS: Final = frozenset(
    {"uid", "userid", "distinctid", "customerid", "memberid", "crmid", "vid", "identifiedid"}
)
_IP_KEYS: Final = frozenset(
    {"uip", "ip", "ipoverride", "ipaddress", "ipv4", "ipv6", "clientip", "remoteaddr"}
)
# Technical fields (ids, timestamps, hashes, versions): scanned for e-mails and card
# numbers only, so that a numeric id is not mistaken for a phone number.
_TECH_KEYS: Final = frozenset(
    {
        "v", "tid", "cid", "sid", "p", "gtm", "s", "sct", "seg", "et", "tfd", "gcs", "gcd",
        "dma", "npa", "frm", "gaz", "z", "t", "a", "je", "ul", "sr", "vp", "de", "ni",
        "clientid", "appinstanceid", "timestampmicros", "sessionid", "sessionnumber",
        "engagementtimemsec", "measurementid", "apisecret", "firebaseappid", "insertid",
        "deviceid", "token", "time", "mplib", "libversion", "lib", "mid", "aid", "fid",
        "rsid", "ns", "aqb", "aqe", "ce", "pe", "configid", "requestid", "ecid", "gclid",
        "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "ts", "cb", "verbose", "img",
    }
)  # fmt: skip
_URL_KEYS: Final = frozenset(
    {
        "dl", "dr", "dp", "g", "r", "pageurl", "pagelocation", "pagereferrer", "pagepath",
        "currenturl", "referrer", "initialreferrer", "url", "pev1", "linkurl", "href",
    }
)  # fmt: skip
# Mixpanel's reserved profile properties that are the person themself.
_DOLLAR_PERSONAL: Final = frozenset({"$name", "$first_name", "$last_name", "$email", "$phone"})
_GA_PREFIX: Final = re.compile(r"^(?:ep|epn|up|upn)\.")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_EM: Final = re.compile(r"tv\.1(?:~[a-z0-9_]+\.[0-9a-f]{64})+")
_NORMALIZE: Final = re.compile(r"[\s_\-.]+")
_ANALYTICS_OK: Final = tuple(ANALYTICS_CATEGORIES)


@cache
def _key_redactor() -> Redactor:
    from .._redaction import Redactor

    return Redactor(detect_text=False)


@cache
def _strict_scanner() -> TextScanner:
    from .._detection import TextScanner

    return TextScanner(kinds=("email", "card"))


@cache
def _full_scanner() -> TextScanner:
    from .._detection import DEFAULT_SCANNER

    return DEFAULT_SCANNER


def _norm(key: str) -> str:
    return _NORMALIZE.sub("", key.lstrip("$")).lower()


_KEEP, _TEXT, _TECH, _URL, _ID, _IP, _REMOVE = range(7)


@lru_cache(maxsize=4096)
def _action(key: str) -> int:
    if key in _DOLLAR_PERSONAL:
        return _REMOVE
    bare = _GA_PREFIX.sub("", key)
    norm = _norm(bare)
    if norm in _ID_KEYS:
        return _ID
    if norm in _IP_KEYS:
        return _IP
    if norm in _URL_KEYS:
        return _URL
    if norm in _TECH_KEYS or key.startswith(("epn.", "upn.")):
        return _TECH
    category = _key_redactor().category_of_key(bare.lstrip("$"))
    if category is None:
        return _TEXT
    if covers(C.IP_ADDRESS, category):
        return _IP
    if any(covers(ok, category) for ok in _ANALYTICS_OK):
        return _TEXT
    return _REMOVE


def _replace(finding: Finding, matched: str) -> str:
    return label(finding.category)


def _decodings(text: str) -> Iterator[str]:
    """``text`` and what percent-decoding it again and again gives."""
    yield text
    for _ in range(3):
        decoded = unquote_plus(text)
        if decoded == text:
            return
        text = decoded
        yield text


def _truncate_ip(value: str) -> str | None:
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _sha256_only(value: Any) -> Any:
    """Google's ``user_data`` with every field that is not a SHA-256 hex digest removed."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            kept = _sha256_only(v)
            if kept is not _DROP and (
                str(k).startswith("sha256_") or isinstance(kept, dict | list)
            ):
                out[k] = kept
        return out if out else _DROP
    if isinstance(value, list):
        items = [x for x in (_sha256_only(v) for v in value) if x is not _DROP]
        return items if items else _DROP
    if isinstance(value, str) and _SHA256.fullmatch(value):
        return value
    return _DROP


class _Scrub:
    def __init__(self, rules: AnalyticsScrubRules, hit: AnalyticsHit) -> None:
        self.rules = rules
        self.kind = hit.kind
        self.full = rules.scanner or _full_scanner()
        self.strict = _strict_scanner()
        self.changes: dict[str, None] = {}
        self.root: Any = None

    def note(self, key: str, what: str) -> None:
        self.changes.setdefault(f"{key[:64]}:{what}", None)

    # -- strings ------------------------------------------------------------------------------
    def _hidden(self, value: str) -> bool:
        return any(self.strict.contains(v) for v in list(_decodings(value))[1:])

    def text(self, key: str, value: str, *, technical: bool = False) -> str:
        if not value:
            return value
        scanner = self.strict if technical else self.full
        out = scanner.redact(value, _replace)
        if self._hidden(out):  # percent-encoded once more than the format says
            out = "[redacted]"
        if out != value:
            self.note(key, "redacted")
        return out

    def url(self, key: str, value: str) -> str:
        try:
            parts = urlsplit(value)
        except ValueError:
            return self.text(key, value)
        netloc = parts.netloc
        if "@" in netloc:  # user:password@host
            netloc = netloc.rsplit("@", 1)[1]
        query = parts.query
        if query:
            original = _pairs(query)
            pairs = self.pairs(original)
            if pairs != original:
                query = _encode(pairs)
        path = parts.path
        if path:
            decoded = unquote_plus(path)
            cleaned = self.full.redact(decoded, _replace)
            if cleaned != decoded:
                path = quote(cleaned, safe="/:;=,+!$&'()*~")
        fragment = self.text(key, parts.fragment) if parts.fragment else ""
        out = urlunsplit((parts.scheme, netloc, path, query, fragment))
        if out == urlunsplit(parts):
            return value
        if self._hidden(out):
            out = urlunsplit((parts.scheme, netloc, "/", "", ""))
        self.note(key, "redacted")
        return out

    def pseudonym(self, key: str, value: Any) -> Any:
        if value is None or value == "":
            return value
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.note(key, "dropped")
            return _DROP
        text = str(value)
        if text.startswith(("pg1.h.", "$device:")):  # a pseudonym already; a device id
            return value
        pseudonymizer = self.rules.pseudonymizer
        if pseudonymizer is None or text.startswith("pg1."):
            self.note(key, "dropped")
            return _DROP
        self.note(key, "pseudonymized")
        return pseudonymizer.pseudonymize(
            text, tenant=self.rules.tenant, namespace=self.rules.namespace
        )

    def ip(self, key: str, value: Any) -> Any:
        if value in ("", None, 0, "0"):
            return value
        if self.rules.ip is IpHandling.TRUNCATE and isinstance(value, str):
            truncated = _truncate_ip(value)
            if truncated is not None:
                self.note(key, "truncated")
                return truncated
        self.note(key, "dropped")
        return _DROP

    def value(self, key: str, value: Any) -> Any:
        """One field: by what its key says, else by what the value looks like."""
        action = _action(key)
        if action == _REMOVE:
            self.note(key, "dropped")
            return _DROP
        if action == _ID:
            return self.pseudonym(key, value)
        if action == _IP:
            return self.ip(key, value)
        if isinstance(value, str):
            if action == _URL or value[:8].lower().startswith(("http://", "https://")):
                return self.url(key, value)
            return self.text(key, value, technical=action == _TECH)
        if isinstance(value, dict | list):
            return self.json(value, key)
        return value

    # -- flat parameters (query strings, form bodies, gtag.js lines) ----------------------
    def pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "em" and self.kind is _K.GA4_COLLECT:
                if self.rules.ad_user_data and _EM.fullmatch(value):
                    out.append((key, value))
                else:
                    self.note(key, "dropped")
                continue
            if key == "data" and self.kind is _K.MIXPANEL:
                out.append((key, self.mixpanel_data(value)))
                continue
            new = self.value(key, value)
            if new is not _DROP:
                out.append((key, new))
        return out

    def form(self, text: str) -> str:
        lines = re.split(r"(\r?\n)", text)
        for i in range(0, len(lines), 2):
            if lines[i]:
                original = _pairs(lines[i])
                cleaned = self.pairs(original)
                if cleaned != original:
                    lines[i] = _encode(cleaned)
        return "".join(lines)

    def mixpanel_data(self, raw: str) -> str:
        doc = _decode_data(raw)
        if doc is None:
            return raw  # the final check judges what cannot be read
        cleaned = self.document(doc)
        text = json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False)
        if raw.strip()[:1] in ("[", "{"):
            return text
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    # -- JSON ---------------------------------------------------------------------------------
    def document(self, doc: Any) -> Any:
        self.root = doc
        out = self.json(doc, "")
        return {} if out is _DROP else out

    def json(self, obj: Any, parent: str) -> Any:
        if isinstance(obj, list):
            return [x for x in (self.json_item(parent, v) for v in obj) if x is not _DROP]
        if not isinstance(obj, dict):
            return self.json_item(parent, obj)
        out: dict[Any, Any] = {}
        for key, val in obj.items():
            if not isinstance(key, str):
                out[key] = val
                continue
            if key == "user_data" and self.kind is _K.GA4_MEASUREMENT_PROTOCOL:
                new = self.user_data(val)
            elif key == "identityMap" and isinstance(val, dict):
                new = self.identity_map(val)
            else:
                new = self.value(key, val)
            if new is not _DROP:
                out[key] = new
        return out

    def json_item(self, parent: str, value: Any) -> Any:
        if isinstance(value, dict | list):
            return self.json(value, parent)
        if isinstance(value, str):
            return self.value(parent, value) if parent else self.text("item", value)
        return value

    def user_data(self, value: Any) -> Any:
        consent = self.root.get("consent") if isinstance(self.root, dict) else None
        granted = isinstance(consent, dict) and consent.get("ad_user_data") == "GRANTED"
        if not (self.rules.ad_user_data and granted):
            self.note("user_data", "dropped")
            return _DROP
        kept = _sha256_only(value)
        if kept != value:
            self.note("user_data", "unhashed_dropped")
        return kept

    def identity_map(self, value: dict[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for namespace, entries in value.items():
            ns = str(namespace).lower()
            if "email" in ns or "phone" in ns:
                self.note(f"identityMap.{namespace}", "dropped")
                continue
            if ns == "ecid" or not isinstance(entries, list):
                out[namespace] = self.json(entries, "ecid")
                continue
            kept = []
            for entry in entries:
                if isinstance(entry, dict) and "id" in entry:
                    pid = self.pseudonym(f"identityMap.{namespace}", entry["id"])
                    if pid is _DROP:
                        continue
                    entry = {**entry, "id": pid}
                kept.append(entry)
            out[namespace] = kept
        return out


def _encode(pairs: list[tuple[str, str]]) -> str:
    # Adobe's context data markers (c. … .c) have no value and no "=".
    return "&".join(
        quote(k, safe=".")
        if not v and (k.endswith(".") or k.startswith("."))
        else f"{quote(k, safe='')}={quote(v, safe='')}"
        for k, v in pairs
    )


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _DROP


_FORM_KINDS: Final = frozenset(
    {
        _K.GA4_COLLECT,
        _K.UA_COLLECT,
        _K.ADOBE_APPMEASUREMENT,
        _K.MIXPANEL,
    }
)


def _form_typed(request: httpx.Request) -> bool:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media in ("application/x-www-form-urlencoded", "text/plain")


def scrub(hit: AnalyticsHit, rules: AnalyticsScrubRules | None = None) -> ScrubbedHit:
    """The hit with personal data taken out, or the reason it must not be sent.

    Reasons: ``personal_data:email`` / ``personal_data:card`` (still there after
    scrubbing: a shape privguard cannot take apart), ``unreadable_body`` (compressed in
    a way privguard cannot undo, too large, or not read).
    """
    rules = rules or AnalyticsScrubRules()
    request = hit.request
    work = _Scrub(rules, hit)
    body = _content(request)
    if body is None:
        return ScrubbedHit(None, "unreadable_body")
    encoding = request.headers.get("content-encoding")
    inflated = _inflate(body, encoding) if encoding else body
    if inflated is None or len(inflated) > MAX_BODY:
        return ScrubbedHit(None, "unreadable_body")

    url = request.url
    query = url.query.decode("ascii", "replace")
    new_query = query
    if query:
        original = _pairs(query)
        pairs = [(k, v) for k, v in original if not (hit.kind is _K.MIXPANEL and k == "ip")]
        cleaned = work.pairs(pairs)
        if hit.kind is _K.MIXPANEL:
            cleaned.append(("ip", "0"))  # Mixpanel: do not geolocate from the sender's IP
        if cleaned != original:
            new_query = _encode(cleaned)
    elif hit.kind is _K.MIXPANEL:
        new_query = "ip=0"

    new_body = inflated
    if inflated:
        text = inflated.decode("utf-8", "replace")
        stripped = text.lstrip()
        if stripped[:1] in ("[", "{"):
            doc = _json_or_none(text)
            if doc is not _DROP:
                cleaned_doc = work.document(doc)
                if cleaned_doc != doc:
                    new_body = json.dumps(
                        cleaned_doc, separators=(",", ":"), ensure_ascii=False
                    ).encode()
        elif hit.kind in _FORM_KINDS or _form_typed(request):
            cleaned_text = work.form(text)
            if cleaned_text != text:
                new_body = cleaned_text.encode("utf-8")

    new_url = url if new_query == query else url.copy_with(query=new_query.encode("ascii"))
    if new_url is url and new_body is body:
        out = request
    else:
        drop = {"content-length"} | ({"content-encoding"} if encoding else set())
        headers = [
            (k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in drop
        ]
        out = httpx.Request(
            request.method,
            new_url,
            headers=headers,
            content=new_body,
            extensions=request.extensions,
        )
    leftover = leftover_personal_data(str(out.url), new_body)
    if leftover is not None:
        return ScrubbedHit(None, f"personal_data:{leftover}", tuple(work.changes))
    return ScrubbedHit(out, None, tuple(work.changes))


_BASE64: Final = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _base64_text(value: str) -> str | None:
    """What a base64 value says, if it is base64 of UTF-8 text (Mixpanel's ``data``)."""
    value = value.strip()
    if not _BASE64.fullmatch(value):
        return None
    padded = value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded).decode("utf-8")
        except (ValueError, binascii.Error):
            continue
    return None


def leftover_personal_data(url: str, body: bytes) -> str | None:
    """``"email"`` or ``"card"`` if either is anywhere in a request, however encoded
    (percent-encoding, base64 in ``data``, JSON escapes), else ``None``."""
    scanner = _strict_scanner()
    texts = [url]
    if body:
        text = body.decode("utf-8", "replace")
        texts.append(text)
        doc = _json_or_none(text) if text.lstrip()[:1] in ("[", "{") else _DROP
        if doc is not _DROP:
            texts.append(json.dumps(doc, ensure_ascii=False))
    query = urlsplit(url).query
    for source in (query, *texts[1:2]):
        for _, value in _pairs(source):
            decoded_text = _base64_text(value)
            if decoded_text is not None:
                texts.append(decoded_text)
    for text in texts:
        for variant in _decodings(text):
            findings = scanner.scan(variant)
            if findings:
                return findings[0].kind
    return None


def _first_user_id(doc: Any) -> str | None:
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if not isinstance(item, dict):
            continue
        for source in (item, item.get("properties")):
            if not isinstance(source, dict):
                continue
            for key in ("user_id", "$user_id", "$distinct_id", "distinct_id"):
                value = source.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                    text = str(value)
                    if not text.startswith("$device:"):
                        return text
        identities = (
            item.get("xdm", {}).get("identityMap") if isinstance(item.get("xdm"), dict) else None
        )
        if isinstance(identities, dict):
            # A CRM id before an e-mail or phone namespace; the cookie's ECID never.
            ranked = sorted(
                (k for k in identities if str(k).lower() != "ecid"),
                key=lambda k: any(w in str(k).lower() for w in ("email", "phone")),
            )
            for namespace in ranked:
                entries = identities[namespace]
                for entry in entries if isinstance(entries, list) else ():
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        return str(entry["id"])
        events = item.get("events")
        if isinstance(events, list):
            found = _first_user_id(events)
            if found is not None:
                return found
    return None


def user_id_of(hit: AnalyticsHit) -> str | None:
    """The user id a hit names, as the host sent it (before scrubbing): for an
    ``AnalyticsGuardTransport(subject_of=...)`` that maps it to a subject."""
    request = hit.request
    body = _content(request) or b""
    encoding = request.headers.get("content-encoding")
    body = (_inflate(body, encoding) if encoding else body) or b""
    text = body.decode("utf-8", "replace")
    flat = _pairs(request.url.query.decode("ascii", "replace"))
    for line in text.splitlines()[:50]:
        if line and line.lstrip()[:1] not in ("[", "{"):
            flat.extend(_pairs(line))
    for key, value in flat:
        if key in ("uid", "vid", "user_id") and value:
            return value
        if key == "data" and hit.kind is _K.MIXPANEL:
            found = _first_user_id(_decode_data(value))
            if found is not None:
                return found
    if text.lstrip()[:1] in ("[", "{"):
        doc = _json_or_none(text)
        if doc is not _DROP:
            return _first_user_id(doc)
    return None
