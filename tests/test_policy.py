"""The policy: immutable, validated when built, most specific rule wins, versions chain."""

from __future__ import annotations

import pytest

from privguard import (
    ANY_PURPOSE,
    Basis,
    Categories,
    ConsentLedger,
    Decider,
    MemoryStore,
    Operator,
    Policy,
    PolicyError,
    Protection,
    Purposes,
    Reason,
    RecipientKind,
    Rule,
    Scope,
    Subject,
    SubjectKind,
    Taxonomy,
    UnknownCategory,
    UnknownPurpose,
    UnknownRecipientKind,
)

BC = (SubjectKind.BUSINESS_CONTACT,)
VIS = (SubjectKind.VISITOR,)
CONTACT = Subject.business_contact("bc-1", tenant="acme")
VISITOR = Subject.visitor("v-1", jurisdiction="US")
CUSTOMER = Subject.customer("c-1", tenant="acme", jurisdiction="US")


def small_policy(version: str = "v1") -> Policy:
    return Policy(
        [
            Rule(ANY_PURPOSE, Basis.CONSENT, BC),
            Rule(Purposes.SERVICE, Basis.CONTRACT, BC, recipients=(RecipientKind.PROCESSOR,)),
            Rule(Purposes.SHARING, Basis.CONSENT, BC, recipients=tuple(RecipientKind)),
            Rule(Purposes.SALE, Basis.FORBIDDEN, BC),
            Rule(Purposes.ANALYTICS, Basis.LEGITIMATE_INTEREST, VIS),
        ],
        version=version,
        protections=[Protection(Categories.CARD, readable_by=(RecipientKind.PAYMENT_PROCESSOR,))],
        name="small",
    )


def decider(policy: Policy) -> Decider:
    return Decider(policy, ConsentLedger(MemoryStore(), policy))


class TestImmutable:
    @pytest.mark.parametrize(
        "attribute", ["version", "rules", "protections", "taxonomy", "previous", "name"]
    )
    def test_attributes_cannot_be_set(self, attribute: str) -> None:
        policy = small_policy()
        before = getattr(policy, attribute)
        with pytest.raises(AttributeError):
            setattr(policy, attribute, None)
        assert getattr(policy, attribute) is before

    def test_attributes_cannot_be_deleted_or_added(self) -> None:
        policy = small_policy()
        with pytest.raises(AttributeError):
            del policy.version
        with pytest.raises(AttributeError):
            setattr(policy, "extra", 1)  # noqa: B010

    def test_the_shared_default_policy_cannot_be_changed(self) -> None:
        policy = Policy.default()
        with pytest.raises(AttributeError):
            setattr(policy, "version", "tampered")  # noqa: B010
        assert Policy.default() is policy
        assert policy.version == "2019-12-17"

    def test_rules_and_protections_are_tuples_detached_from_the_input(self) -> None:
        rules = [Rule(Purposes.SERVICE, Basis.CONTRACT)]
        policy = Policy(rules, version="v1")
        rules.append(Rule(Purposes.SALE, Basis.FORBIDDEN))
        assert isinstance(policy.rules, tuple)
        assert isinstance(policy.protections, tuple)
        assert len(policy.rules) == 1

    def test_rules_are_frozen(self) -> None:
        rule = Rule(
            Purposes.MARKETING, Basis.LEGITIMATE_INTEREST, jurisdictions={"EEA": Basis.CONSENT}
        )
        with pytest.raises(AttributeError):
            rule.basis = Basis.CONTRACT  # type: ignore[misc]
        with pytest.raises(TypeError):
            rule.jurisdictions["US"] = Basis.CONSENT  # type: ignore[index]

    def test_rule_fields_are_normalised(self) -> None:
        rule = Rule(
            Purposes.MARKETING,
            "legitimate_interest",  # type: ignore[arg-type]
            "visitor",  # type: ignore[arg-type]
            categories=Categories.EMAIL,  # type: ignore[arg-type]
            recipients=["processor"],  # type: ignore[arg-type]
            jurisdictions={"eea": "consent"},  # type: ignore[dict-item]
        )
        assert rule.basis is Basis.LEGITIMATE_INTEREST
        assert rule.subject_kinds == (SubjectKind.VISITOR,)
        assert rule.categories == (Categories.EMAIL,)
        assert rule.recipients == (RecipientKind.PROCESSOR,)
        assert dict(rule.jurisdictions) == {"EEA": Basis.CONSENT}


class TestValidatedWhenBuilt:
    def test_unknown_purpose(self) -> None:
        with pytest.raises(UnknownPurpose):
            Policy([Rule("marketing.telepathy", Basis.CONSENT)], version="v1")

    def test_unknown_category(self) -> None:
        with pytest.raises(UnknownCategory):
            Policy(
                [Rule(Purposes.SERVICE, Basis.CONTRACT, categories=("user.contact.emial",))],
                version="v1",
            )

    def test_a_purpose_is_not_a_category(self) -> None:
        with pytest.raises(UnknownCategory):
            Policy(
                [Rule(Purposes.SERVICE, Basis.CONTRACT, categories=(Purposes.ANALYTICS,))],
                version="v1",
            )

    def test_unknown_recipient_kind(self) -> None:
        with pytest.raises(UnknownRecipientKind) as info:
            Rule(Purposes.SHARING, Basis.CONSENT, recipients=("data_broker",))  # type: ignore[arg-type]
        assert info.value.kind == "data_broker"

    def test_unknown_subject_kind(self) -> None:
        with pytest.raises(PolicyError, match="purpose"):
            Rule(Purposes.SERVICE, Basis.CONTRACT, ("robot",))  # type: ignore[arg-type]

    def test_no_subject_kind(self) -> None:
        with pytest.raises(PolicyError, match="no subject kind"):
            Rule(Purposes.SERVICE, Basis.CONTRACT, ())

    def test_unknown_basis(self) -> None:
        with pytest.raises(PolicyError):
            Rule(Purposes.SERVICE, "vibes")  # type: ignore[arg-type]
        with pytest.raises(PolicyError):
            Rule(Purposes.SERVICE, Basis.CONTRACT, jurisdictions={"EEA": "vibes"})  # type: ignore[dict-item]

    def test_duplicate_rule_for_the_same_kind_and_purpose(self) -> None:
        with pytest.raises(PolicyError, match="two rules"):
            Policy(
                [
                    Rule(Purposes.SERVICE, Basis.CONTRACT),  # every kind
                    Rule(Purposes.SERVICE, Basis.CONSENT, BC),
                ],
                version="v1",
            )

    def test_the_same_purpose_for_different_kinds_is_fine(self) -> None:
        policy = Policy(
            [
                Rule(Purposes.SERVICE, Basis.CONTRACT, BC),
                Rule(Purposes.SERVICE, Basis.LEGITIMATE_INTEREST, VIS),
            ],
            version="v1",
        )
        assert len(policy.rules) == 2

    def test_consent_scope_without_consent_basis(self) -> None:
        with pytest.raises(PolicyError, match="consent_scope needs consent"):
            Rule(Purposes.EXHIBITOR_DISCLOSURE, Basis.CONTRACT, consent_scope=("event",))

    def test_consent_scope_with_a_consent_override_is_fine(self) -> None:
        rule = Rule(
            Purposes.MARKETING,
            Basis.LEGITIMATE_INTEREST,
            consent_scope=("event",),
            jurisdictions={"EEA": Basis.CONSENT},
        )
        assert rule.consent_scope == ("event",)

    @pytest.mark.parametrize("key", ["", "event id", "event-id", "1event", "a;b"])
    def test_bad_scope_keys(self, key: str) -> None:
        with pytest.raises(PolicyError, match="scope key"):
            Policy(
                [Rule(Purposes.EXHIBITOR_DISCLOSURE, Basis.CONSENT, consent_scope=(key,))],
                version="v1",
            )
        with pytest.raises(PolicyError, match="scope key"):
            Policy(
                [Rule(Purposes.EVENT_COMMUNICATIONS, Basis.CONTRACT, bind_scope=(key,))],
                version="v1",
            )

    def test_protection_on_unknown_category(self) -> None:
        with pytest.raises(UnknownCategory):
            Policy([], version="v1", protections=[Protection("user.financial.cvv")])

    def test_protection_readable_by_unknown_recipient_kind(self) -> None:
        with pytest.raises(UnknownRecipientKind):
            Protection(Categories.CARD, readable_by=("card_collector",))  # type: ignore[arg-type]

    def test_protection_with_unknown_operator(self) -> None:
        with pytest.raises(PolicyError, match="operator"):
            Protection(Categories.CARD, "shred")  # type: ignore[arg-type]

    @pytest.mark.parametrize("version", ["", None, 3])
    def test_empty_or_missing_version(self, version: object) -> None:
        with pytest.raises(PolicyError, match="version"):
            Policy([], version=version)  # type: ignore[arg-type]

    def test_a_host_taxonomy_is_used_for_validation(self) -> None:
        taxonomy = Taxonomy.default().extend(
            categories={"user.content.badge_scan": "Badge scans"},
            purposes={"essential.service.badge_printing": "Print badges"},
        )
        rule = Rule(
            "essential.service.badge_printing",
            Basis.CONTRACT,
            categories=("user.content.badge_scan",),
        )
        policy = Policy([rule], version="v1", taxonomy=taxonomy)
        assert policy.taxonomy is taxonomy
        with pytest.raises(UnknownPurpose):
            Policy([rule], version="v1")

    def test_all_errors_are_policy_errors(self) -> None:
        for exc in (UnknownCategory, UnknownPurpose, UnknownRecipientKind):
            assert issubclass(exc, PolicyError)


class TestMostSpecificRuleWins:
    def test_a_rule_on_a_parent_purpose_covers_its_children(self) -> None:
        policy = small_policy()
        compiled = policy.rule_for(SubjectKind.BUSINESS_CONTACT, Purposes.PARTNER_SHARING)
        assert compiled is not None
        assert compiled.rule.purpose == Purposes.SHARING
        assert compiled.purpose == Purposes.PARTNER_SHARING

    def test_a_child_rule_beats_its_parent(self) -> None:
        policy = small_policy()
        compiled = policy.rule_for(SubjectKind.BUSINESS_CONTACT, Purposes.SALE)
        assert compiled is not None
        assert compiled.rule.basis is Basis.FORBIDDEN

    def test_a_parent_rule_beats_any_purpose(self) -> None:
        compiled = small_policy().rule_for(
            SubjectKind.BUSINESS_CONTACT, Purposes.EVENT_COMMUNICATIONS
        )
        assert compiled is not None
        assert compiled.rule.purpose == Purposes.SERVICE

    def test_any_purpose_is_the_fallback(self) -> None:
        compiled = small_policy().rule_for(SubjectKind.BUSINESS_CONTACT, Purposes.MARKETING_EMAIL)
        assert compiled is not None
        assert compiled.rule.purpose == ANY_PURPOSE
        assert compiled.rule.basis is Basis.CONSENT

    def test_without_a_rule_nothing_is_allowed(self) -> None:
        policy = small_policy()
        assert policy.rule_for(SubjectKind.CUSTOMER, Purposes.SERVICE) is None
        assert policy.rule_for(SubjectKind.VISITOR, Purposes.SERVICE) is None

    def test_as_decisions(self) -> None:
        d = decider(small_policy())
        event = d.check(CONTACT, Purposes.EVENT_COMMUNICATIONS)
        assert event.allowed  # the service rule covers it: no bind_scope in this policy
        assert event.basis is Basis.CONTRACT
        assert d.check(CONTACT, Purposes.SERVICE).allowed
        assert d.check(CONTACT, Purposes.SALE).reason is Reason.FORBIDDEN
        partner = d.check(CONTACT, Purposes.PARTNER_SHARING, recipient="partner")
        assert partner.reason is Reason.CONSENT_MISSING
        assert partner.basis is Basis.CONSENT
        assert d.check(CONTACT, Purposes.MARKETING_EMAIL).reason is Reason.CONSENT_MISSING
        assert d.check(VISITOR, Purposes.ANALYTICS_REPORTING).allowed
        assert d.check(VISITOR, Purposes.SERVICE).reason is Reason.NO_RULE
        assert d.check(CUSTOMER, Purposes.SERVICE).reason is Reason.NO_RULE

    def test_categories_of_a_rule_cover_their_children(self) -> None:
        policy = Policy(
            [Rule(Purposes.SERVICE, Basis.CONTRACT, categories=(Categories.CONTACT,))],
            version="v1",
        )
        kind = SubjectKind.BUSINESS_CONTACT
        got = policy.permitted_categories(
            kind, Purposes.SERVICE, [Categories.EMAIL, Categories.ADDRESS, Categories.CARD]
        )
        assert got == (Categories.EMAIL, Categories.ADDRESS)
        d = decider(policy)
        denied = d.check(CONTACT, Purposes.SERVICE, [Categories.EMAIL, Categories.CARD])
        assert denied.reason is Reason.CATEGORY_NOT_PERMITTED
        assert denied.denied_categories == (Categories.CARD,)

    def test_permitted_categories_of_a_forbidden_purpose_is_empty(self) -> None:
        policy = small_policy()
        kind = SubjectKind.BUSINESS_CONTACT
        assert policy.permitted_categories(kind, Purposes.SALE, [Categories.EMAIL]) == ()
        with pytest.raises(UnknownPurpose):
            policy.permitted_categories(kind, "marketing.telepathy", [Categories.EMAIL])

    def test_jurisdiction_overrides_most_specific_first(self) -> None:
        policy = Policy(
            [
                Rule(
                    Purposes.MARKETING,
                    Basis.LEGITIMATE_INTEREST,
                    VIS,
                    jurisdictions={"EEA": Basis.CONSENT, "DE": Basis.FORBIDDEN},
                )
            ],
            version="v1",
        )
        d = decider(policy)
        fr = Subject.visitor("v", jurisdiction="FR")
        de = Subject.visitor("v", jurisdiction="DE")
        us = Subject.visitor("v", jurisdiction="US")
        assert d.check(fr, Purposes.MARKETING_EMAIL).reason is Reason.CONSENT_MISSING
        assert d.check(de, Purposes.MARKETING_EMAIL).reason is Reason.FORBIDDEN
        assert d.check(us, Purposes.MARKETING_EMAIL).allowed

    def test_obligations_apply_to_everyone_but_the_named_readers(self) -> None:
        policy = small_policy()
        card = policy.protections[0]
        assert card.operator is Operator.MASK
        assert policy.obligations_for(RecipientKind.PAYMENT_PROCESSOR) == ()
        assert policy.obligations_for(RecipientKind.EXHIBITOR) == (card,)
        assert policy.obligations_for(None) == (card,)


class TestVersions:
    def test_revise_chains_versions(self) -> None:
        v1 = small_policy("v1")
        v2 = v1.revise(version="v2")
        v3 = v2.revise(version="v3")
        assert v3.previous is v2
        assert v2.previous is v1
        assert v1.previous is None
        assert v3.versions() == ("v3", "v2", "v1")
        assert v1.versions() == ("v1",)
        assert v3.at("v1") is v1
        assert v3.at("v3") is v3
        assert (v3.version_rank("v1"), v3.version_rank("v3")) == (0, 2)
        assert v3.version_rank("v0") == -1
        assert v3.version_rank(None) == -1

    def test_at_an_unknown_version(self) -> None:
        v2 = small_policy("v1").revise(version="v2")
        with pytest.raises(PolicyError, match="unknown policy version"):
            v2.at("v9")
        with pytest.raises(PolicyError):
            small_policy("v1").at("v2")  # later versions are not known to older ones

    def test_a_version_cannot_repeat(self) -> None:
        v2 = small_policy("v1").revise(version="v2")
        with pytest.raises(PolicyError, match="already exists"):
            v2.revise(version="v1")
        with pytest.raises(PolicyError, match="already exists"):
            v2.revise(version="v2")

    def test_revise_keeps_rules_protections_taxonomy_and_name(self) -> None:
        v1 = small_policy("v1")
        v2 = v1.revise(version="v2")
        assert v2.rules == v1.rules
        assert v2.protections == v1.protections
        assert v2.taxonomy is v1.taxonomy
        assert v2.name == v1.name

    def test_revise_replace_swaps_a_rule(self) -> None:
        v1 = small_policy("v1")
        v2 = v1.revise(
            version="v2", replace=[Rule(Purposes.SALE, Basis.CONSENT, BC, clauses=("X",))]
        )
        new = v2.rule_for(SubjectKind.BUSINESS_CONTACT, Purposes.SALE)
        old = v1.rule_for(SubjectKind.BUSINESS_CONTACT, Purposes.SALE)
        assert new is not None and old is not None
        assert (new.rule.basis, old.rule.basis) == (Basis.CONSENT, Basis.FORBIDDEN)
        assert len(v2.rules) == len(v1.rules)

    def test_replacing_a_rule_for_one_kind_keeps_it_for_the_others(self) -> None:
        default = Policy.default()
        v2 = default.revise(version="v2", replace=[Rule(Purposes.SALE, Basis.CONSENT, BC)])
        sale = {
            kind: v2.rule_for(kind, Purposes.SALE).rule.basis  # type: ignore[union-attr]
            for kind in SubjectKind
        }
        assert sale == {
            SubjectKind.BUSINESS_CONTACT: Basis.CONSENT,
            SubjectKind.CUSTOMER: Basis.FORBIDDEN,
            SubjectKind.VISITOR: Basis.FORBIDDEN,
        }
        d = decider(v2)
        assert d.check(VISITOR, Purposes.SALE).reason is Reason.FORBIDDEN

    def test_revise_with_new_rules_and_protections(self) -> None:
        v1 = small_policy("v1")
        v2 = v1.revise(
            version="v2",
            rules=[Rule(Purposes.SERVICE, Basis.CONTRACT)],
            protections=(),
        )
        assert len(v2.rules) == 1
        assert v2.protections == ()
        assert v2.rule_for(SubjectKind.VISITOR, Purposes.SALE) is None

    def test_revise_validates(self) -> None:
        with pytest.raises(UnknownPurpose):
            small_policy().revise(
                version="v2", replace=[Rule("marketing.telepathy", Basis.CONSENT)]
            )

    def test_revising_leaves_the_old_version_alone(self) -> None:
        v1 = small_policy("v1")
        rules = v1.rules
        v1.revise(version="v2", replace=[Rule(Purposes.SALE, Basis.CONSENT, BC)])
        assert v1.rules == rules
        assert v1.versions() == ("v1",)

    def test_decisions_name_the_policy_version(self) -> None:
        v2 = small_policy("v1").revise(version="v2")
        assert decider(v2).check(CONTACT, Purposes.SERVICE).policy_version == "v2"

    def test_repr_names_the_version(self) -> None:
        assert "version='v1'" in repr(small_policy("v1"))


class TestDefaultPolicy:
    def test_is_built_once_and_versioned_by_the_notice_date(self) -> None:
        assert Policy.default() is Policy.default()
        assert Policy.default().version == "2019-12-17"
        assert Policy.default().versions() == ("2019-12-17",)

    def test_card_data_is_readable_only_by_a_payment_processor(self) -> None:
        policy = Policy.default()
        guarded = {p.category for p in policy.obligations_for(RecipientKind.EXHIBITOR)}
        assert {Categories.CARD, Categories.CARD_SECURITY_CODE, Categories.BANK_ACCOUNT} <= guarded
        assert policy.obligations_for(RecipientKind.PAYMENT_PROCESSOR) == ()

    def test_every_rule_with_a_scope_is_consistent(self) -> None:
        for rule in Policy.default().rules:
            if rule.consent_scope:
                assert Basis.CONSENT in (rule.basis, *rule.jurisdictions.values())

    def test_scope_values_are_ids(self) -> None:
        with pytest.raises(PolicyError):
            Scope(event="")
        with pytest.raises(PolicyError):
            Scope(event="a;b")
