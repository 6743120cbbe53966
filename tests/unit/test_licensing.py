"""The licensing domain without a database: the SKU catalogue, prerequisites, allowances and
which license pays for a call (R-10..R-15, R-30..R-38, R-50a)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.licensing import (
    DIALOUT_POOL,
    Allowance,
    Catalogue,
    allowances,
    check_change,
    check_location_change,
    effective,
    has_calling_plan,
    in_zone_a,
    is_domestic,
    is_free_call,
    paying_capabilities,
    pool_country,
)

PP = "MCOPSTNPP"
ADV = "MCOMEETADV"
ACPEA = "MCOMEETACPEA"
DIALOUT_US = "MCOMEETADD_DIALOUT_US"
EV = "MCOEV"
E5 = "SPE_E5"
ESSENTIALS = "MCOTEAMS_ESSENTIALS"
PLAN1 = "MCOPSTN1"
PLAN2 = "MCOPSTN2"
PAYG1 = "MCOPSTN_PAYG_1"
PAYG2 = "MCOPSTN_PAYG_2"


def s(*codes: str) -> frozenset[str]:
    return frozenset(codes)


def packaged_text() -> str:
    return (resources.files("commcredits") / "data" / "skus.toml").read_text(encoding="utf-8")


# --- the packaged catalogue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (ADV, "conferencing"),
        (ACPEA, "conferencing_payg"),
        (DIALOUT_US, "dialout"),
        (EV, "phone_system"),
        (PLAN1, "calling_plan"),
        (PLAN2, "calling_plan"),
        ("MCOPSTN5", "calling_plan"),
        ("MCOPSTN6", "calling_plan"),
        ("MCOPSTN8", "calling_plan"),
        (PAYG1, "payg_plan"),
        (PAYG2, "payg_plan"),
        (PP, "credits"),
        (E5, "bundle"),
        (ESSENTIALS, "bundle"),
    ],
)
def test_every_sku_of_the_rules_is_in_the_catalogue_with_its_kind(code: str, kind: str) -> None:
    sku = Catalogue.load().sku(code)  # RULES.md section 2
    assert sku.kind == kind
    assert sku.name


def test_the_packaged_catalogue_is_read_once() -> None:
    assert Catalogue.load() is Catalogue.load()


def test_only_communications_credits_have_unlimited_seats() -> None:
    catalogue = Catalogue.load()
    assert [code for code, sku in catalogue.skus.items() if sku.unlimited_seats] == [PP]
    assert catalogue.credits_sku == PP


def test_an_unknown_sku_is_refused_naming_the_sku_field() -> None:
    with pytest.raises(RuleViolation) as refused:
        Catalogue.load().sku("MCOPSTN99")
    assert (refused.value.code, refused.value.field) == ("unknown_sku", "sku")


@pytest.mark.parametrize(
    ("licenses", "expected"),
    [
        pytest.param(s(), s(), id="nothing"),
        pytest.param(s(PP), s(PP), id="a plain license is itself"),
        pytest.param(s(E5), s(E5, ADV, EV), id="E5 brings conferencing and Teams Phone"),
        pytest.param(s(ESSENTIALS), s(ESSENTIALS, EV, PLAN1), id="Essentials brings a plan"),
        pytest.param(s(E5, EV, PP), s(E5, ADV, EV, PP), id="overlap counted once"),
    ],
)
def test_effective_licenses_include_what_bundles_bring(
    licenses: frozenset[str], expected: frozenset[str]
) -> None:
    assert effective(licenses) == expected


def test_e5_alone_does_not_grant_communications_credits() -> None:
    assert PP not in effective({E5})


@pytest.mark.parametrize(
    ("licenses", "expected"),
    [
        (s(), False),
        (s(E5), False),
        (s(EV, PLAN1), True),
        (s(EV, PAYG2), True),
        (s(ESSENTIALS), True),
    ],
)
def test_has_calling_plan_looks_through_bundles(licenses: frozenset[str], expected: bool) -> None:
    assert has_calling_plan(licenses) is expected


# --- check_change: accepted changes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "add", "remove", "location", "expected"),
    [
        pytest.param(s(E5), [PP], [], "US", s(E5, PP), id="R-11 E5 user gets credits"),
        pytest.param(s(ADV), [PP], [], None, s(ADV, PP), id="R-11 conferencing, no location"),
        pytest.param(s(), [ACPEA, PP], [], None, s(ACPEA, PP), id="R-11 pay-per-minute pair"),
        pytest.param(s(EV, PLAN1), [PP], [], "US", s(EV, PLAN1, PP), id="R-11 phone and plan"),
        pytest.param(
            s(), [EV, PLAN1, PP], [], "US", s(EV, PLAN1, PP), id="R-11 prerequisites in one change"
        ),
        pytest.param(s(EV, PAYG2), [PP], [], "DE", s(EV, PAYG2, PP), id="R-11 PAYG plan counts"),
        pytest.param(s(ESSENTIALS), [PP], [], "US", s(ESSENTIALS, PP), id="R-11 through bundle"),
        pytest.param(s(E5), [PLAN2], [], "GB", s(E5, PLAN2), id="R-12 Teams Phone through E5"),
        pytest.param(s(EV), ["MCOPSTN5"], [], "GB", s(EV, "MCOPSTN5"), id="R-12 120 min in GB"),
        pytest.param(s(EV), ["MCOPSTN8"], [], "US", s(EV, "MCOPSTN8"), id="R-12 MCOPSTN8 in US"),
        pytest.param(s(EV), [PAYG1], [], "PR", s(EV, PAYG1), id="R-12 zone 1 for PR"),
        pytest.param(s(EV), [PAYG2], [], "DE", s(EV, PAYG2), id="R-12 zone 2 for DE"),
        pytest.param(s(EV, PLAN1), [EV], [], "US", s(EV, PLAN1), id="adding a held one: no-op"),
        pytest.param(s(EV), [], [PP], "US", s(EV), id="removing one not held: no-op"),
        pytest.param(s(E5, PP), [], [EV], "US", s(E5, PP), id="removing a bundled part: no-op"),
        pytest.param(s(E5), [EV], [], "US", s(E5, EV), id="a bundled part assigned directly"),
        pytest.param(s(EV, PLAN1), [], [EV, PLAN1], "US", s(), id="R-13 both in one change"),
        pytest.param(
            s(EV, PLAN1, PP), [], [PLAN1, PP], "US", s(EV), id="R-13 dependent removed too"
        ),
        pytest.param(s(E5, ADV, PP), [], [ADV], "US", s(E5, PP), id="R-13 still held through E5"),
        pytest.param(s(ADV, PP), [E5], [ADV], "US", s(E5, PP), id="R-13 replaced in one change"),
        pytest.param(
            s(EV, PLAN1, PP), [PLAN2], [PLAN1], "US", s(EV, PLAN2, PP), id="R-13 plan swapped"
        ),
        pytest.param(s(ACPEA, PP), [], [ACPEA, PP], None, s(), id="R-13 pair removed together"),
    ],
)
def test_license_changes_that_keep_every_prerequisite_are_accepted(
    current: frozenset[str],
    add: list[str],
    remove: list[str],
    location: str | None,
    expected: frozenset[str],
) -> None:
    assert check_change(current, add, remove, location) == expected


# --- check_change: refused changes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "add", "remove", "location", "code", "field", "named"),
    [
        pytest.param(
            s(EV), [PP], [], "US", "license_prerequisite_missing", "licenses",
            [PP, ADV, ACPEA, "calling plan"], id="R-11 Teams Phone alone is not enough",
        ),
        pytest.param(
            s(), [PP], [], "US", "license_prerequisite_missing", "licenses",
            [PP, ADV, ACPEA, EV], id="R-11 nothing to build on",
        ),
        pytest.param(
            s(), [ACPEA], [], None, "license_prerequisite_missing", "licenses",
            [ACPEA, PP], id="pay-per-minute conferencing needs credits",
        ),
        pytest.param(
            s(), [PLAN1], [], "US", "license_prerequisite_missing", "licenses",
            [PLAN1, EV], id="R-12 calling plan without Teams Phone",
        ),
        pytest.param(
            s(ADV), [PAYG1], [], "US", "license_prerequisite_missing", "licenses",
            [PAYG1, EV], id="R-12 PAYG plan without Teams Phone",
        ),
        pytest.param(
            s(EV), [PLAN1], [], None, "usage_location_required", "usage_location",
            [PLAN1], id="R-12 calling plan without usage location",
        ),
        pytest.param(
            s(), [ESSENTIALS], [], None, "usage_location_required", "usage_location",
            [PLAN1, ESSENTIALS], id="R-12 plan in a bundle without usage location",
        ),
        pytest.param(
            s(EV), ["MCOPSTN5"], [], "US", "plan_not_available_in_location", "add",
            ["MCOPSTN5", "US"], id="R-12 MCOPSTN5 not sold in the US",
        ),
        pytest.param(
            s(EV), ["MCOPSTN6"], [], "US", "plan_not_available_in_location", "add",
            ["MCOPSTN6", "US"], id="R-12 MCOPSTN6 not sold in the US",
        ),
        pytest.param(
            s(EV), [PAYG1], [], "DE", "plan_not_available_in_location", "add",
            [PAYG1, "DE", "zone 1"], id="R-12 zone 1 PAYG for a DE user",
        ),
        pytest.param(
            s(EV), [PAYG2], [], "US", "plan_not_available_in_location", "add",
            [PAYG2, "US", "zone 2"], id="R-12 zone 2 PAYG for a US user",
        ),
        pytest.param(
            s(EV, PLAN1), [], [EV], "US", "license_required_by_other", "remove",
            [EV, PLAN1], id="R-13 Teams Phone while its plan remains",
        ),
        pytest.param(
            s(ADV, PP), [], [ADV], "US", "license_required_by_other", "remove",
            [ADV, PP], id="R-13 conferencing that credits depend on",
        ),
        pytest.param(
            s(E5, PP), [], [E5], "US", "license_required_by_other", "remove",
            [E5, PP], id="R-13 the bundle credits depend on",
        ),
        pytest.param(
            s(EV, PLAN1, PP), [], [PLAN1], "US", "license_required_by_other", "remove",
            [PLAN1, PP], id="R-13 the plan credits depend on",
        ),
        pytest.param(
            s(ESSENTIALS, PP), [], [ESSENTIALS], "US", "license_required_by_other", "remove",
            [ESSENTIALS, PP], id="R-13 the phone bundle credits depend on",
        ),
        pytest.param(
            s(ACPEA, PP), [], [PP], None, "license_required_by_other", "remove",
            [PP, ACPEA], id="R-13 credits that pay-per-minute conferencing needs",
        ),
        pytest.param(
            s(EV), ["MCOPSTN99"], [], "US", "unknown_sku", "add",
            ["MCOPSTN99"], id="unknown SKU added",
        ),
        pytest.param(
            s(EV), [], ["NOT_A_SKU"], "US", "unknown_sku", "remove",
            ["NOT_A_SKU"], id="unknown SKU removed",
        ),
    ],
)  # fmt: skip
def test_license_changes_that_break_a_rule_are_refused_with_the_contract_code(
    current: frozenset[str],
    add: list[str],
    remove: list[str],
    location: str | None,
    code: str,
    field: str,
    named: list[str],
) -> None:
    with pytest.raises(RuleViolation) as refused:
        check_change(current, add, remove, location)
    assert (refused.value.code, refused.value.field) == (code, field)
    for word in named:
        assert word in refused.value.message


def test_a_sku_both_added_and_removed_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_change(s(EV), [PLAN1], [PLAN1], "US")
    assert refused.value.field == "remove"


def test_a_dependency_broken_before_the_change_does_not_block_unrelated_changes() -> None:
    # Our choice: only what the change itself breaks is refused.
    assert check_change(s(PP), [E5], [], "US") == s(PP, E5)
    assert check_change(s(PP), ["MCOEV"], [], "US") == s(PP, EV)


# --- usage-location changes (R-12) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("licenses", "location"),
    [
        pytest.param(s(EV, PLAN1), "GB", id="domestic plan moves anywhere"),
        pytest.param(s(EV, "MCOPSTN5"), "CA", id="120-minute plan outside the US"),
        pytest.param(s(EV, PAYG2), "FR", id="zone 2 within zone 2"),
        pytest.param(s(EV, PAYG1), "PR", id="zone 1 within zone 1"),
        pytest.param(s(E5, PP), None, id="no plan needs no location"),
        pytest.param(s(), None, id="no licenses"),
    ],
)
def test_a_usage_location_the_plans_allow_is_accepted(
    licenses: frozenset[str], location: str | None
) -> None:
    check_location_change(licenses, location)


@pytest.mark.parametrize(
    ("licenses", "location", "code"),
    [
        pytest.param(s(EV, "MCOPSTN5"), "US", "plan_not_available_in_location", id="into the US"),
        pytest.param(s(EV, PAYG1), "DE", "plan_not_available_in_location", id="out of zone 1"),
        pytest.param(s(EV, PAYG2), "GB", "plan_not_available_in_location", id="out of zone 2"),
        pytest.param(s(EV, PLAN1), None, "usage_location_required", id="plan loses location"),
        pytest.param(s(ESSENTIALS), None, "usage_location_required", id="bundled plan"),
    ],
)
def test_a_usage_location_the_plans_cannot_have_is_refused(
    licenses: frozenset[str], location: str | None, code: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        check_location_change(licenses, location)
    assert (refused.value.code, refused.value.field) == (code, "usage_location")


# --- allowances (R-12, R-31, R-32, R-35, R-38) ------------------------------------------------


@pytest.mark.parametrize(
    ("sku", "location", "expected"),
    [
        (PLAN1, "US", Allowance(3000, 0, 200, 0, pooled=True)),
        (PLAN1, "PR", Allowance(3000, 0, 200, 0, pooled=True)),
        (PLAN1, "CA", Allowance(3000, 0, 200, 0, pooled=True)),
        (PLAN1, "GB", Allowance(1200, 0, 200, 0, pooled=True)),
        (PLAN2, "US", Allowance(3000, 600, 200, 0, pooled=True)),
        (PLAN2, "DE", Allowance(1200, 600, 200, 0, pooled=True)),
        ("MCOPSTN5", "GB", Allowance(120, 0, 100, 0, pooled=True)),
        ("MCOPSTN6", "GB", Allowance(240, 0, 0, 0, pooled=True)),
        ("MCOPSTN8", "US", Allowance(120, 0, 0, 0, pooled=False)),
        (PAYG1, "US", Allowance(0, 0, 0, 0, pooled=True)),
        (PAYG2, "DE", Allowance(0, 0, 0, 0, pooled=True)),
        (ADV, "US", Allowance(0, 0, 0, 60, pooled=True)),
        (E5, "US", Allowance(0, 0, 0, 0, pooled=True)),
    ],
)
def test_allowances_follow_the_usage_location(sku: str, location: str, expected: Allowance) -> None:
    assert allowances(sku, location) == expected


@pytest.mark.parametrize(
    ("country", "pool"), [("PR", "US"), ("US", "US"), ("CA", "CA"), ("GB", "GB")]
)
def test_us_and_puerto_rico_share_one_pool(country: str, pool: str) -> None:
    assert pool_country(country) == pool


@pytest.mark.parametrize(
    ("user", "destination", "expected"),
    [
        ("US", "US", True),
        ("GB", "GB", True),
        ("US", "CA", True),
        ("CA", "US", True),
        ("US", "PR", True),
        ("PR", "US", True),
        ("CA", "PR", True),
        ("US", "GB", False),
        ("GB", "IE", False),
        ("DE", "AT", False),
        ("CA", "MX", False),
    ],
)
def test_domestic_means_the_same_country_or_within_north_america(
    user: str, destination: str, expected: bool
) -> None:
    assert is_domestic(user, destination) is expected


def test_zone_a_is_exactly_the_listed_countries() -> None:
    listed = [
        "AU", "AT", "BE", "BR", "BG", "CA", "CN", "HR", "CZ", "DK", "EE", "FI", "FR", "DE", "GR",
        "HK", "HU", "IN", "IE", "IT", "JP", "LU", "MY", "MX", "NL", "NZ", "NO", "PL", "PT", "PR",
        "RO", "RU", "SG", "SK", "SI", "ZA", "KR", "ES", "SE", "CH", "TW", "TH", "GB", "US",
    ]  # fmt: skip
    assert Catalogue.load().zone_a == frozenset(listed)
    assert in_zone_a("PR")
    assert not in_zone_a("AE")
    assert not in_zone_a("AR")


# --- which capabilities may pay (R-30..R-35, R-50a) --------------------------------------------


POOL = DIALOUT_POOL
WITH_US = s(ADV, DIALOUT_US, PP)
"""An organizer with Audio Conferencing, unlimited US/CA dial-out and credits."""


def case(
    licenses: frozenset[str],
    call_type: str,
    route: str,
    expected: tuple[str, ...],
    label: str,
    *,
    premium: bool = False,
    toll_free: bool = False,
) -> object:
    """One row: ``route`` is "user location>destination country", either side may be empty."""
    user, _, destination = route.partition(">")
    return pytest.param(
        licenses,
        call_type,
        user or None,
        destination or None,
        premium,
        toll_free,
        expected,
        id=label,
    )


@pytest.mark.parametrize(
    ("licenses", "call_type", "user", "destination", "premium", "toll_free", "expected"),
    [
        # outbound user calls draw on the plan's pool, then on credits.
        case(s(EV, PLAN1), "user_out", "US>US", (PLAN1,), "domestic, plan only"),
        case(s(EV, PLAN1, PP), "user_out", "US>US", (PLAN1, PP), "domestic, plan then credits"),
        case(s(EV, PLAN1, PP), "user_out", "US>CA", (PLAN1, PP), "US to CA is domestic"),
        case(s(EV, PLAN1, PP), "user_out", "PR>US", (PLAN1, PP), "PR to US is domestic"),
        case(s(EV, PLAN1, PP), "user_out", "US>GB", (PP,), "international on a domestic plan"),
        case(s(EV, PLAN1), "user_out", "US>GB", (), "international, no credits"),
        case(s(EV, PLAN2, PP), "user_out", "US>GB", (PLAN2, PP), "international pool of MCOPSTN2"),
        case(s(EV, PLAN2, PP), "user_out", "GB>GB", (PLAN2, PP), "MCOPSTN2 domestic pool"),
        case(s(EV, "MCOPSTN8", PP), "user_out", "GB>GB", ("MCOPSTN8", PP), "per-user plan"),
        case(s(EV, PAYG1, PP), "user_out", "US>US", (PP,), "PAYG always credits"),
        case(s(EV, PAYG1), "user_out", "US>US", (), "PAYG without credits"),
        case(s(ESSENTIALS, PP), "user_out", "US>US", (PLAN1, PP), "plan through a bundle"),
        case(s(E5, PP), "user_out", "US>US", (PP,), "no plan, credits"),
        case(s(E5), "user_out", "US>US", (), "no plan, no credits"),
        case(s(EV, PLAN1, PP), "user_out", ">US", (PP,), "no usage location"),
        case(s(EV, PLAN1, PP), "user_out", "US>", (PP,), "unknown destination"),
        case(s(EV, PLAN1, PP), "user_out_transfer", "US>US", (PLAN1, PP), "transfer"),
        case(s(EV, PLAN1, PP), "user_out_forwarding", "US>US", (PLAN1, PP), "forwarding"),
        case(s(EV, PLAN1, PP), "ucap_out", "US>US", (PLAN1, PP), "resource account"),
        # meeting dial-out is paid by the organizer's licenses.
        case(s(ADV, PP), "conf_out", "US>DE", (POOL, PP), "Zone A pool then credits"),
        case(s(ADV), "conf_out", "US>DE", (POOL,), "Zone A pool only"),
        case(s(ADV, PP), "conf_out", "US>AE", (PP,), "outside Zone A"),
        case(s(ADV, PP), "conf_out", "US>DE", (PP,), "premium never in the pool", premium=True),
        case(s(E5, PP), "conf_out", "GB>FR", (POOL, PP), "pool through E5"),
        case(WITH_US, "conf_out", "US>US", (DIALOUT_US, POOL, PP), "unlimited US first"),
        case(WITH_US, "conf_out", "DE>CA", (DIALOUT_US, POOL, PP), "unlimited CA first"),
        case(WITH_US, "conf_out", "US>GB", (POOL, PP), "unlimited US not for GB"),
        case(WITH_US, "conf_out", "US>US", (PP,), "premium US not unlimited", premium=True),
        case(s(ACPEA, PP), "conf_out", "US>DE", (ACPEA,), "pay-per-minute conferencing"),
        case(s(ADV, ACPEA, PP), "conf_out", "US>DE", (POOL, ACPEA), "pool then pay-per-minute"),
        case(s(ACPEA), "conf_out", "US>DE", (), "pay-per-minute without credits"),
        case(s(), "conf_out", "US>DE", (), "organizer without licenses"),
        # toll dial-in; R-34: toll-free numbers are charged to the balance.
        case(s(ADV), "conf_in", "US>", (ADV,), "toll bridge included"),
        case(s(E5), "conf_in", "US>", (ADV,), "toll bridge through E5"),
        case(s(ACPEA, PP), "conf_in", "US>", (ACPEA,), "toll bridge per minute"),
        case(s(ADV, ACPEA, PP), "conf_in", "US>", (ADV,), "included before per minute"),
        case(s(), "conf_in", "US>", (), "toll bridge, no conferencing"),
        case(s(ADV), "conf_in", "US>", (PP,), "toll-free bridge", toll_free=True),
        case(s(), "ucap_in", ">", (PP,), "toll-free auto attendant", toll_free=True),
        # free calls get nothing to pay; the caller decided them with is_free_call.
        case(s(EV, PLAN1, PP), "user_in", "US>", (), "incoming"),
        case(s(), "ucap_in", ">", (), "incoming to a service"),
        case(s(), "unassigned_in", ">", (), "unassigned number"),
        case(s(EV, PLAN1, PP), "emergency_out", "US>US", (), "emergency"),
    ],
)
def test_paying_capabilities_are_ordered_for_the_charging_engine(
    licenses: frozenset[str],
    call_type: str,
    user: str | None,
    destination: str | None,
    premium: bool,
    toll_free: bool,
    expected: tuple[str, ...],
) -> None:
    found = paying_capabilities(
        licenses, call_type, user, destination, premium=premium, toll_free_bridge=toll_free
    )
    assert found == expected


@pytest.mark.parametrize(
    ("call_type", "toll_free", "free"),
    [
        ("user_in", False, True),
        ("ucap_in", False, True),
        ("unassigned_in", False, True),
        ("emergency_out", False, True),
        ("user_in", True, False),
        ("ucap_in", True, False),
        ("conf_in", False, False),
        ("conf_in", True, False),
        ("user_out", False, False),
        ("conf_out", False, False),
        ("ucap_out", False, False),
    ],
)
def test_free_calls_are_incoming_to_toll_numbers_and_emergency_calls(
    call_type: str, toll_free: bool, free: bool
) -> None:
    assert is_free_call(call_type, toll_free_bridge=toll_free) is free


def test_an_unknown_call_type_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as refused:
        paying_capabilities(s(PP), "fax_out", "US", "US")
    assert (refused.value.code, refused.value.field) == ("invalid_call_type", "call_type")


# --- an operator's own catalogue ----------------------------------------------------------------

OPERATOR_SKUS = """
[skus.CONTOSO_PLAN]
name = "Contoso regional calling plan"
kind = "calling_plan"
requires = [["MCOEV"]]
needs_usage_location = true
not_sold_in = ["FR"]
domestic_minutes = { default = 500, GB = 900 }
international_minutes = 100
sms = 50

[skus.CONTOSO_BUNDLE]
name = "Contoso phone bundle"
kind = "bundle"
includes = ["MCOEV", "CONTOSO_PLAN"]
"""


def test_an_operator_catalogue_adds_its_own_skus(tmp_path: Path) -> None:
    path = tmp_path / "skus.toml"
    path.write_text(packaged_text() + OPERATOR_SKUS, encoding="utf-8")
    catalogue = Catalogue.load(path)

    assert catalogue.allowances("CONTOSO_PLAN", "GB") == Allowance(900, 100, 50, 0, pooled=True)
    assert catalogue.allowances("CONTOSO_PLAN", "DE").domestic_minutes == 500
    # A new plan is a calling plan for R-11, and follows R-12.
    assert catalogue.check_change(s(), ["CONTOSO_BUNDLE", PP], [], "GB") == s("CONTOSO_BUNDLE", PP)
    with pytest.raises(RuleViolation) as refused:
        catalogue.check_change(s(EV), ["CONTOSO_PLAN"], [], "FR")
    assert refused.value.code == "plan_not_available_in_location"
    assert catalogue.paying_capabilities(s("CONTOSO_BUNDLE", PP), "user_out", "GB", "US") == (
        "CONTOSO_PLAN",
        PP,
    )
    # The packaged catalogue is untouched.
    with pytest.raises(RuleViolation):
        Catalogue.load().sku("CONTOSO_PLAN")


def x(kind: str, *lines: str) -> str:
    """A [skus.X] table of ``kind`` with more ``lines``."""
    return "\n".join(["[skus.X]", 'name = "X"', f'kind = "{kind}"', *lines, ""])


MINIMAL = """
[skus.MCOPSTNPP]
name = "Communications Credits"
kind = "credits"
"""


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        pytest.param(x("phone"), ["SKU X", "'kind'"], id="kind"),
        pytest.param(
            '[skus.X]\nkind = "bundle"\nincludes = ["MCOPSTNPP"]\n',
            ["SKU X", "'name'"],
            id="no name",
        ),
        pytest.param(
            x("bundle", 'includes = ["NOPE"]'),
            ["SKU X", "'includes'", "NOPE"],
            id="unknown include",
        ),
        pytest.param(x("bundle"), ["SKU X", "'includes'"], id="empty bundle"),
        pytest.param(
            x("dialout", 'requires = [["NOPE"]]'),
            ["SKU X", "'requires'", "NOPE"],
            id="unknown prerequisite",
        ),
        pytest.param(
            x("dialout", 'requires = ["MCOPSTNPP"]'),
            ["SKU X", "'requires'"],
            id="requires not nested",
        ),
        pytest.param(
            x("dialout", "minutes = 5"),
            ["SKU X", "'minutes'"],
            id="misspelt field",
        ),
        pytest.param(
            x(
                "calling_plan",
                "needs_usage_location = true",
                'not_sold_in = ["UK"]',
            ),
            ["SKU X", "'not_sold_in'", "UK"],
            id="not a country",
        ),
        pytest.param(
            x("calling_plan", 'not_sold_in = ["US"]'),
            ["SKU X", "'needs_usage_location'"],
            id="restricted without location",
        ),
        pytest.param(
            x("calling_plan", "domestic_minutes = -1"),
            ["SKU X", "'domestic_minutes'"],
            id="negative minutes",
        ),
        pytest.param(
            x("calling_plan", "domestic_minutes = { US = 5 }"),
            ["SKU X", "'domestic_minutes'"],
            id="no default",
        ),
        pytest.param(
            x("calling_plan", 'sms = "200"'),
            ["SKU X", "'sms'"],
            id="text for a number",
        ),
        pytest.param(x("credits"), ["exactly one", "credits"], id="two credits SKUs"),
        pytest.param(
            '[skus.x_lower]\nname = "X"\nkind = "dialout"\n', ["x_lower"], id="bad SKU code"
        ),
        pytest.param('zone_a = ["XX"]\n', ["zone_a", "XX"], id="bad Zone A country"),
        pytest.param("[skus.X\n", ["not valid TOML"], id="not TOML"),
    ],
)
def test_a_malformed_catalogue_is_refused_naming_the_sku_and_field(
    tmp_path: Path, extra: str, named: list[str]
) -> None:
    path = tmp_path / "skus.toml"
    # Top-level keys must precede the tables, so extra text of that kind goes first.
    text = extra + MINIMAL if extra.startswith("zone_a") else MINIMAL + extra
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(named[0])) as refused:
        Catalogue.load(path)
    for word in named:
        assert word in str(refused.value)


def test_the_minimal_catalogue_itself_loads() -> None:
    catalogue = Catalogue.parse(MINIMAL)
    assert catalogue.credits_sku == PP
    assert catalogue.zone_a == frozenset()
