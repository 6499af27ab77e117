"""Analytics without personal data, and an opt-out that holds (C21, C22, C23).

``_signals``: who is opted out and why (cookie, GPC, stored preference, DNT,
jurisdiction); the status in a ``ContextVar``. ``_html``: the head script and loader
removal. ``_csp``: the second Content-Security-Policy. ``_cookies``: analytics cookies.
``_middleware``: ``AnalyticsOptOutMiddleware``. ``_endpoints``: the opt-out app and
gpc.json. ``_payloads``: which requests are analytics hits and what they may carry.
``_transport``: ``AnalyticsGuardTransport`` for server-side calls. ``docs/analytics.md``
describes each layer and what it cannot cover.
"""

from ._collectors import AnalyticsVendor
from ._config import AnalyticsConfig, CspMode
from ._endpoints import analytics_app, gpc_endpoint
from ._middleware import AnalyticsOptOutMiddleware
from ._payloads import (
    AnalyticsHit,
    AnalyticsHitKind,
    AnalyticsScrubRules,
    IpHandling,
    ScrubbedHit,
    classify,
    scrub,
    user_id_of,
)
from ._signals import AnalyticsStatus, OptOutSignal, bound_analytics, current_analytics
from ._transport import AnalyticsGuardTransport, BlockedHit

__all__ = [
    "AnalyticsConfig",
    "AnalyticsGuardTransport",
    "AnalyticsHit",
    "AnalyticsHitKind",
    "AnalyticsOptOutMiddleware",
    "AnalyticsScrubRules",
    "AnalyticsStatus",
    "AnalyticsVendor",
    "BlockedHit",
    "CspMode",
    "IpHandling",
    "OptOutSignal",
    "ScrubbedHit",
    "analytics_app",
    "bound_analytics",
    "classify",
    "current_analytics",
    "gpc_endpoint",
    "scrub",
    "user_id_of",
]
