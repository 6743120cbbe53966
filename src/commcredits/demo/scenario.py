"""The demo scenario: Fabrikam signs up, rolls out Teams Phone, and phones for a few months.

The story, on the simulated clock (every step through the HTTP API):

1. A year before the first simulated month, Fabrikam signs up: its admins, a card that
   expires at the end of that first month, and a pilot deposit (a lot, R-20, R-21).
2. On the 1st of the first month it rolls out: seats, users, licenses in bulk (R-14), direct
   numbers, toll-free conference numbers in four countries (R-34), and a deposit with
   auto-recharge (R-23).
3. Day by day the clock moves to 23:30 UTC, running the jobs that fell due on the way: the
   pilot lot is warned about 30 and 7 days ahead and expires on the 9th of the first month
   with money left in it (R-21, R-26); recharge retries and mail go out. Then the day's calls
   are sent: meeting traffic (toll-free dial-ins, dial-outs) through live call control with
   its slices, the offices' calls in one CDR batch.
4. In the second month the card has expired: the next recharge is declined (R-26, R-27). The
   next working day the global admin adds a new card and points auto-recharge at it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from commcredits.demo.api import DemoApi, rfc3339
from commcredits.demo.people import ORG_NAME, DemoOrganization, build_organization
from commcredits.demo.traffic import Call, TrafficGenerator

FIRST_MONTH = date(2026, 9, 1)
SIGNUP = datetime(2025, 9, 9, 16, 0, tzinfo=UTC)
"""When the organization signs up; the pilot lot bought then expires a year later (R-21)."""
ROLLOUT_AT = timedelta(hours=6)
"""The roll-out happens early on the 1st of the first month, before Europe starts work."""
DAY_ENDS_AT = timedelta(hours=23, minutes=30)
"""The clock stops once a day, after the last office (New York) has gone home."""
ADMIN_FIXES_AT = timedelta(hours=14)
FIRST_CARD = {"number": "4242424242424242", "exp_month": 9, "exp_year": 2026, "cvc": "123"}
NEW_CARD = {"number": "5555555555554444", "exp_month": 11, "exp_year": 2030, "cvc": "321"}
LEAVE_LIVE_CALL = 60
"""The switch asks for the next slice this many seconds before the granted time runs out."""

Progress = Callable[[int, int, str], None]
"""Called after each simulated day with (days done, days in all, a line about the state)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seed: int = 1
    months: int = 3
    users: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.months <= 12:
            raise ValueError("months is 1 to 12")
        if not 8 <= self.users <= 500:
            raise ValueError("users is 8 to 500")


def month_starts(months: int) -> list[date]:
    """The first day of each simulated month, and of the month after the last."""
    starts = [FIRST_MONTH]
    for _ in range(months):
        last = starts[-1]
        starts.append(date(last.year + last.month // 12, last.month % 12 + 1, 1))
    return starts


def end_of_demo(months: int) -> datetime:
    """Where the clock stands when the demo is over: the last stop of its last day."""
    return _at(month_starts(months)[-1] - timedelta(days=1), DAY_ENDS_AT)


@dataclass
class DemoResult:
    org_id: str
    organization: DemoOrganization
    admin_key: str
    calls_sent: int = 0
    live_calls: int = 0
    cdr_records: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    card_replaced_at: datetime | None = None


class Scenario:
    """Runs the story above against the API as the operator, the organization's admin and
    its telephony edge."""

    def __init__(self, operator: DemoApi, options: DemoOptions, progress: Progress | None = None):
        self.operator = operator
        self.options = options
        self.progress = progress or (lambda done, total, line: None)
        # Not for secrets: a seeded generator, so the same seed tells the same story.
        self.rng = random.Random(options.seed)  # noqa: S311
        self.org = build_organization(self.rng, options.users)

    # -- the story ------------------------------------------------------------------------

    def run(self) -> DemoResult:
        result = self._sign_up()
        admin = self.operator.as_key(result.admin_key)
        base = f"/v1/orgs/{result.org_id}"
        self._move_clock(_at(FIRST_MONTH, ROLLOUT_AT))
        telephony = self._roll_out(admin, base)
        traffic = TrafficGenerator(self.rng, self.org)
        days = list(_days(FIRST_MONTH, month_starts(self.options.months)[-1]))
        pending: list[Call] = []
        fix_due: date | None = None
        for done, day in enumerate(days, start=1):
            pending += traffic.day(day)
            if fix_due == day:
                # The global admin read the recharge_failed mail and replaces the card.
                self._move_clock(_at(day, ADMIN_FIXES_AT))
                self._replace_card(admin, base)
                result.card_replaced_at = _at(day, ADMIN_FIXES_AT)
            stop = _at(day, DAY_ENDS_AT)
            self._move_clock(stop)
            self._send(telephony, base, [call for call in pending if call.end <= stop], result)
            pending = [call for call in pending if call.end > stop]
            credits = admin.get(f"{base}/credits")
            failing = credits["auto_recharge"]["status"] in ("retrying", "failing")
            if failing and result.card_replaced_at is None and fix_due is None:
                fix_due = _next_working_day(day)
            self.progress(done, len(days), f"{day:%a %d %b %Y}  balance {credits['balance']}")
        if pending:
            self._move_clock(max(call.end for call in pending))
            self._send(telephony, base, pending, result)
        self.operator.post("/v1/system/jobs/run")  # the last mails of the last stop
        return result

    def _sign_up(self) -> DemoResult:
        operator, org = self.operator, self.org
        created = operator.post(
            "/v1/orgs",
            {"name": ORG_NAME, "country": "US", "currency": "USD", "billing": "prepaid"},
            idempotency_key="demo-signup",
        )
        base = f"/v1/orgs/{created['id']}"
        admins = ((org.admin, "global_admin"), (org.billing_admin, "billing_admin"))
        for person, role in admins:
            operator.post(
                f"{base}/admins",
                {"email": person.upn, "display_name": person.display_name, "roles": [role]},
            )
        key = operator.post(f"{base}/keys", {"name": "Fabrikam IT (demo)", "role": "admin"})["key"]
        admin = operator.as_key(key)
        card = admin.post(
            f"{base}/payment-methods", {"type": "card", **FIRST_CARD, "holder": "Megan Bowen"}
        )
        admin.post(
            f"{base}/credits/orders",
            {
                "amount": str(org.funding.pilot_deposit),
                "payment_method": card["id"],
                "auto_recharge": _auto_recharge(
                    org.funding.pilot_trigger, org.funding.pilot_recharge
                ),
            },
            idempotency_key="demo-pilot-deposit",
        )
        return DemoResult(org_id=created["id"], organization=org, admin_key=key)

    def _roll_out(self, admin: DemoApi, base: str) -> DemoApi:
        org = self.org
        for sku, seats in sorted(org.seats().items()):
            admin.post(f"{base}/subscriptions", {"sku": sku, "quantity": seats})
        by_licenses: dict[tuple[str, ...], list[str]] = {}
        for person in org.people:
            admin.post(
                f"{base}/users",
                {
                    "upn": person.upn,
                    "display_name": person.display_name,
                    "usage_location": person.country,
                },
            )
            by_licenses.setdefault(person.licenses, []).append(person.upn)
        for licenses, upns in by_licenses.items():
            answer = admin.post(f"{base}/licenses:bulk", {"users": upns, "add": list(licenses)})
            refused = [r for r in answer["results"] if not r["ok"]]
            if refused:
                raise RuntimeError(f"the demo's licenses were refused: {refused[:3]}")
        for person in org.people:
            if person.number:
                admin.post(
                    f"{base}/numbers",
                    {"number": person.number, "kind": "user", "assigned_to": person.upn},
                )
        for number in org.toll_free.values():
            admin.post(
                f"{base}/numbers",
                {"number": number, "kind": "conference_toll_free", "assigned_to": None},
            )
        [card] = admin.get(f"{base}/payment-methods")
        admin.post(
            f"{base}/credits/orders",
            {
                "amount": str(org.funding.deposit),
                "payment_method": card["id"],
                "auto_recharge": _auto_recharge(org.funding.trigger, org.funding.recharge),
            },
            idempotency_key="demo-rollout-deposit",
        )
        key = admin.post(f"{base}/keys", {"name": "telephony edge (demo)", "role": "telephony"})
        return admin.as_key(key["key"])

    def _replace_card(self, admin: DemoApi, base: str) -> None:
        funding = self.org.funding
        card = admin.post(
            f"{base}/payment-methods", {"type": "card", **NEW_CARD, "holder": "Megan Bowen"}
        )
        settings = _auto_recharge(funding.trigger, funding.recharge)
        admin.put(f"{base}/credits/auto-recharge", {**settings, "payment_method": card["id"]})

    # -- traffic ---------------------------------------------------------------------------

    def _move_clock(self, when: datetime) -> None:
        self.operator.post("/v1/system/clock", {"now": rfc3339(when)})

    def _send(self, telephony: DemoApi, base: str, calls: list[Call], result: DemoResult) -> None:
        for call in calls:
            if call.live:
                self._live(telephony, base, call, result)
        batch = [_cdr(call) for call in calls if not call.live]
        if batch:
            answer = telephony.post(f"{base}/cdrs", {"records": batch})
            for one in answer["results"]:
                if one["status"] == "rejected":
                    _count(result.refused, one["error"])
            result.cdr_records += len(batch)
        result.calls_sent += len(calls)

    def _live(self, telephony: DemoApi, base: str, call: Call, result: DemoResult) -> None:
        """Call control as a switch does it: authorize, ask for slices, hang up, end."""
        decision = telephony.post(f"{base}/calls", _request(call))
        result.live_calls += 1
        if decision["decision"] != "allow":
            _count(result.refused, decision["reason"])
            return
        granted = decision["granted_seconds"]
        while granted < call.duration:
            used = max(granted - LEAVE_LIVE_CALL, 0)
            more = telephony.post(f"{base}/calls/{call.call_id}/usage", {"used_seconds": used})
            if used + more["granted_seconds"] <= granted:
                break  # nothing more granted: the money ran out, the switch hangs up
            granted = used + more["granted_seconds"]
        duration = min(call.duration, granted)
        telephony.post(
            f"{base}/calls/{call.call_id}/end",
            {
                "duration_seconds": duration,
                "end_time": rfc3339(call.start + timedelta(seconds=duration)),
            },
        )


def _auto_recharge(trigger: Decimal, recharge: Decimal) -> dict[str, Any]:
    return {"enabled": True, "trigger_amount": str(trigger), "recharge_amount": str(recharge)}


def _request(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "call_type": call.call_type,
        "user": call.user,
        "from": call.from_number,
        "to": call.to_number,
        "conference_id": call.conference_id,
        "start_time": rfc3339(call.start),
    }


def _cdr(call: Call) -> dict[str, Any]:
    return {**_request(call), "duration_seconds": call.duration}


def _count(counts: dict[str, int], reason: str | None) -> None:
    key = reason or "unknown"
    counts[key] = counts.get(key, 0) + 1


def _days(first: date, stop: date) -> Iterator[date]:
    day = first
    while day < stop:
        yield day
        day += timedelta(days=1)


def _at(day: date, time_of_day: timedelta) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + time_of_day


def _next_working_day(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day
