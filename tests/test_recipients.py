"""The recipient registry: validated when built, host patterns, exhibitors per event."""

from __future__ import annotations

import threading

import pytest

from privguard._errors import PolicyError, UnknownCategory, UnknownPurpose, UnknownRecipientKind
from privguard._recipients import HostPattern, Recipient, RecipientRegistry
from privguard._subject import Scope
from privguard._taxonomy import Categories as C
from privguard._taxonomy import Purposes as P
from privguard._taxonomy import RecipientKind as R
from privguard._taxonomy import Taxonomy

STRIPE = Recipient(
    "stripe",
    R.PAYMENT_PROCESSOR,
    hosts=["api.stripe.com"],
    purposes=[P.PAYMENT],
    categories=[C.NAME, C.EMAIL, C.FINANCIAL],
    agreement="DPA-2023-014",
)
MAILER = Recipient(
    "mailer",
    R.PROCESSOR,
    hosts=["*.mailer.example", "api.mailer.example/v3"],
    purposes=[P.SERVICE],
    categories=[C.NAME, C.EMAIL],
)
CRM = Recipient(
    "crm",
    R.AFFILIATE,
    hosts=["https://crm.example.com:8443/api"],
    purposes=[P.SERVICE],
    categories=[C.USER],
)


def registry() -> RecipientRegistry:
    return RecipientRegistry([STRIPE, MAILER, CRM])


class TestValidation:
    def test_unknown_purpose_category_or_kind_is_a_policy_error(self) -> None:
        with pytest.raises(UnknownPurpose):
            RecipientRegistry([Recipient("x", R.PROCESSOR, purposes=["nope"], categories=[C.NAME])])
        with pytest.raises(UnknownCategory):
            RecipientRegistry(
                [Recipient("x", R.PROCESSOR, purposes=[P.SERVICE], categories=["user.nope"])]
            )
        with pytest.raises(UnknownRecipientKind):
            Recipient("x", "broker", purposes=[P.SERVICE], categories=[C.NAME])  # type: ignore[arg-type]

    def test_purposes_and_categories_must_be_declared(self) -> None:
        with pytest.raises(PolicyError, match="no purpose"):
            Recipient("x", R.PROCESSOR, categories=[C.NAME])
        with pytest.raises(PolicyError, match="no data category"):
            Recipient("x", R.PROCESSOR, purposes=[P.SERVICE])

    def test_a_host_taxonomy_extension_is_honoured(self) -> None:
        taxonomy = Taxonomy.default().extend(categories={"user.content.badge_scan": "Badges"})
        badge = Recipient(
            "badges", R.PROCESSOR, purposes=[P.SERVICE], categories=["user.content.badge_scan"]
        )
        assert len(RecipientRegistry([badge], taxonomy=taxonomy)) == 1
        with pytest.raises(UnknownCategory):
            RecipientRegistry([badge])

    def test_names_and_patterns_are_unique(self) -> None:
        with pytest.raises(PolicyError, match="two recipients"):
            RecipientRegistry([STRIPE, STRIPE])
        twin = Recipient(
            "twin", R.PROCESSOR, hosts=["api.stripe.com"], purposes=[P.SERVICE], categories=["user"]
        )
        with pytest.raises(PolicyError, match="share the host pattern"):
            RecipientRegistry([STRIPE, twin])

    @pytest.mark.parametrize(
        "pattern",
        ["", "ftp://x.example", "*.com", "a..b", "host:99999", "x.example/a?b", "x.example/*", "*"],
    )
    def test_bad_host_patterns_are_refused(self, pattern: str) -> None:
        with pytest.raises(PolicyError):
            HostPattern.parse(pattern)

    def test_the_registry_is_immutable_apart_from_exhibitors(self) -> None:
        reg = registry()
        with pytest.raises(AttributeError):
            STRIPE.name = "other"  # type: ignore[misc]
        assert [r.name for r in reg] == ["stripe", "mailer", "crm"]
        with pytest.raises(TypeError):
            reg._static["x"] = STRIPE  # type: ignore[index]


class TestMatching:
    def test_exact_host(self) -> None:
        assert registry().match_url("https://api.stripe.com/v1/charges") == (STRIPE,)
        assert registry().match_url("https://API.Stripe.com./v1") == (STRIPE,)
        assert registry().match_url("https://evil.example/v1/charges") == ()
        assert registry().match_url("https://api.stripe.com.evil.example/") == ()

    def test_wildcard_matches_subdomains_not_the_bare_domain(self) -> None:
        reg = registry()
        assert reg.match_url("https://eu.mailer.example/send") == (MAILER,)
        assert reg.match_url("https://a.b.mailer.example/send") == (MAILER,)
        assert reg.match_url("https://mailer.example/send") == ()
        assert reg.match_url("https://notmailer.example/send") == ()

    def test_path_prefix_on_segment_boundaries(self) -> None:
        reg = registry()
        assert reg.match_url("https://api.mailer.example/v3") == (MAILER,)
        assert reg.match_url("https://api.mailer.example/v3/mail") == (MAILER,)
        # /v3x is not under /v3; but the wildcard *.mailer.example still matches the host.
        assert reg.match_url("https://api.mailer.example/v3x") == (MAILER,)
        only_path = Recipient(
            "p", R.PROCESSOR, hosts=["p.example/api"], purposes=[P.SERVICE], categories=["user"]
        )
        reg2 = RecipientRegistry([only_path])
        assert reg2.match_url("https://p.example/api/x") == (only_path,)
        assert reg2.match_url("https://p.example/apix") == ()
        assert reg2.match_url("https://p.example/") == ()

    def test_scheme_and_port(self) -> None:
        reg = registry()
        assert reg.match_url("https://crm.example.com:8443/api/leads") == (CRM,)
        assert reg.match_url("http://crm.example.com:8443/api/leads") == ()
        assert reg.match_url("https://crm.example.com/api/leads") == ()
        default = Recipient(
            "d", R.PROCESSOR, hosts=["d.example:443"], purposes=[P.SERVICE], categories=["user"]
        )
        assert RecipientRegistry([default]).match_url("https://d.example/") == (default,)

    def test_the_most_specific_pattern_wins(self) -> None:
        general = Recipient(
            "general",
            R.PROCESSOR,
            hosts=["*.example.org"],
            purposes=[P.SERVICE],
            categories=["user"],
        )
        leads = Recipient(
            "leads",
            R.AFFILIATE,
            hosts=["api.example.org/leads"],
            purposes=[P.SERVICE],
            categories=["user"],
        )
        api = Recipient(
            "api", R.PROCESSOR, hosts=["api.example.org"], purposes=[P.SERVICE], categories=["user"]
        )
        reg = RecipientRegistry([general, leads, api])
        assert reg.match_url("https://api.example.org/leads/1") == (leads,)
        assert reg.match_url("https://api.example.org/other") == (api,)
        assert reg.match_url("https://www.example.org/") == (general,)


class TestExhibitors:
    def test_register_per_event(self) -> None:
        reg = registry()
        acme = reg.register_exhibitor(event="E1", name="acme", hosts="leads.acme.example")
        assert acme.kind is R.EXHIBITOR
        assert acme.scope == Scope(event="E1", exhibitor="acme")
        assert acme.purposes == (P.EXHIBITOR_DISCLOSURE,)
        assert C.CARD not in acme.categories and acme.receives_category(C.EMAIL)
        assert reg.exhibitor("E1", "acme") is acme
        assert reg.is_registered(acme)
        assert reg.match_url("https://leads.acme.example/import") == (acme,)

    def test_same_exhibitor_at_two_events_is_told_apart_by_event(self) -> None:
        reg = registry()
        e1 = reg.register_exhibitor(event="E1", name="acme", hosts="leads.acme.example")
        e2 = reg.register_exhibitor(event="E2", name="acme", hosts="leads.acme.example")
        assert set(reg.match_url("https://leads.acme.example/")) == {e1, e2}
        assert reg.match_url("https://leads.acme.example/", event="E2") == (e2,)
        assert reg.exhibitors("E1") == (e1,)

    def test_two_exhibitors_of_one_event_cannot_share_a_host(self) -> None:
        reg = registry()
        reg.register_exhibitor(event="E1", name="acme", hosts="shared.example")
        with pytest.raises(PolicyError, match="share the host pattern"):
            reg.register_exhibitor(event="E1", name="globex", hosts="shared.example")
        assert [r.name for r in reg.exhibitors()] == ["acme"]  # nothing half-registered

    def test_unregister(self) -> None:
        reg = registry()
        acme = reg.register_exhibitor(event="E1", name="acme", hosts="leads.acme.example")
        reg.unregister_exhibitor(event="E1", name="acme")
        assert not reg.is_registered(acme)
        assert reg.match_url("https://leads.acme.example/") == ()
        with pytest.raises(PolicyError):
            reg.exhibitor("E1", "acme")

    def test_an_exhibitor_may_not_take_a_static_recipients_name(self) -> None:
        with pytest.raises(PolicyError, match="already registered"):
            registry().register_exhibitor(event="E1", name="stripe")

    def test_a_look_alike_recipient_is_not_registered(self) -> None:
        reg = registry()
        fake = Recipient(
            "stripe",
            R.PAYMENT_PROCESSOR,
            hosts=["evil.example"],
            purposes=[P.PAYMENT],
            categories=[C.FINANCIAL],
        )
        assert reg.is_registered(STRIPE)
        assert not reg.is_registered(fake)

    def test_registration_is_thread_safe(self) -> None:
        reg = registry()
        barrier = threading.Barrier(8)

        def work(n: int) -> None:
            barrier.wait()
            for i in range(50):
                reg.register_exhibitor(event=f"E{n}", name=f"x{i}", hosts=f"x{i}.e{n}.example")
                assert reg.match_url(f"https://x{i}.e{n}.example/")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(reg.exhibitors()) == 400
