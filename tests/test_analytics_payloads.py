"""Which requests are analytics hits (by path and payload shape, not only host), and what
scrubbing leaves in them (C21)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import pytest

from privguard import (
    AnalyticsHitKind,
    AnalyticsScrubRules,
    AnalyticsVendor,
    Key,
    Keyring,
    PolicyError,
    Pseudonymizer,
    classify_hit,
    hit_user_id,
    scrub_hit,
)
from privguard._analytics._payloads import leftover_personal_data

GA = AnalyticsVendor.GOOGLE_ANALYTICS
ADOBE = AnalyticsVendor.ADOBE
MIXPANEL = AnalyticsVendor.MIXPANEL
K = AnalyticsHitKind


def mixpanel_data(events: Any) -> str:
    return base64.b64encode(json.dumps(events).encode()).decode()


MP_EVENT = [{"event": "x", "properties": {"token": "0123456789abcdef", "distinct_id": "d1"}}]
ENGAGE = mixpanel_data([{"$token": "t", "$distinct_id": "d"}])
EDGE_IDS = {"ECID": [{"id": "e"}], "Email": [{"id": "a@b.example"}], "CRMID": [{"id": "u-1"}]}


@pytest.mark.parametrize(
    ("method", "url", "body", "expected"),
    [
        # GA4 Measurement Protocol, on any Google Analytics host, and its debug endpoint.
        (
            "POST",
            "https://www.google-analytics.com/mp/collect?measurement_id=G-X1&api_secret=s",
            None,
            (GA, K.GA4_MEASUREMENT_PROTOCOL),
        ),
        (
            "POST",
            "https://region1.google-analytics.com/debug/mp/collect?measurement_id=G-X1",
            None,
            (GA, K.GA4_MEASUREMENT_PROTOCOL),
        ),
        (
            "POST",
            "https://region1.analytics.google.com/mp/collect",
            None,
            (GA, K.GA4_MEASUREMENT_PROTOCOL),
        ),
        # ... and on a first-party proxy when the query says so.
        (
            "POST",
            "https://sgtm.shop.example/mp/collect?measurement_id=G-X1&api_secret=s",
            None,
            (GA, K.GA4_MEASUREMENT_PROTOCOL),
        ),
        # gtag.js hits, wherever they go (server-side tagging uses custom paths).
        (
            "POST",
            "https://region1.google-analytics.com/g/collect?v=2&tid=G-ABC123&cid=1.2",
            None,
            (GA, K.GA4_COLLECT),
        ),
        (
            "POST",
            "https://stats.g.doubleclick.net/g/collect?v=2&tid=G-ABC123",
            None,
            (GA, K.GA4_COLLECT),
        ),
        (
            "GET",
            "https://data.shop.example/xyz/abc?v=2&tid=G-ABC123&cid=1.2&en=page_view",
            None,
            (GA, K.GA4_COLLECT),
        ),
        (
            "POST",
            "https://data.shop.example/g/collect",
            b"v=2&tid=G-ABC123&cid=1.2&en=x",
            (GA, K.GA4_COLLECT),
        ),
        # Universal Analytics.
        (
            "GET",
            "https://www.google-analytics.com/collect?v=1&tid=UA-1-1&cid=1",
            None,
            (GA, K.UA_COLLECT),
        ),
        (
            "POST",
            "https://www.google-analytics.com/batch",
            b"v=1&tid=UA-1-1&cid=1\nv=1&tid=UA-1-1&cid=2",
            (GA, K.UA_COLLECT),
        ),
        ("GET", "https://www.google-analytics.com/j/collect?v=1&_v=j101", None, (GA, K.UA_COLLECT)),
        ("GET", "https://www.google-analytics.com/r/collect", None, (GA, K.UA_COLLECT)),
        (
            "GET",
            "https://proxy.shop.example/anything?v=1&tid=UA-123-4&cid=1",
            None,
            (GA, K.UA_COLLECT),
        ),
        # Any other path on a collector host counts too (fail closed).
        ("GET", "https://www.google-analytics.com/something/new", None, (GA, K.OTHER)),
        # Adobe: /b/ss/ on any host (first-party CNAMEs), the Edge Network's /ee/v1, /ee/v2.
        (
            "GET",
            "https://shop.sc.omtrdc.net/b/ss/rsid/1/JS-2.3.0/s1?AQB=1&AQE=1",
            None,
            (ADOBE, K.ADOBE_APPMEASUREMENT),
        ),
        (
            "POST",
            "https://metrics.shop.example/b/ss/rsid/0",
            b"AQB=1&AQE=1",
            (ADOBE, K.ADOBE_APPMEASUREMENT),
        ),
        ("POST", "https://edge.adobedc.net/ee/v1/interact?configId=c", None, (ADOBE, K.ADOBE_EDGE)),
        (
            "POST",
            "https://edge.adobedc.net/ee/irl1/v1/collect?configId=c",
            None,
            (ADOBE, K.ADOBE_EDGE),
        ),
        ("POST", "https://edge.shop.example/ee/v2/interact", None, (ADOBE, K.ADOBE_EDGE)),
        ("GET", "https://dpm.demdex.net/id?d_orgid=x", None, (ADOBE, K.OTHER)),
        # Mixpanel: its API hosts, US, EU and India.
        ("POST", "https://api.mixpanel.com/track", None, (MIXPANEL, K.MIXPANEL)),
        ("POST", "https://api-js.mixpanel.com/engage/?verbose=1", None, (MIXPANEL, K.MIXPANEL)),
        ("POST", "https://api-eu.mixpanel.com/groups", None, (MIXPANEL, K.MIXPANEL)),
        ("POST", "https://api-in.mixpanel.com/import", None, (MIXPANEL, K.MIXPANEL)),
        # ... and a proxy with Mixpanel's payload shape.
        (
            "POST",
            "https://mp.shop.example/track",
            f"data={mixpanel_data(MP_EVENT)}".encode(),
            (MIXPANEL, K.MIXPANEL),
        ),
        (
            "POST",
            "https://mp.shop.example/lib/track",
            json.dumps(MP_EVENT).encode(),
            (MIXPANEL, K.MIXPANEL),
        ),
        ("GET", f"https://mp.shop.example/engage?data={ENGAGE}", None, (MIXPANEL, K.MIXPANEL)),
        # Not analytics.
        ("GET", "https://www.googletagmanager.com/gtag/js?id=G-ABC123", None, None),
        ("GET", "https://assets.adobedtm.com/launch-abc.min.js", None, None),
        ("POST", "https://shop.example/collect", b"items=3", None),
        ("POST", "https://shop.example/track", b'{"parcel": "1Z999"}', None),
        ("GET", "https://shop.example/orders?v=2&tid=T-1", None, None),
        ("POST", "https://api.payments.example/charge", b"{}", None),
    ],
)
def test_classify(method: str, url: str, body: bytes | None, expected: Any) -> None:
    hit = classify_hit(httpx.Request(method, url, content=body))
    if expected is None:
        assert hit is None
    else:
        assert hit is not None and (hit.vendor, hit.kind) == expected


def test_classify_an_unread_streaming_body_by_its_url() -> None:
    def body() -> Any:
        yield b"data=..."

    request = httpx.Request("POST", "https://api.mixpanel.com/track", content=body())
    hit = classify_hit(request)
    assert hit is not None and hit.endpoint == "track"
    assert scrub_hit(hit).blocked == "unreadable_body"


def scrubbed(url: str, **kwargs: Any) -> httpx.Request:
    hit = classify_hit(httpx.Request("POST", url, **kwargs))
    assert hit is not None
    result = scrub_hit(hit)
    assert result.request is not None, result.blocked
    return result.request


def test_a_clean_hit_is_sent_as_it_was() -> None:
    request = httpx.Request(
        "GET", "https://region1.google-analytics.com/g/collect?v=2&tid=G-ABC123&cid=1.2&en=x"
    )
    hit = classify_hit(request)
    assert hit is not None
    result = scrub_hit(hit)
    assert result.request is request and result.changes == ()


def test_changes_name_fields_and_actions_never_values() -> None:
    hit = classify_hit(
        httpx.Request(
            "GET",
            "https://www.google-analytics.com/collect",
            params={
                "v": "1",
                "tid": "UA-1-1",
                "cid": "1",
                "uid": "jane@example.com",
                "dt": "jane@example.com",
            },
        )
    )
    assert hit is not None
    result = scrub_hit(hit)
    assert result.changes == ("uid:dropped", "dt:redacted")
    assert "jane" not in repr(result.changes)


def test_page_urls_referrers_and_utm() -> None:
    sent = scrubbed(
        "https://www.google-analytics.com/collect",
        params={
            "v": "1",
            "tid": "UA-1-1",
            "cid": "1",
            "dl": "https://jane:hunter2@shop.example/u/jane.doe%40example.com/orders?first_name=Jane&utm_content=4111111111111111#mail=jane@example.com",
            "dr": "https://mail.example/?to=jane@example.com",
        },
    )
    dl = sent.url.params["dl"]
    assert dl.startswith("https://shop.example/u/")
    assert "jane" not in dl.lower() and "4111111111111111" not in dl and "hunter2" not in dl
    assert "utm_content=" in dl
    assert "jane" not in sent.url.params["dr"]


def test_adobe_context_data_markers_survive() -> None:
    sent = scrubbed(
        "https://shop.sc.omtrdc.net/b/ss/rsid/0",
        content=b"AQB=1&c.&a.&email=jane%40example.com&plan=pro&.a&.c&AQE=1",
    )
    assert sent.content == b"AQB=1&c.&a.&plan=pro&.a&.c&AQE=1"


def test_pseudonyms_are_stable_keyed_and_not_repseudonymised() -> None:
    keyring = Keyring([Key("k1", os.urandom(32))], primary="k1")
    rules = AnalyticsScrubRules(pseudonymizer=Pseudonymizer(keyring))
    other = AnalyticsScrubRules(
        pseudonymizer=Pseudonymizer(Keyring([Key("k1", os.urandom(32))], primary="k1"))
    )

    def uid(value: str, rules: AnalyticsScrubRules) -> str:
        hit = classify_hit(
            httpx.Request(
                "GET",
                "https://www.google-analytics.com/collect",
                params={"v": "1", "tid": "UA-1-1", "cid": "1", "uid": value},
            )
        )
        assert hit is not None
        result = scrub_hit(hit, rules)
        assert result.request is not None
        return result.request.url.params["uid"]

    first = uid("u-42", rules)
    assert first.startswith("pg1.h.k1.") and first == uid("u-42", rules)
    assert first != uid("u-43", rules) and first != uid("u-42", other)
    assert uid(first, rules) == first  # already a pseudonym: left alone


def test_mixpanel_device_ids_and_json_data_are_kept_in_their_form() -> None:
    raw = json.dumps(
        [
            {
                "event": "x",
                "properties": {
                    "token": "t0123456789",
                    "distinct_id": "$device:abc",
                    "$referrer": "https://a.example/?e=jane@example.com",
                },
            }
        ]
    )
    sent = scrubbed("https://api.mixpanel.com/track", data={"data": raw})
    data = httpx.QueryParams(sent.content.decode())["data"]
    props = json.loads(data)[0]["properties"]  # JSON in, JSON out (not base64)
    assert props["distinct_id"] == "$device:abc"
    assert props["$referrer"] == "https://a.example/?e=%5Buser.contact.email%5D"
    assert sent.url.params["ip"] == "0"


def test_hit_user_id() -> None:
    cases = [
        httpx.Request("GET", "https://www.google-analytics.com/collect?v=1&tid=UA-1-1&uid=u-1"),
        httpx.Request(
            "POST",
            "https://www.google-analytics.com/mp/collect?measurement_id=G-X1",
            json={"user_id": "u-1"},
        ),
        httpx.Request(
            "POST",
            "https://api.mixpanel.com/track",
            data={"data": mixpanel_data([{"event": "x", "properties": {"distinct_id": "u-1"}}])},
        ),
        httpx.Request("POST", "https://api.mixpanel.com/engage", json=[{"$distinct_id": "u-1"}]),
        httpx.Request("GET", "https://x.sc.omtrdc.net/b/ss/r/1?vid=u-1"),
        httpx.Request(
            "POST",
            "https://edge.adobedc.net/ee/v1/interact",
            json={"events": [{"xdm": {"identityMap": EDGE_IDS}}]},
        ),
    ]
    for request in cases:
        hit = classify_hit(request)
        assert hit is not None and hit_user_id(hit) == "u-1", request.url
    anonymous = classify_hit(
        httpx.Request(
            "POST",
            "https://api.mixpanel.com/track",
            json=[{"properties": {"distinct_id": "$device:x"}}],
        )
    )
    assert anonymous is not None and hit_user_id(anonymous) is None


@pytest.mark.parametrize(
    ("url", "body", "found"),
    [
        ("https://a.example/?x=jane%2540example.com", b"", "email"),
        ("https://a.example/", b'{"x": "jane\\u0040example.com"}', "email"),
        ("https://a.example/", b"data=" + base64.b64encode(b"to jane@example.com"), "email"),
        ("https://a.example/", b"x=4111-1111-1111-1111", "card"),
        ("https://a.example/?cid=1234567890.1700000000&_p=1700000000123&sid=1700000000", b"", None),
        ("https://a.example/", b"AQB=1&t=26%2F10%2F2026%2014%3A37%3A18%204%200&AQE=1", None),
    ],
)
def test_leftover_personal_data(url: str, body: bytes, found: str | None) -> None:
    assert leftover_personal_data(url, body) == found


def test_rules_are_checked() -> None:
    with pytest.raises(PolicyError):
        AnalyticsScrubRules(ip="keep")  # type: ignore[arg-type]
    with pytest.raises(PolicyError):
        AnalyticsScrubRules(tenant="")
