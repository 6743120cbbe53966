"""The directory at the service level: licenses and their prerequisites (R-10..R-14), seats,
Communications Credits access, usage locations, bulk changes, CSV import, tenant isolation,
phone numbers, policies (R-37) and the audit log. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from commcredits.app import Container
from commcredits.domain.directory import User
from commcredits.domain.errors import CommcreditsError, Conflict, NotFound, RuleViolation
from commcredits.domain.organizations import Billing, Organization
from commcredits.services.credits import NewOrder
from commcredits.services.directory import UserChanges
from commcredits.services.orgs import NewOrganization, OrganizationChanges
from commcredits.store.directory import NumberRepository, UserRepository

pytestmark = pytest.mark.usefixtures("ledger_checked")

ACTOR = "key_admin_1"
CREDITS = "MCOPSTNPP"
SEATS = {
    "SPE_E5": 10,
    "MCOTEAMS_ESSENTIALS": 5,
    "MCOMEETADV": 5,
    "MCOMEETACPEA": 5,
    "MCOEV": 10,
    "MCOPSTN1": 10,
    "MCOPSTN2": 5,
    "MCOPSTN5": 5,
    "MCOPSTN_PAYG_1": 5,
    "MCOPSTN_PAYG_2": 5,
}


# -- helpers ---------------------------------------------------------------------------------------


def new_org(
    container: Container,
    *,
    name: str = "Contoso",
    currency: str = "USD",
    billing: Billing = "prepaid",
    overage: bool = False,
) -> Organization:
    return container.orgs.create(NewOrganization(name, "US", currency, billing, overage))


def buy_seats(container: Container, org_id: str, seats: dict[str, int]) -> None:
    for sku, quantity in seats.items():
        container.directory.set_subscription(org_id, sku, quantity, actor=ACTOR)


def fund(container: Container, org_id: str) -> None:
    method = container.credits.add_agreement(org_id, "EA-1")
    order = container.credits.place_order(org_id, NewOrder("100.00", method.id))
    assert order.status == "paid"


def new_user(
    container: Container, org_id: str, upn: str, location: str | None = "US", *, name: str = ""
) -> User:
    return container.directory.create_user(
        org_id, upn, name or upn.split("@")[0].title(), location, actor=ACTOR
    )


def change(
    container: Container, org_id: str, user: str, add: list[str], remove: list[str] | None = None
) -> frozenset[str]:
    return container.directory.change_licenses(
        org_id, user, add, remove or [], actor=ACTOR
    ).licenses


def refused(action: Callable[[], Any], code: str) -> CommcreditsError:
    with pytest.raises(CommcreditsError) as caught:
        action()
    assert caught.value.code == code, caught.value.message
    return caught.value


def licenses_of(container: Container, org_id: str, user: str) -> frozenset[str]:
    return container.directory.get_user(org_id, user).licenses


def seat_table(container: Container, org_id: str) -> dict[str, tuple[int | None, int, int | None]]:
    return {
        s.sku: (s.quantity, s.assigned, s.available)
        for s in container.directory.subscriptions(org_id)
    }


@pytest.fixture
def org(container: Container) -> Organization:
    """A funded prepaid organization with seats of every SKU that is bought by the seat."""
    created = new_org(container)
    buy_seats(container, created.id, SEATS)
    fund(container, created.id)
    return created


# -- prerequisites ---------------------------------------------------------------------

CREDIT_PATHS = {
    "an E5 user, then MCOPSTNPP": (["SPE_E5"], [CREDITS]),
    "MCOEV + MCOPSTN1 + MCOPSTNPP in one change": ([], ["MCOEV", "MCOPSTN1", CREDITS]),
    "Teams Phone and the international plan": (["MCOEV", "MCOPSTN2"], [CREDITS]),
    "the Teams Phone with Calling Plan bundle": (["MCOTEAMS_ESSENTIALS"], [CREDITS]),
    "Teams Phone and a PAYG plan": (["MCOEV", "MCOPSTN_PAYG_1"], [CREDITS]),
    "Audio Conferencing": (["MCOMEETADV"], [CREDITS]),
    "pay-per-minute conferencing in one change": ([], ["MCOMEETACPEA", CREDITS]),
}


def test_communications_credits_are_assignable_through_every_prerequisite_path_R11(
    container: Container, org: Organization
) -> None:
    for number, (path, (first, then)) in enumerate(CREDIT_PATHS.items()):
        user = new_user(container, org.id, f"user{number}@contoso.com")
        if first:
            assert change(container, org.id, user.id, first) == frozenset(first), path
        assert change(container, org.id, user.id, then) == frozenset(first + then), path
        assert licenses_of(container, org.id, user.upn) == frozenset(first + then), path
    holders = container.directory.list_users(org.id, sku=CREDITS)
    assert len(holders) == len(CREDIT_PATHS)


def test_communications_credits_without_a_prerequisite_are_refused_naming_what_is_missing_R11(
    container: Container, org: Organization
) -> None:
    for upn, licenses in [("e5@contoso.com", ["SPE_E5"]), ("ev@contoso.com", ["MCOEV"])]:
        new_user(container, org.id, upn)
        change(container, org.id, upn, licenses)
    new_user(container, org.id, "bare@contoso.com")

    # E5 alone does not grant it: it is assigned on top.
    effective = container.directory.catalogue.effective(
        licenses_of(container, org.id, "e5@contoso.com")
    )
    assert {"MCOMEETADV", "MCOEV"} <= effective
    assert CREDITS not in effective
    assert container.directory.list_users(org.id, sku=CREDITS) == []

    # Teams Phone alone: the calling plan is what is missing.
    error = refused(
        lambda: change(container, org.id, "ev@contoso.com", [CREDITS]),
        "license_prerequisite_missing",
    )
    assert isinstance(error, RuleViolation)
    assert CREDITS in error.message
    assert "calling plan" in error.message
    assert licenses_of(container, org.id, "ev@contoso.com") == {"MCOEV"}
    # Nothing at all: every alternative is named.
    error = refused(
        lambda: change(container, org.id, "bare@contoso.com", [CREDITS]),
        "license_prerequisite_missing",
    )
    for alternative in ("MCOMEETADV", "MCOMEETACPEA", "MCOEV", "calling plan"):
        assert alternative in error.message
    assert licenses_of(container, org.id, "bare@contoso.com") == frozenset()


def test_a_calling_plan_needs_teams_phone_and_a_usage_location_R12(
    container: Container, org: Organization
) -> None:
    new_user(container, org.id, "pat@contoso.com")
    error = refused(
        lambda: change(container, org.id, "pat@contoso.com", ["MCOPSTN1"]),
        "license_prerequisite_missing",
    )
    assert "MCOPSTN1" in error.message
    assert "MCOEV" in error.message
    # All or nothing: the refused change took no seat.
    assert seat_table(container, org.id)["MCOPSTN1"] == (10, 0, 10)

    new_user(container, org.id, "nowhere@contoso.com", location=None)
    for plan in (["MCOEV", "MCOPSTN1"], ["MCOTEAMS_ESSENTIALS"]):
        error = refused(
            lambda p=plan: change(container, org.id, "nowhere@contoso.com", p),
            "usage_location_required",
        )
        assert error.field == "usage_location"
    assert licenses_of(container, org.id, "nowhere@contoso.com") == frozenset()

    error = refused(
        lambda: change(container, org.id, "pat@contoso.com", ["MCOEV", "NOT_A_SKU"]),
        "unknown_sku",
    )
    assert "NOT_A_SKU" in error.message
    refused(lambda: container.directory.list_users(org.id, sku="NOT_A_SKU"), "unknown_sku")
    assert seat_table(container, org.id)["MCOEV"] == (10, 0, 10)


def test_a_plan_is_assigned_only_where_it_is_sold_120_minutes_outside_the_us_payg_by_zone_R12(
    container: Container, org: Organization
) -> None:
    cases = [
        ("US", "MCOPSTN5", "plan_not_available_in_location"),
        ("GB", "MCOPSTN5", None),
        ("US", "MCOPSTN_PAYG_1", None),
        ("GB", "MCOPSTN_PAYG_1", None),
        ("DE", "MCOPSTN_PAYG_1", "plan_not_available_in_location"),
        ("DE", "MCOPSTN_PAYG_2", None),
        ("US", "MCOPSTN_PAYG_2", "plan_not_available_in_location"),
    ]
    for number, (location, plan, code) in enumerate(cases):
        upn = f"user{number}@contoso.com"
        new_user(container, org.id, upn, location=location)
        if code is None:
            assert change(container, org.id, upn, ["MCOEV", plan]) == {"MCOEV", plan}
            continue
        error = refused(lambda u=upn, p=plan: change(container, org.id, u, ["MCOEV", p]), code)
        # The user's usage location decides, not the organization's billing country (US).
        assert location in error.message, (location, plan)
        assert licenses_of(container, org.id, upn) == frozenset()


# -- seats -----------------------------------------------------------------------------------


def test_each_assignment_takes_a_seat_and_none_free_is_no_seats_available_R10(
    container: Container,
) -> None:
    org = new_org(container)
    buy_seats(container, org.id, {"MCOEV": 2})
    for upn in ("a@contoso.com", "b@contoso.com", "c@contoso.com"):
        new_user(container, org.id, upn)
    change(container, org.id, "a@contoso.com", ["MCOEV"])
    change(container, org.id, "b@contoso.com", ["MCOEV"])
    assert seat_table(container, org.id) == {"MCOEV": (2, 2, 0)}
    error = refused(
        lambda: change(container, org.id, "c@contoso.com", ["MCOEV"]), "no_seats_available"
    )
    assert "MCOEV" in error.message
    # A SKU never bought has no seat either.
    refused(
        lambda: change(container, org.id, "c@contoso.com", ["MCOMEETADV"]), "no_seats_available"
    )

    # Removing a license frees its seat; deleting a user frees all of theirs.
    change(container, org.id, "a@contoso.com", [], ["MCOEV"])
    assert change(container, org.id, "c@contoso.com", ["MCOEV"]) == {"MCOEV"}
    container.directory.delete_user(org.id, "b@contoso.com", actor=ACTOR)
    assert seat_table(container, org.id) == {"MCOEV": (2, 1, 1)}
    # Seats bought cannot drop below the seats assigned.
    refused(
        lambda: container.directory.set_subscription(org.id, "MCOEV", 0, actor=ACTOR),
        "seats_in_use",
    )


def test_communications_credits_are_refused_before_funding_and_unlimited_after_R10_R27(
    container: Container,
) -> None:
    org = new_org(container)
    buy_seats(container, org.id, {"SPE_E5": 3})
    for upn in ("a@contoso.com", "b@contoso.com", "c@contoso.com"):
        new_user(container, org.id, upn)
        change(container, org.id, upn, ["SPE_E5"])
    refused(lambda: change(container, org.id, "a@contoso.com", [CREDITS]), "no_seats_available")
    assert CREDITS not in seat_table(container, org.id)
    # A declined payment adds nothing, so it opens nothing either.
    card = container.credits.add_card(
        org.id, number="4000000000000002", exp_month=12, exp_year=2030, cvc="123", holder="Ada"
    )
    assert container.credits.place_order(org.id, NewOrder("100.00", card.id)).status == "failed"
    refused(lambda: change(container, org.id, "a@contoso.com", [CREDITS]), "no_seats_available")

    fund(container, org.id)
    for upn in ("a@contoso.com", "b@contoso.com", "c@contoso.com"):
        assert change(container, org.id, upn, [CREDITS]) == {"SPE_E5", CREDITS}
    assert seat_table(container, org.id)[CREDITS] == (None, 3, None)
    # It is never bought by the seat: it comes with the funded balance.
    refused(
        lambda: container.directory.set_subscription(org.id, CREDITS, 5, actor=ACTOR),
        "subscription_not_needed",
    )


def test_a_postpaid_organization_opens_communications_credits_with_overage_on_R10_R04(
    container: Container,
) -> None:
    org = new_org(container, billing="postpaid")
    buy_seats(container, org.id, {"MCOMEETADV": 1})
    new_user(container, org.id, "pat@contoso.com")
    change(container, org.id, "pat@contoso.com", ["MCOMEETADV"])
    refused(lambda: change(container, org.id, "pat@contoso.com", [CREDITS]), "no_seats_available")

    container.orgs.update(org.id, OrganizationChanges(overage_enabled=True))
    assert change(container, org.id, "pat@contoso.com", [CREDITS]) == {"MCOMEETADV", CREDITS}
    assert seat_table(container, org.id)[CREDITS] == (None, 1, None)


# -- removal order ---------------------------------------------------------------------------


def test_a_license_another_depends_on_is_removed_only_together_with_it_R13(
    container: Container, org: Organization
) -> None:
    new_user(container, org.id, "pat@contoso.com")
    change(container, org.id, "pat@contoso.com", ["MCOEV", "MCOPSTN1", CREDITS])

    error = refused(
        lambda: change(container, org.id, "pat@contoso.com", [], ["MCOEV"]),
        "license_required_by_other",
    )
    assert "MCOEV" in error.message
    refused(
        lambda: change(container, org.id, "pat@contoso.com", [], ["MCOPSTN1"]),
        "license_required_by_other",
    )
    assert licenses_of(container, org.id, "pat@contoso.com") == {"MCOEV", "MCOPSTN1", CREDITS}

    # Another plan added in the same change keeps MCOPSTNPP's prerequisite met.
    swapped = change(container, org.id, "pat@contoso.com", ["MCOPSTN2"], ["MCOPSTN1"])
    assert swapped == {"MCOEV", "MCOPSTN2", CREDITS}
    # The dependent removed in the same change: allowed, and every seat comes back.
    assert change(container, org.id, "pat@contoso.com", [], ["MCOEV", "MCOPSTN2", CREDITS]) == set()
    seats = seat_table(container, org.id)
    assert seats["MCOEV"][1] == seats["MCOPSTN1"][1] == seats["MCOPSTN2"][1] == 0

    # A bundle that carries a prerequisite is held to the same rule.
    new_user(container, org.id, "e5@contoso.com")
    change(container, org.id, "e5@contoso.com", ["SPE_E5", CREDITS])
    error = refused(
        lambda: change(container, org.id, "e5@contoso.com", [], ["SPE_E5"]),
        "license_required_by_other",
    )
    assert "SPE_E5" in error.message
    # MCOEV held only through the bundle: removing it directly changes nothing.
    assert change(container, org.id, "e5@contoso.com", [], ["MCOEV"]) == {"SPE_E5", CREDITS}
    assert change(container, org.id, "e5@contoso.com", [], ["SPE_E5", CREDITS]) == set()


# -- usage location changes ------------------------------------------------------------------


def test_a_usage_location_change_that_would_break_a_plan_is_refused_R12(
    container: Container, org: Organization
) -> None:
    new_user(container, org.id, "plan@contoso.com", location="US")
    change(container, org.id, "plan@contoso.com", ["MCOEV", "MCOPSTN1"])
    new_user(container, org.id, "payg@contoso.com", location="US")
    change(container, org.id, "payg@contoso.com", ["MCOEV", "MCOPSTN_PAYG_1"])
    new_user(container, org.id, "small@contoso.com", location="GB")
    change(container, org.id, "small@contoso.com", ["MCOEV", "MCOPSTN5"])

    def move(upn: str, location: str | None) -> User:
        return container.directory.update_user(
            org.id, upn, UserChanges(usage_location=location), actor=ACTOR
        )

    refused(lambda: move("plan@contoso.com", None), "usage_location_required")
    refused(lambda: move("payg@contoso.com", "DE"), "plan_not_available_in_location")
    refused(lambda: move("small@contoso.com", "US"), "plan_not_available_in_location")
    refused(lambda: move("plan@contoso.com", "XX"), "invalid_country")
    assert container.directory.get_user(org.id, "payg@contoso.com").usage_location == "US"

    assert move("plan@contoso.com", "DE").usage_location == "DE"
    assert move("payg@contoso.com", "GB").usage_location == "GB"
    assert move("small@contoso.com", "FR").usage_location == "FR"
    # A user without a plan may lose their usage location.
    new_user(container, org.id, "meet@contoso.com", location="US")
    change(container, org.id, "meet@contoso.com", ["MCOMEETADV"])
    assert move("meet@contoso.com", None).usage_location is None


# -- bulk ------------------------------------------------------------------------------------


def test_bulk_assignment_reports_each_user_in_order_and_runs_out_of_seats_midway_R14(
    container: Container,
) -> None:
    org = new_org(container)
    buy_seats(container, org.id, {"MCOEV": 3, "MCOPSTN1": 10})
    upns = [f"u{n}@contoso.com" for n in range(1, 6)]
    for upn in upns:
        new_user(container, org.id, upn)
    new_user(container, org.id, "nowhere@contoso.com", location=None)
    wanted = [
        upns[0],
        "ghost@contoso.com",
        upns[1],
        "nowhere@contoso.com",
        upns[2].upper(),
        upns[3],
        upns[4],
    ]

    results = container.directory.bulk_change_licenses(
        org.id, wanted, ["MCOEV", "MCOPSTN1"], [], actor=ACTOR
    )

    outcome = [(r.user, r.ok, r.error.code if r.error else None) for r in results]
    assert outcome == [
        (upns[0], True, None),
        ("ghost@contoso.com", False, "user_not_found"),
        (upns[1], True, None),
        ("nowhere@contoso.com", False, "usage_location_required"),
        (upns[2], True, None),
        (upns[3], False, "no_seats_available"),
        (upns[4], False, "no_seats_available"),
    ]
    assert results[0].licenses == ("MCOEV", "MCOPSTN1")
    # Each user all or nothing: a refused user got no MCOPSTN1 although seats of it remain.
    for upn in upns:
        expected = {"MCOEV", "MCOPSTN1"} if upn in upns[:3] else set()
        assert licenses_of(container, org.id, upn) == expected
    assert seat_table(container, org.id) == {"MCOEV": (3, 3, 0), "MCOPSTN1": (10, 3, 7)}


def test_bulk_credits_reach_qualified_users_and_name_the_prerequisite_for_the_rest_R11_R14(
    container: Container, org: Organization
) -> None:
    for upn, licenses in [
        ("e5@contoso.com", ["SPE_E5"]),
        ("bare@contoso.com", []),
        ("phone@contoso.com", ["MCOEV", "MCOPSTN1"]),
        ("evonly@contoso.com", ["MCOEV"]),
    ]:
        user = new_user(container, org.id, upn)
        if licenses:
            change(container, org.id, user.id, licenses)
    phone = container.directory.get_user(org.id, "phone@contoso.com")
    targets = ["e5@contoso.com", "bare@contoso.com", phone.id, "evonly@contoso.com"]

    results = container.directory.bulk_change_licenses(org.id, targets, [CREDITS], [], actor=ACTOR)

    assert [(r.user, r.ok) for r in results] == [
        ("e5@contoso.com", True),
        ("bare@contoso.com", False),
        ("phone@contoso.com", True),
        ("evonly@contoso.com", False),
    ]
    assert results[1].error is not None
    assert results[1].error.code == "license_prerequisite_missing"
    assert results[3].error is not None
    assert "calling plan" in results[3].error.message
    assert [u.upn for u in container.directory.list_users(org.id, sku=CREDITS)] == [
        "e5@contoso.com",
        "phone@contoso.com",
    ]

    # Bulk removal follows R-13 per user too.
    removed = container.directory.bulk_change_licenses(
        org.id, ["phone@contoso.com", "evonly@contoso.com"], [], ["MCOEV"], actor=ACTOR
    )
    assert [(r.ok, r.error.code if r.error else None) for r in removed] == [
        (False, "license_required_by_other"),
        (True, None),
    ]
    assert licenses_of(container, org.id, "evonly@contoso.com") == frozenset()


# -- CSV import ------------------------------------------------------------------------------------

IMPORT_ROWS: list[tuple[int, dict[str, str]]] = [
    (2, {"upn": "ada@contoso.com", "display_name": "Ada", "usage_location": "US", "licenses": ""}),
    (3, {"upn": "not-a-upn", "display_name": "Bad", "usage_location": "US", "licenses": ""}),
    (4, {"upn": "bob@contoso.com", "display_name": "Bob", "usage_location": "XX", "licenses": ""}),
    (
        5,
        {
            "upn": "cy@contoso.com",
            "display_name": "Cy",
            "usage_location": "US",
            "licenses": "MCOEV;NOPE",
        },
    ),
    (6, {"upn": "dee@contoso.com", "display_name": "", "usage_location": "US", "licenses": ""}),
    (
        7,
        {
            "upn": "Eve@Contoso.com",
            "display_name": "Eve",
            "usage_location": "gb",
            "licenses": "MCOEV;MCOPSTN1",
        },
    ),
    (8, {"upn": "fay@contoso.com", "display_name": "Fay", "usage_location": "", "licenses": ""}),
]


def test_an_import_creates_the_good_rows_and_reports_the_bad_ones_by_line(
    container: Container, org: Organization
) -> None:
    report = container.directory.import_users(org.id, IMPORT_ROWS, actor=ACTOR)

    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert [(line, code) for line, _, code, _ in report.errors] == [
        (3, "invalid_upn"),
        (4, "invalid_country"),
        (5, "unknown_sku"),
        (6, "invalid_name"),
    ]
    assert report.errors[2][1] == "cy@contoso.com"
    assert "NOPE" in report.errors[2][3]
    users = {u.upn: u for u in container.directory.all_users(org.id)}
    assert sorted(users) == ["ada@contoso.com", "eve@contoso.com", "fay@contoso.com"]
    assert users["eve@contoso.com"].usage_location == "GB"
    assert users["eve@contoso.com"].licenses == {"MCOEV", "MCOPSTN1"}
    assert users["fay@contoso.com"].usage_location is None
    # A refused row leaves nothing behind: no user, no seat, no audit entry.
    refused(lambda: container.directory.get_user(org.id, "cy@contoso.com"), "user_not_found")
    assert seat_table(container, org.id)["MCOEV"][1] == 1
    assert {e.target for e in container.directory.audit(org.id, limit=1000)} >= {
        "ada@contoso.com",
        "eve@contoso.com",
    }
    assert "cy@contoso.com" not in {e.target for e in container.directory.audit(org.id, limit=1000)}


def test_importing_the_same_file_again_changes_nothing(
    container: Container, org: Organization
) -> None:
    container.directory.import_users(org.id, IMPORT_ROWS, actor=ACTOR)
    audit_before = container.directory.audit(org.id, limit=1000)
    users_before = container.directory.all_users(org.id)

    again = container.directory.import_users(org.id, IMPORT_ROWS, actor=ACTOR)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert [line for line, *_ in again.errors] == [3, 4, 5, 6]
    assert container.directory.audit(org.id, limit=1000) == audit_before
    assert container.directory.all_users(org.id) == users_before

    # A changed row is an update; a row that changes licenses is one too.
    changed = [
        (2, {**IMPORT_ROWS[0][1], "display_name": "Ada Lovelace"}),
        (3, {**IMPORT_ROWS[5][1], "licenses": "MCOEV;MCOPSTN1;MCOPSTNPP"}),
    ]
    report = container.directory.import_users(org.id, changed, actor=ACTOR)
    assert (report.created, report.updated, report.unchanged, report.errors) == (0, 2, 0, [])
    assert licenses_of(container, org.id, "eve@contoso.com") == {"MCOEV", "MCOPSTN1", CREDITS}


def test_an_import_refuses_a_location_its_users_plan_cannot_have_R12(
    container: Container, org: Organization
) -> None:
    new_user(container, org.id, "pat@contoso.com", location="US")
    change(container, org.id, "pat@contoso.com", ["MCOEV", "MCOPSTN_PAYG_1"])
    row = {"upn": "pat@contoso.com", "display_name": "Pat", "usage_location": "DE"}
    report = container.directory.import_users(org.id, [(2, row)], actor=ACTOR)
    assert [(line, code) for line, _, code, _ in report.errors] == [
        (2, "plan_not_available_in_location")
    ]
    assert container.directory.get_user(org.id, "pat@contoso.com").usage_location == "US"


def test_an_import_row_that_moves_a_user_and_swaps_to_the_plan_of_the_new_zone_is_applied_R12(
    container: Container, org: Organization
) -> None:
    new_user(container, org.id, "pat@contoso.com", location="US")
    change(container, org.id, "pat@contoso.com", ["MCOEV", "MCOPSTN_PAYG_1"])
    row = {
        "upn": "pat@contoso.com",
        "display_name": "Pat",
        "usage_location": "DE",
        "licenses": "MCOEV;MCOPSTN_PAYG_2",
    }
    report = container.directory.import_users(org.id, [(2, row)], actor=ACTOR)
    assert (report.updated, report.errors) == (1, [])
    pat = container.directory.get_user(org.id, "pat@contoso.com")
    assert (pat.usage_location, pat.licenses) == ("DE", frozenset({"MCOEV", "MCOPSTN_PAYG_2"}))


# -- tenant isolation ------------------------------------------------------------------------------


def test_a_user_of_one_organization_is_invisible_to_another(container: Container) -> None:
    mine = new_org(container)
    theirs = new_org(container, name="Fabrikam")
    buy_seats(container, theirs.id, {"MCOEV": 5})
    pat = new_user(container, mine.id, "pat@contoso.com")

    for key in (pat.id, pat.upn):
        error = refused(lambda k=key: container.directory.get_user(theirs.id, k), "user_not_found")
        assert isinstance(error, NotFound)
        refused(lambda k=key: change(container, theirs.id, k, ["MCOEV"]), "user_not_found")
        refused(
            lambda k=key: container.directory.update_user(
                theirs.id, k, UserChanges(display_name="Hijacked"), actor=ACTOR
            ),
            "user_not_found",
        )
        refused(
            lambda k=key: container.directory.delete_user(theirs.id, k, actor=ACTOR),
            "user_not_found",
        )
    bulk = container.directory.bulk_change_licenses(
        theirs.id, [pat.upn], ["MCOEV"], [], actor=ACTOR
    )
    assert bulk[0].error is not None
    assert bulk[0].error.code == "user_not_found"
    assert container.directory.list_users(theirs.id) == []
    assert container.directory.all_users(theirs.id) == []
    # Their audit log holds their seat purchase only: nothing about the other organization.
    assert [e.action for e in container.directory.audit(theirs.id, limit=1000)] == [
        "subscription.set"
    ]
    assert container.directory.get_user(mine.id, pat.id).display_name == "Pat"
    # The same UPN may exist independently in the other organization.
    other = new_user(container, theirs.id, "pat@contoso.com", name="Other Pat")
    assert other.id != pat.id
    assert container.directory.get_user(mine.id, "pat@contoso.com").display_name == "Pat"


def test_a_number_of_one_organization_is_invisible_to_another_and_cannot_be_taken(
    container: Container,
) -> None:
    mine = new_org(container)
    theirs = new_org(container, name="Fabrikam")
    container.directory.add_number(mine.id, "+14255550100", "service", None, actor=ACTOR)

    error = refused(
        lambda: container.directory.add_number(
            theirs.id, "+1 425 555 0100", "service", None, actor=ACTOR
        ),
        "number_taken",
    )
    assert isinstance(error, Conflict)
    assert container.directory.numbers(theirs.id) == ([], {})
    refused(
        lambda: container.directory.remove_number(theirs.id, "+14255550100", actor=ACTOR),
        "number_not_found",
    )
    refused(
        lambda: container.directory.assign_number(theirs.id, "+14255550100", None, actor=ACTOR),
        "number_not_found",
    )
    assert [n.number for n in container.directory.numbers(mine.id)[0]] == ["+14255550100"]
    # The owner holds it until it removes it; then it is free for anyone.
    refused(
        lambda: container.directory.add_number(
            mine.id, "+14255550100", "service", None, actor=ACTOR
        ),
        "number_taken",
    )
    container.directory.remove_number(mine.id, "+14255550100", actor=ACTOR)
    taken = container.directory.add_number(theirs.id, "+14255550100", "service", None, actor=ACTOR)
    assert taken.org_id == theirs.id


# -- numbers ---------------------------------------------------------------------------------------


def test_numbers_are_valid_e164_with_a_country_and_toll_free_kinds_need_toll_free_numbers(
    container: Container,
) -> None:
    org = new_org(container)
    add = container.directory.add_number
    for bad in ("4255550100", "+1425555", "+1 425 555 01000", "call me", "+999123456789", ""):
        error = refused(
            lambda b=bad: add(org.id, b, "service", None, actor=ACTOR), "invalid_number"
        )
        assert error.field == "number"
    for kind in ("service_toll_free", "conference_toll_free"):
        refused(lambda k=kind: add(org.id, "+14255550101", k, None, actor=ACTOR), "not_toll_free")
    service = add(org.id, "+1 (425) 555-0100", "service", None, actor=ACTOR)
    assert (service.number, service.country) == ("+14255550100", "US")
    assert add(org.id, "+18005550100", "service_toll_free", None, actor=ACTOR).country == "US"
    assert add(org.id, "+448001234567", "conference_toll_free", None, actor=ACTOR).country == "GB"
    assert add(org.id, "+442071838750", "conference", None, actor=ACTOR).country == "GB"
    numbers, _ = container.directory.numbers(org.id)
    assert [(n.number, n.kind) for n in numbers] == [
        ("+14255550100", "service"),
        ("+18005550100", "service_toll_free"),
        ("+442071838750", "conference"),
        ("+448001234567", "conference_toll_free"),
    ]
    toll_free, _ = container.directory.numbers(org.id, kind="service_toll_free")
    assert [n.number for n in toll_free] == ["+18005550100"]
    # Only user numbers are assigned to users.
    new_user(container, org.id, "pat@contoso.com")
    refused(
        lambda: add(org.id, "+14255550102", "service", "pat@contoso.com", actor=ACTOR),
        "invalid_assignment",
    )


def test_a_user_number_needs_a_user_with_a_calling_plan(container: Container) -> None:
    org = new_org(container)
    buy_seats(container, org.id, {"MCOEV": 2, "MCOTEAMS_ESSENTIALS": 1, "MCOPSTN1": 1})
    new_user(container, org.id, "bare@contoso.com")
    new_user(container, org.id, "ev@contoso.com")
    change(container, org.id, "ev@contoso.com", ["MCOEV"])
    new_user(container, org.id, "plan@contoso.com")
    change(container, org.id, "plan@contoso.com", ["MCOEV", "MCOPSTN1"])
    new_user(container, org.id, "bundle@contoso.com")
    change(container, org.id, "bundle@contoso.com", ["MCOTEAMS_ESSENTIALS"])
    add = container.directory.add_number

    for upn in ("bare@contoso.com", "ev@contoso.com"):
        refused(
            lambda u=upn: add(org.id, "+14255550100", "user", u, actor=ACTOR),
            "calling_plan_required",
        )
    refused(
        lambda: add(org.id, "+14255550100", "user", "ghost@contoso.com", actor=ACTOR),
        "user_not_found",
    )
    plan = container.directory.get_user(org.id, "plan@contoso.com")
    assert add(org.id, "+14255550100", "user", "plan@contoso.com", actor=ACTOR).user_id == plan.id
    add(org.id, "+14255550101", "user", "bundle@contoso.com", actor=ACTOR)
    # An unassigned user number is assigned later, under the same rule.
    add(org.id, "+14255550102", "user", None, actor=ACTOR)
    refused(
        lambda: container.directory.assign_number(
            org.id, "+14255550102", "ev@contoso.com", actor=ACTOR
        ),
        "calling_plan_required",
    )
    container.directory.assign_number(org.id, "+14255550102", "plan@contoso.com", actor=ACTOR)
    numbers, upns = container.directory.numbers(org.id)
    assert [(n.number, upns.get(n.user_id or "")) for n in numbers] == [
        ("+14255550100", "plan@contoso.com"),
        ("+14255550101", "bundle@contoso.com"),
        ("+14255550102", "plan@contoso.com"),
    ]
    # Deleting the user releases their numbers; the numbers stay with the organization.
    container.directory.delete_user(org.id, "plan@contoso.com", actor=ACTOR)
    numbers, _ = container.directory.numbers(org.id)
    assert [n.user_id for n in numbers] == [None, numbers[1].user_id, None]
    assert numbers[1].user_id is not None


# -- policies --------------------------------------------------------------------------------


def test_a_user_policy_overrides_the_organization_default_until_reset_R37(
    container: Container,
) -> None:
    org = new_org(container)
    pat = new_user(container, org.id, "pat@contoso.com")
    assert (pat.pstn_policy, pat.dialout_policy, pat.spend_limit) == (None, None, None)
    assert (org.pstn_policy, org.dialout_policy) == ("international_and_domestic", "any")

    changed = container.orgs.update(
        org.id, OrganizationChanges(pstn_policy="domestic", dialout_policy="zone_a")
    )
    assert (changed.pstn_policy, changed.dialout_policy) == ("domestic", "zone_a")
    # The user still follows the organization: no value of its own.
    assert container.directory.get_user(org.id, pat.id).pstn_policy is None

    update = container.directory.update_user
    override = update(
        org.id, pat.id, UserChanges(pstn_policy="none", dialout_policy="none"), actor=ACTOR
    )
    assert (override.pstn_policy, override.dialout_policy) == ("none", "none")
    stored = container.directory.get_user(org.id, "pat@contoso.com")
    assert (stored.pstn_policy, stored.dialout_policy) == ("none", "none")
    # Changing only one leaves the other.
    assert update(org.id, pat.id, UserChanges(dialout_policy="organizer_country"), actor=ACTOR) == (
        container.directory.get_user(org.id, pat.id)
    )
    stored = container.directory.get_user(org.id, pat.id)
    assert (stored.pstn_policy, stored.dialout_policy) == ("none", "organizer_country")
    reset = update(org.id, pat.id, UserChanges(pstn_policy=None, dialout_policy=None), actor=ACTOR)
    assert (reset.pstn_policy, reset.dialout_policy) == (None, None)
    assert container.orgs.get(org.id).pstn_policy == "domestic"


SPEND_LIMITS: list[tuple[str, Any, Decimal | str]] = [
    ("USD", "25.50", Decimal("25.50")),
    ("USD", "100", Decimal("100")),
    ("USD", " 7.5 ", Decimal("7.5")),
    ("USD", "0", Decimal("0")),
    ("USD", "25.505", "too_many_decimals"),
    ("USD", "-5.00", "invalid_amount"),
    ("USD", "ten", "invalid_amount"),
    ("USD", "1e3", "invalid_amount"),
    ("USD", 12.5, "invalid_amount"),
    ("JPY", "1000", Decimal("1000")),
    ("JPY", "1000.5", "too_many_decimals"),
]


def test_a_spend_limit_is_an_exact_amount_in_the_organization_currency_R37_R41(
    container: Container,
) -> None:
    users = {
        currency: new_user(container, new_org(container, currency=currency).id, "pat@contoso.com")
        for currency in ("USD", "JPY")
    }
    update = container.directory.update_user
    for currency, value, outcome in SPEND_LIMITS:
        pat = users[currency]
        update(pat.org_id, pat.id, UserChanges(spend_limit=None), actor=ACTOR)
        limit = UserChanges(spend_limit=value)
        if isinstance(outcome, str):
            error = refused(lambda p=pat, x=limit: update(p.org_id, p.id, x, actor=ACTOR), outcome)
            assert error.field == "spend_limit", value
            assert container.directory.get_user(pat.org_id, pat.id).spend_limit is None, value
            continue
        assert update(pat.org_id, pat.id, limit, actor=ACTOR).spend_limit == outcome, value
        stored = container.directory.get_user(pat.org_id, pat.id).spend_limit
        assert stored == outcome, value
    pat = users["USD"]
    update(pat.org_id, pat.id, UserChanges(spend_limit="10.00"), actor=ACTOR)
    assert update(pat.org_id, pat.id, UserChanges(spend_limit=""), actor=ACTOR).spend_limit is None


# -- users and the audit log -----------------------------------------------------------------------


def test_a_user_principal_name_is_checked_and_unique_per_organization_ignoring_case(
    container: Container,
) -> None:
    org = new_org(container)
    pat = new_user(container, org.id, "  Pat@Contoso.COM ")
    assert pat.upn == "pat@contoso.com"
    refused(lambda: new_user(container, org.id, "PAT@contoso.com"), "user_exists")
    for bad in ("pat", "pat@contoso", "pat smith@contoso.com", "a@b@c.com"):
        refused(lambda b=bad: new_user(container, org.id, b, name="X"), "invalid_upn")
    refused(lambda: new_user(container, org.id, "x@contoso.com", location="XX"), "invalid_country")
    refused(lambda: new_user(container, org.id, "x@contoso.com", name=" "), "invalid_name")
    refused(lambda: container.directory.get_user(org.id, "nobody@contoso.com"), "user_not_found")
    refused(lambda: container.directory.get_user("org_missing", pat.id), "organization_not_found")


def test_users_are_listed_by_upn_and_filtered_by_license_location_and_search(
    container: Container, org: Organization
) -> None:
    for upn, location in [
        ("c@contoso.com", "US"),
        ("a@contoso.com", "GB"),
        ("b@contoso.com", "US"),
    ]:
        new_user(container, org.id, upn, location)
    change(container, org.id, "b@contoso.com", ["MCOMEETADV"])
    listed = container.directory.list_users
    assert [u.upn for u in listed(org.id)] == ["a@contoso.com", "b@contoso.com", "c@contoso.com"]
    assert [u.upn for u in listed(org.id, sku="MCOMEETADV")] == ["b@contoso.com"]
    assert [u.upn for u in listed(org.id, usage_location="US")] == [
        "b@contoso.com",
        "c@contoso.com",
    ]
    assert [u.upn for u in listed(org.id, search="A@")] == ["a@contoso.com"]
    assert [u.upn for u in listed(org.id, limit=2)] == ["a@contoso.com", "b@contoso.com"]
    assert [u.upn for u in listed(org.id, after="b@contoso.com")] == ["c@contoso.com"]


def test_a_user_search_matches_its_text_literally(container: Container) -> None:
    org = new_org(container)
    for upn in ("a_b@contoso.com", "axb@contoso.com"):
        new_user(container, org.id, upn)
    found = container.directory.list_users(org.id, search="a_b")
    assert [u.upn for u in found] == ["a_b@contoso.com"]


def test_the_audit_log_records_who_did_what_and_when_for_every_change(
    container: Container,
) -> None:
    org = new_org(container)
    directory = container.directory
    start = container.clock.now()

    def at(minutes: int) -> datetime:
        when = start + timedelta(minutes=minutes)
        container.clock.set(when)  # type: ignore[attr-defined]
        return when

    times = [at(1)]
    directory.set_subscription(org.id, "MCOEV", 1, actor="key_a")
    times.append(at(2))
    directory.create_user(org.id, "pat@contoso.com", "Pat", "US", actor="key_b")
    times.append(at(3))
    directory.change_licenses(org.id, "pat@contoso.com", ["MCOEV"], [], actor="key_a")
    # A refused change leaves no trace.
    with pytest.raises(RuleViolation):
        directory.change_licenses(org.id, "pat@contoso.com", ["MCOPSTN1"], [], actor="key_a")
    times.append(at(4))
    directory.update_user(
        org.id,
        "pat@contoso.com",
        UserChanges(spend_limit="12.50", pstn_policy="domestic"),
        actor="key_c",
    )
    times.append(at(5))
    directory.add_number(org.id, "+14255550100", "service", None, actor="key_a")
    times.append(at(6))
    directory.remove_number(org.id, "+14255550100", actor="key_a")
    times.append(at(7))
    directory.delete_user(org.id, "pat@contoso.com", actor="cli")

    entries = sorted(directory.audit(org.id, limit=100), key=lambda e: e.at)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("key_a", "subscription.set", "MCOEV"),
        ("key_b", "user.created", "pat@contoso.com"),
        ("key_a", "licenses.changed", "pat@contoso.com"),
        ("key_c", "user.updated", "pat@contoso.com"),
        ("key_a", "number.added", "+14255550100"),
        ("key_a", "number.removed", "+14255550100"),
        ("cli", "user.deleted", "pat@contoso.com"),
    ]
    assert [e.at for e in entries] == times
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in entries)
    assert entries[0].details == {"quantity": 1}
    assert entries[2].details == {"added": ["MCOEV"], "removed": []}
    assert entries[3].details == {
        "pstn_policy": {"from": None, "to": "domestic"},
        "spend_limit": {"from": None, "to": "12.50"},
    }
    assert entries[6].details == {"licenses": ["MCOEV"]}
    # Newest first, and paged.
    newest = directory.audit(org.id, limit=2)
    assert [e.action for e in newest] == ["user.deleted", "number.removed"]
    older = directory.audit(org.id, limit=100, before=newest[-1].id)
    assert [e.action for e in older][:1] == ["number.added"]
    assert times[0] > datetime(2026, 1, 1, tzinfo=UTC)

    # An update that changes nothing writes nothing.
    pat = directory.create_user(org.id, "pat@contoso.com", "Pat", "US", actor="key_b")
    before = directory.audit(org.id, limit=100)
    same = directory.update_user(
        org.id, pat.id, UserChanges(display_name="Pat", usage_location="US"), actor=ACTOR
    )
    assert same == pat
    assert directory.audit(org.id, limit=100) == before


# -- concurrency: two connections at once ----------------------------------------------------------


def _race(
    monkeypatch: pytest.MonkeyPatch, reader: Any, method: str, work: Callable[[int], Any]
) -> list[Any]:
    """Run ``work(0)`` and ``work(1)`` in two threads, holding each just after it has read
    through ``reader.<method>`` until the other has read too: the widest window two concurrent
    requests can have. Where the database serializes writers (SQLite's BEGIN IMMEDIATE) the
    second cannot read before the first commits, and the hold times out."""
    original = getattr(reader, method)
    read = threading.Barrier(2, timeout=1.0)

    def held(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            read.wait()
        return found

    results: list[Any] = [None, None]

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as exc:  # collected for the assertions
            results[index] = exc

    with monkeypatch.context() as patch:
        patch.setattr(reader, method, held)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def _codes(results: list[Any]) -> list[str]:
    return [
        r.code if isinstance(r, CommcreditsError) else type(r).__name__
        for r in results
        if isinstance(r, BaseException)
    ]


def test_two_concurrent_requests_for_the_last_seat_give_it_to_exactly_one_R10(
    container: Container, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(container)
    buy_seats(container, org.id, {"MCOEV": 1})
    upns = ["a@contoso.com", "b@contoso.com"]
    for upn in upns:
        new_user(container, org.id, upn)

    results = _race(
        monkeypatch,
        UserRepository,
        "assigned_counts",
        lambda i: change(container, org.id, upns[i], ["MCOEV"]),
    )

    assert _codes(results) == ["no_seats_available"]
    assert seat_table(container, org.id) == {"MCOEV": (1, 1, 0)}


def test_two_concurrent_creations_of_one_upn_create_one_user_and_refuse_the_other(
    container: Container, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(container)

    results = _race(
        monkeypatch,
        UserRepository,
        "get",
        lambda i: container.directory.create_user(
            org.id, "pat@contoso.com", f"Pat {i}", "US", actor=ACTOR
        ),
    )

    assert _codes(results) == ["user_exists"]
    assert len(container.directory.all_users(org.id)) == 1


def test_two_organizations_adding_one_number_at_once_get_it_once_and_number_taken(
    container: Container, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    orgs = [new_org(container).id, new_org(container, name="Fabrikam").id]

    results = _race(
        monkeypatch,
        NumberRepository,
        "get_any",
        lambda i: container.directory.add_number(
            orgs[i], "+14255550100", "service", None, actor=ACTOR
        ),
    )

    assert _codes(results) == ["number_taken"]
    owners = [org_id for org_id in orgs if container.directory.numbers(org_id)[0]]
    assert len(owners) == 1


def test_many_users_are_read_at_once_by_id_or_upn_within_their_organization_only(
    container: Container,
) -> None:
    """Call control reads a batch's users in one go; each key finds what ``get`` finds."""
    org, other = new_org(container), new_org(container, name="Fabrikam")
    buy_seats(container, org.id, {"MCOEV": 2})
    pat = new_user(container, org.id, "pat@contoso.com")
    sam = new_user(container, org.id, "sam@contoso.com")
    change(container, org.id, "sam@contoso.com", ["MCOEV"])
    stranger = new_user(container, other.id, "kim@fabrikam.com")

    with container.store.unit_of_work(read_only=True) as uow:
        repo = UserRepository(uow.conn)
        keys = [pat.id, " SAM@Contoso.com", "nobody@contoso.com", stranger.id, "kim@fabrikam.com"]
        found = repo.get_many(org.id, keys)
        one_by_one = {key: repo.get(org.id, key) for key in keys}

    assert set(found) == {pat.id, " SAM@Contoso.com"}
    assert found == {key: user for key, user in one_by_one.items() if user is not None}
    assert found[" SAM@Contoso.com"].id == sam.id
    assert found[" SAM@Contoso.com"].licenses == frozenset({"MCOEV"})
