"""What counts as an analytics vendor: collector hosts, loader scripts, cookie names.

One table, read by the HTML rewriter (loaders), the CSP builder (hosts a policy must
leave out), the cookie expiry (names) and the payload classifier (hosts).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = [
    "ADOBE_HOSTS",
    "COLLECTOR_HOSTS",
    "DEFAULT_ANALYTICS_COOKIES",
    "GA_HIT_HOSTS",
    "GA_HOSTS",
    "LOADERS",
    "MIXPANEL_API_HOSTS",
    "MIXPANEL_HOSTS",
    "AnalyticsVendor",
    "host_matches",
]


class AnalyticsVendor(StrEnum):
    GOOGLE_ANALYTICS = "google_analytics"
    ADOBE = "adobe"
    MIXPANEL = "mixpanel"


# Host suffixes: "google-analytics.com" matches the host itself and every subdomain.
#: Google Analytics: collectors and the tag loaders' host.
GA_HOSTS: Final = (
    "google-analytics.com",
    "analytics.google.com",
    "googletagmanager.com",
    "g.doubleclick.net",  # stats.g.doubleclick.net: GA with Google signals
)
#: Hosts that receive GA hits (the loader host serves scripts only).
GA_HIT_HOSTS: Final = (
    "google-analytics.com",
    "analytics.google.com",
    "g.doubleclick.net",
)
#: Adobe Analytics (AppMeasurement), Experience Platform Edge, the ECID service, Launch.
ADOBE_HOSTS: Final = (
    "omtrdc.net",
    "2o7.net",
    "adobedc.net",
    "demdex.net",
    "adobedtm.com",
)
#: Mixpanel's ingestion APIs: US, EU and India residency, and the JS endpoints.
MIXPANEL_API_HOSTS: Final = (
    "api.mixpanel.com",
    "api-js.mixpanel.com",
    "api-eu.mixpanel.com",
    "api-js-eu.mixpanel.com",
    "api-in.mixpanel.com",
    "api-js-in.mixpanel.com",
)
MIXPANEL_HOSTS: Final = ("mixpanel.com", "mxpnl.com")

#: Every host suffix a second Content-Security-Policy must leave out.
COLLECTOR_HOSTS: Final = (*GA_HOSTS, *ADOBE_HOSTS, *MIXPANEL_HOSTS)


def host_matches(host: str, suffixes: tuple[str, ...]) -> bool:
    """True when ``host`` is one of ``suffixes`` or a subdomain of one."""
    host = host.lower().rstrip(".")
    return any(host == s or host.endswith("." + s) for s in suffixes)


# Loader scripts, by name (AnalyticsConfig.remove_loaders picks among them). A pattern
# is searched in a script's URL attributes (src, data-src) and in inline script text.
LOADERS: Final[dict[str, re.Pattern[str]]] = {
    "gtag": re.compile(r"googletagmanager\.com/gtag/js|google-analytics\.com/gtag/js", re.I),
    "gtm": re.compile(r"googletagmanager\.com/gtm\.js", re.I),
    "analytics_js": re.compile(
        r"google-analytics\.com/(?:analytics|ga|urchin)(?:_debug)?\.js", re.I
    ),
    "appmeasurement": re.compile(r"AppMeasurement(?:_Module_\w+)?(?:\.min)?\.js", re.I),
    # The Web SDK's base code only queues calls: it stays, and with no library they
    # stay queued. Removing it would make the page's alloy(...) calls throw.
    "alloy": re.compile(r"/alloy(?:\.min)?\.js", re.I),
    "mixpanel": re.compile(
        r"cdn\.mxpnl\.com/libs/mixpanel|mixpanel-\d[\w.-]*\.js|MIXPANEL_CUSTOM_LIB_URL", re.I
    ),
}

#: Cookies analytics libraries set: expired for an opted-out person, never set for one.
DEFAULT_ANALYTICS_COOKIES: Final = (
    # Google Analytics (gtag.js, analytics.js, ga.js, server-side first-party id)
    "_ga",
    "_ga_*",
    "_gid",
    "_gat*",
    "_gac_*",
    "__utm*",
    "FPID",
    "FPLC",
    # Adobe Analytics, the Experience Cloud ID service and the Web SDK
    "s_cc",
    "s_sq",
    "s_vi",
    "s_fid",
    "s_ecid",
    "AMCV_*",
    "AMCVS_*",
    "kndctr_*",
    # Mixpanel
    "mp_*",
)
