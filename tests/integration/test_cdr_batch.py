"""CDR batches charged a batch at a time give what charging each call on its own gives
(R-15, R-22, R-28..R-38, R-42, R-50a), on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from commcredits.app import Container, build
from commcredits.domain.errors import RuleViolation
from commcredits.domain.rating import Destination, classify
from commcredits.domain.rating_batch import classify_number
from commcredits.services.calls import CdrRecord, CdrResult
from commcredits.services.cdr_batch import CdrBatches
from commcredits.services.credits import NewOrder
from commcredits.services.directory import UserChanges
from commcredits.services.orgs import NewOrganization
from commcredits.store.credits import CreditRepository
from commcredits.store.tables import calls
from tests.conftest import CollectingTransport, assert_ledger_clean, make_settings

HEADER = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
)
RATES = HEADER + (
    "outbound,1,,,0.0130,,60,60,USD,,,US and CA\n"
    "outbound,44,,,0.0275,0.015,1,1,USD,,,GB\n"
    "outbound,,FR,any,0.9999,,30,6,USD,,,FR\n"
    "outbound,,DE,fixed,0.0333,0.01,60,1,USD,,,DE fixed\n"
    "conf_dialout,1,,,0.0300,,60,60,USD,,,US dial-out\n"
    "toll_free_in,,US,any,0.0250,,60,6,USD,,,US toll-free\n"
)

ANN_NUMBER = "+12125550100"
TOLL_FREE = "+18002752273"
BRIDGE = "+12125550111"
USERS: dict[str, tuple[str | None, list[str]]] = {
    "ann@contoso.com": ("US", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]),
    "bob@contoso.com": ("GB", ["MCOEV", "MCOPSTN2", "MCOPSTNPP"]),
    "cy@contoso.com": ("US", ["MCOEV", "MCOPSTN1"]),
    "dee@contoso.com": ("US", ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"]),
    "eve@contoso.com": ("US", ["SPE_E5", "MCOPSTNPP"]),
    "fay@contoso.com": ("US", ["MCOMEETACPEA", "MCOPSTNPP"]),
    "gus@contoso.com": ("DE", ["MCOEV", "MCOPSTN8"]),
}
NUMBERS = [
    "+12125550199",  # US fixed
    "+14165550123",  # CA
    "+442071234567",  # GB fixed
    "+447911123456",  # GB mobile
    "+33142685300",  # FR fixed
    "+4930123456",  # DE fixed
    "+861012345678",  # CN: no rate
    TOLL_FREE,
    BRIDGE,
    "911",
    "112",
    "12",  # not a number
]
CALL_TYPES = [
    "user_out",
    "user_out",
    "user_out",
    "user_in",
    "conf_out",
    "conf_in",
    "emergency_out",
    "ucap_in",
    "unassigned_in",
    "user_out_forwarding",
    "not_a_type",
]
START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


@dataclass
class World:
    container: Container
    org_id: str


def _world(template: Path, folder: Path, *, overage: bool = False) -> World:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "commcredits.db"
    shutil.copyfile(template, path)
    container = build(make_settings(f"sqlite:///{path}", folder), transport=CollectingTransport())
    return _fill(container, overage=overage)


def _fill(container: Container, *, overage: bool = False) -> World:
    container.rating.load(RATES, "test")
    billing = "postpaid" if overage else "prepaid"
    org = container.orgs.create(
        NewOrganization("Contoso", "US", "USD", billing, overage_enabled=overage)  # type: ignore[arg-type]
    ).id
    if not overage:
        method = container.credits.add_agreement(org, "EA-1")
        container.credits.place_order(org, NewOrder("50.00", method.id))
        container.clock.set(container.clock.now() + timedelta(days=1))  # type: ignore[attr-defined]
        container.credits.place_order(org, NewOrder("50.00", method.id))
    for sku in (
        "MCOEV",
        "MCOPSTN1",
        "MCOPSTN2",
        "MCOPSTN8",
        "MCOPSTN_PAYG_1",
        "SPE_E5",
        "MCOMEETACPEA",
    ):
        container.directory.set_subscription(org, sku, 10, actor="t")
    for upn, (location, licenses) in USERS.items():
        container.directory.create_user(org, upn, upn.split("@")[0], location, actor="t")
        container.directory.change_licenses(org, upn, licenses, [], actor="t")
    container.directory.update_user(
        org, "bob@contoso.com", UserChanges(spend_limit="1.50"), actor="t"
    )
    container.directory.update_user(
        org, "dee@contoso.com", UserChanges(pstn_policy="domestic"), actor="t"
    )
    container.directory.add_number(org, TOLL_FREE, "conference_toll_free", None, actor="t")
    return World(container, org)


def _one_by_one(world: World, records: Sequence[CdrRecord]) -> list[CdrResult]:
    """The reference: each call decided, funded and settled on its own (``Calls``)."""
    calls = world.container.calls
    results, order = calls._import_cdrs(world.org_id, records)
    world.container.credits.pay_if_started(order)
    return results


def _batched(world: World, records: Sequence[CdrRecord], chunk_size: int) -> list[CdrResult]:
    c = world.container
    batches = CdrBatches(c.store, c.clock, c.catalogue, c.rating, c.credits, chunk_size=chunk_size)
    return batches.import_cdrs(world.org_id, records)


def _users(world: World) -> dict[str, str]:
    return {u.id: u.upn for u in world.container.directory.all_users(world.org_id)}


def _plain(value: Any, users: dict[str, str]) -> Any:
    """A value with what differs between two organizations (ids) replaced by what does not."""
    if isinstance(value, dict):
        # A report line starts with the UsageId, a hash of the organization's id.
        return {
            k: (v is not None)
            if k == "rate_table_id"
            else _plain(v[36:] if k == "report_line" and v else v, users)
            for k, v in value.items()
            if k != "org_id"
        }
    if isinstance(value, str):
        for user_id, upn in users.items():
            value = value.replace(user_id, upn)
        return value
    if isinstance(value, Decimal):
        return ("D", value.normalize())
    return value


def _results(world: World, results: list[CdrResult]) -> list[Any]:
    users = _users(world)
    return [
        (
            r.call_id,
            r.status,
            None if r.charge is None else r.charge.normalize(),
            r.error,
            None if r.record is None else _plain(asdict(r.record), users),
        )
        for r in results
    ]


def _state(world: World) -> dict[str, Any]:
    """Everything the batch may have changed: ledger, lots, pools, calls, balance, mail."""
    c, org = world.container, world.org_id
    users = _users(world)
    with c.store.unit_of_work(read_only=True) as uow:
        repo = CreditRepository(uow.conn)
        lots = repo.all_lots(org)
        order = {lot.id: n for n, lot in enumerate(lots)}
        entries = [
            (
                e.seq,
                e.kind,
                e.amount,
                order.get(e.lot_id or ""),
                e.balance_after,
                e.reference if e.kind == "usage" else None,
                e.description if e.kind == "usage" else None,
            )
            for e in repo.all_entries(org)
        ]
        account = repo.account(org)
    assert account is not None
    pools = {
        month: [
            (_plain(repr(key), users), total, used)
            for key, total, used in c.calls.pools(org, month)
        ]
        for month in ("2025-12", "2026-01", "2026-02")
    }
    with c.store.unit_of_work(read_only=True) as uow:
        rows = uow.conn.execute(
            select(calls).where(calls.c.org_id == org).order_by(calls.c.call_id)
        )
        stored = [_plain(dict(row._mapping), users) for row in rows]
    return {
        "entries": entries,
        "lots": [(lot.amount, lot.remaining) for lot in lots],
        "balance": (account.balance, account.reserved, account.zero_notified),
        "pools": pools,
        "calls": stored,
        "mail": sorted((m.kind, m.subject) for m in c.mailer.list_for_org(org, limit=1000)),
    }


@st.composite
def _cdrs(draw: st.DrawFn) -> list[CdrRecord]:
    count = draw(st.integers(0, 30))
    records = []
    for _ in range(count):
        call_type = draw(st.sampled_from(CALL_TYPES))
        upn = draw(st.sampled_from([*USERS, None, "nobody@contoso.com", "ANN@contoso.com "]))
        other = draw(st.sampled_from(NUMBERS))
        inbound = call_type.endswith("_in")
        duration = draw(
            st.one_of(
                st.integers(-1, 400),
                st.integers(3_000, 20_000),
                st.sampled_from([0, 60, 61, 3 * 3600]),
            )
        )
        records.append(
            CdrRecord(
                call_id=f"c{draw(st.integers(0, 60))}",
                call_type=call_type,
                user=upn,
                from_number=other if inbound else ANN_NUMBER,
                to_number=(TOLL_FREE if draw(st.booleans()) else BRIDGE) if inbound else other,
                start_time=START
                + timedelta(minutes=draw(st.integers(-40 * 24 * 60, 20 * 24 * 60))),
                duration_seconds=duration,
            )
        )
    return records


@pytest.mark.parametrize("overage", [False, True], ids=["prepaid", "postpaid_overage"])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(_cdrs(), min_size=1, max_size=3), chunk=st.sampled_from([1, 7, 1000]))
def test_a_batch_charged_at_once_gives_what_charging_each_call_alone_gives(
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    overage: bool,
    batches: list[list[CdrRecord]],
    chunk: int,
) -> None:
    """Same decisions, funding, capabilities, pool use, charges, ledger entries naming each
    call, call rows, duplicates and refusals, in start-time order (R-22, R-28..R-38, R-50a)."""
    folder = tmp_path_factory.mktemp("batch")
    reference = _world(sqlite_template, folder / "one", overage=overage)
    batched = _world(sqlite_template, folder / "batch", overage=overage)
    try:
        for records in batches:
            expected = _one_by_one(reference, records)
            got = _batched(batched, records, chunk)
            assert _results(batched, got) == _results(reference, expected)
        assert _state(batched) == _state(reference)
        assert_ledger_clean(reference.container)
        assert_ledger_clean(batched.container)
    finally:
        reference.container.close()
        batched.container.close()


# -- behaviour a user relies on, on both databases --------------------------------------------

DEAR = HEADER + "outbound,,US,any,5.00,,60,60,USD,2020-01-01,,US (test)\n"
US_FIXED = "+12125550199"


def _dear_org(container: Container) -> tuple[str, CdrBatches]:
    """A prepaid organization with 50.00 of credits (ten minutes at 5.00) and one user who
    pays everything from credits (pay-as-you-go)."""
    container.rating.load(DEAR, "dear")
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid")).id
    method = container.credits.add_agreement(org, "EA-1")
    container.credits.place_order(org, NewOrder("50.00", method.id))
    for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
        container.directory.set_subscription(org, sku, 5, actor="t")
    container.directory.create_user(org, "ann@contoso.com", "Ann", "US", actor="t")
    container.directory.change_licenses(
        org, "ann@contoso.com", ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], [], actor="t"
    )
    c = container
    return org, CdrBatches(c.store, c.clock, c.catalogue, c.rating, c.credits, chunk_size=2)


def _paid(call_id: str, minute: int, seconds: int) -> CdrRecord:
    return CdrRecord(
        call_id,
        "user_out",
        "ann@contoso.com",
        ANN_NUMBER,
        US_FIXED,
        START + timedelta(minutes=minute),
        seconds,
    )


@pytest.mark.usefixtures("ledger_checked")
def test_a_call_id_is_charged_once_ever_and_repeats_are_reported_as_duplicates(
    container: Container,
) -> None:
    """R-28 and the CDR contract: a call id is charged at most once, within a batch and
    across batches; a duplicate is reported and charges nothing."""
    org, batches = _dear_org(container)
    first = batches.import_cdrs(org, [_paid("a", 0, 60), _paid("a", 1, 60), _paid("b", 2, 60)])
    again = batches.import_cdrs(org, [_paid("b", 3, 60), _paid("c", 4, 60)])

    assert [(r.call_id, r.status, r.charge) for r in first + again] == [
        ("a", "charged", Decimal("5.00")),
        ("a", "duplicate", None),
        ("b", "charged", Decimal("5.00")),
        ("b", "duplicate", None),
        ("c", "charged", Decimal("5.00")),
    ]
    assert container.credits.view(org).balance == Decimal("35.00")


@pytest.mark.usefixtures("ledger_checked")
def test_calls_are_charged_in_start_time_order_and_the_balance_never_goes_below_zero(
    container: Container,
) -> None:
    """R-22, R-28: calls arriving out of order are charged oldest first; when the money runs
    out the call that started last is refused with no_credits, the one that ran past the
    balance is charged what was there; answers come back in the order sent."""
    org, batches = _dear_org(container)
    results = batches.import_cdrs(
        org,
        [
            _paid("late", 30, 60),  # starts last: nothing left for it
            _paid("long", 10, 8 * 60),  # 40.00
            _paid("over", 20, 3 * 60),  # 15.00 wanted, 10.00 left
            _paid("bad", 5, -1),
        ],
    )

    assert [(r.call_id, r.status, r.charge, r.error) for r in results] == [
        ("late", "rejected", None, "no_credits"),
        ("long", "charged", Decimal("40.00"), None),
        ("over", "charged", Decimal("10.00"), None),
        ("bad", "rejected", None, "invalid_request"),
    ]
    view = container.credits.view(org)
    assert view.balance == Decimal(0)
    usage = [
        (e.reference, e.amount, e.balance_after)
        for e in reversed(container.credits.transactions(org))
        if e.kind == "usage"
    ]
    assert usage == [
        ("long", Decimal("-40.00"), Decimal("10.00")),
        ("over", Decimal("-10.00"), Decimal("0.00")),
    ]
    kinds = [m.kind for m in container.mailer.list_for_org(org)]
    assert kinds.count("balance_zero") == 1


@pytest.mark.usefixtures("ledger_checked")
def test_an_expired_lot_is_forfeited_before_the_batch_spends_the_live_one(
    container: Container,
) -> None:
    """R-21, R-22: a lot whose 12 months are over is never drawn on: the batch's account
    forfeits it first (an expiry entry), then charges the calls to the live lot."""
    org, batches = _dear_org(container)
    method = container.credits.add_agreement(org, "EA-2")
    container.clock.set(START + timedelta(days=200))  # type: ignore[attr-defined]
    container.credits.place_order(org, NewOrder("50.00", method.id))
    container.clock.set(START + timedelta(days=366))  # type: ignore[attr-defined]

    [result] = batches.import_cdrs(org, [_paid("x", 366 * 24 * 60, 60)])

    assert (result.status, result.charge) == ("charged", Decimal("5.00"))
    entries = list(reversed(container.credits.transactions(org)))
    assert [(e.kind, e.amount) for e in entries[-2:]] == [
        ("expiry", Decimal("-50.00")),
        ("usage", Decimal("-5.00")),
    ]
    assert container.credits.view(org).balance == Decimal("45.00")


@pytest.mark.usefixtures("ledger_checked")
def test_a_charged_call_reads_back_from_the_store_as_the_batch_reported_it(
    container: Container,
) -> None:
    """R-50: the row the batch writes through the driver (instants, rate text, money in
    micro-units) is the record it answered with, on both databases."""
    org, batches = _dear_org(container)
    late_evening = datetime(2026, 1, 15, 23, 59, 59, 999_999, tzinfo=UTC)
    results = batches.import_cdrs(
        org,
        [
            _paid("whole", 0, 60),
            CdrRecord("edge", "user_out", "ann@contoso.com", ANN_NUMBER, US_FIXED, late_evening, 1),
        ],
    )

    for result in results:
        assert result.status == "charged"
        assert container.calls.get(org, result.call_id) == result.record
    assert [r.charge for r in results] == [Decimal("5.00"), Decimal("5.00")]


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=18)


def _refused(number: str) -> Destination | None:
    try:
        return classify(number)
    except RuleViolation:
        return None


_CODES = ["1", "44", "33", "49", "39", "358", "7", "86", "800", "882", "979"]


@settings(max_examples=2_000, deadline=None)
@given(
    number=st.one_of(
        _DIGITS.map(lambda digits: f"+{digits}"),
        st.sampled_from(_CODES).flatmap(lambda code: _DIGITS.map(lambda rest: f"+{code}{rest}")),
        st.sampled_from(NUMBERS).map(lambda n: f" {n} "),
        st.text(alphabet="+0123456789 -()x", max_size=20),
    )
)
def test_the_batch_classifies_a_number_as_rating_does(number: str) -> None:
    """R-42: the batch's own reading of E.164 numbers gives the country, number type and
    refusals that ``classify`` gives (the rate a call gets depends on them)."""
    assert classify_number(number) == _refused(number)


@pytest.mark.parametrize(
    "number",
    [*NUMBERS, "+3901234567", "+39000000", "+80012345678", "+8821234567", "+0123", "+1", "+12"],
)
def test_numbers_the_fixtures_use_are_classified_as_rating_does(number: str) -> None:
    """R-42, with Italian leading zeros, non-geographic codes and numbers too short to parse."""
    assert classify_number(number) == _refused(number)
