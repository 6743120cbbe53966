"""The demo's telephone traffic: one day of calls at a time, drawn from the seeded generator.

Office calls arrive during each office's working hours (two peaks, mid-morning and
mid-afternoon, local time), last a lognormal time (median two and a half minutes), and go
mostly to numbers in the office's country. Meetings bring toll-free dial-ins (the external
participants, mostly from the organizer's country) and a few dial-outs, some of them to
countries outside Zone A. Weekends are quiet.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from commcredits.demo.people import (
    OFFICE_BY_COUNTRY,
    OFFICES,
    OUTSIDE_ZONE_A,
    ZONE_A_DIALOUT,
    ContactBook,
    DemoOrganization,
    Person,
)

# Per person with a calling plan, per working day (scaled by the person's activity).
OUTBOUND_PER_DAY = 1.4
INBOUND_PER_DAY = 0.9
# International share of outbound calls per office; twice that on an international plan.
INTERNATIONAL_SHARE = {"US": 0.05, "GB": 0.10, "DE": 0.08, "FR": 0.08}
# Per 50 people, per working day.
MEETINGS_WITH_DIAL_IN = 1.4
DIAL_OUTS = 0.8
OUTSIDE_ZONE_A_SHARE = 0.3
WEEKEND_FACTOR = 0.05
LONGEST_CALL = 2 * 3600


@dataclass(frozen=True, slots=True)
class Call:
    """One call as the telephony edge reports it."""

    call_id: str
    call_type: str
    user: str
    """The user's UPN; for meeting calls, the organizer's (R-35)."""
    from_number: str
    to_number: str
    start: datetime
    duration: int
    """Seconds the call would last if nothing stopped it."""
    live: bool
    """Decided live through call control; otherwise sent later in a CDR batch."""
    conference_id: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _local_time(rng: random.Random) -> float:
    """Hours after local midnight: a mid-morning and a mid-afternoon peak, office hours."""
    peak = 10.5 if rng.random() < 0.55 else 14.75
    return min(max(rng.gauss(peak, 1.3), 8.0), 18.25)


def _start(rng: random.Random, day: date, country: str, hour: float | None = None) -> datetime:
    local = _local_time(rng) if hour is None else hour
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    offset = OFFICE_BY_COUNTRY[country].utc_offset
    return midnight + timedelta(seconds=round((local - offset) * 3600))


def _duration(rng: random.Random, median_seconds: float, sigma: float) -> int:
    return max(5, min(LONGEST_CALL, round(rng.lognormvariate(math.log(median_seconds), sigma))))


class TrafficGenerator:
    """Draws each day's calls for one organization; the same seed gives the same calls."""

    def __init__(self, rng: random.Random, organization: DemoOrganization):
        self.rng = rng
        self.org = organization
        self.phones = [p for p in organization.people if p.number is not None]
        self.contacts = ContactBook(rng)
        self._serial = 0

    def _id(self, day: date) -> str:
        self._serial += 1
        return f"c-{day:%Y%m%d}-{self._serial:06d}"

    def day(self, day: date) -> list[Call]:
        """The calls that start on ``day`` (UTC), in start order."""
        working = day.weekday() < 5
        factor = 1.0 if working else WEEKEND_FACTOR
        calls: list[Call] = []
        for person in self.phones:
            for _ in range(_poisson(self.rng, OUTBOUND_PER_DAY * person.activity * factor)):
                calls.append(self._outbound(day, person))
            for _ in range(_poisson(self.rng, INBOUND_PER_DAY * person.activity * factor)):
                calls.append(self._inbound(day, person))
        if working:
            scale = len(self.org.people) / 50
            for meeting in range(_poisson(self.rng, MEETINGS_WITH_DIAL_IN * scale)):
                calls += self._meeting(day, meeting)
            for _ in range(_poisson(self.rng, DIAL_OUTS * scale)):
                calls.append(self._dial_out(day))
        return sorted(calls, key=lambda call: (call.start, call.call_id))

    def _destination(self, person: Person) -> str:
        rng = self.rng
        share = INTERNATIONAL_SHARE[person.country] * (2 if person.plan == "MCOPSTN2" else 1)
        if rng.random() < share:
            abroad = OFFICE_BY_COUNTRY[person.country].international
            # Earlier countries in the office's list are called more often.
            country = rng.choices(abroad, weights=range(len(abroad), 0, -1))[0]
        else:
            country = person.country
        return self.contacts.pick(country, "mobile" if rng.random() < 0.35 else "fixed")

    def _outbound(self, day: date, person: Person) -> Call:
        assert person.number is not None
        return Call(
            call_id=self._id(day),
            call_type="user_out",
            user=person.upn,
            from_number=person.number,
            to_number=self._destination(person),
            start=_start(self.rng, day, person.country),
            duration=_duration(self.rng, 150, 0.9),
            live=False,
        )

    def _inbound(self, day: date, person: Person) -> Call:
        assert person.number is not None
        kind = "mobile" if self.rng.random() < 0.4 else "fixed"
        return Call(
            call_id=self._id(day),
            call_type="user_in",
            user=person.upn,
            from_number=self.contacts.pick(person.country, kind),
            to_number=person.number,
            start=_start(self.rng, day, person.country),
            duration=_duration(self.rng, 140, 0.8),
            live=False,
        )

    def _meeting(self, day: date, index: int) -> list[Call]:
        rng = self.rng
        organizer = rng.choice(self.org.people)
        hour = round(_local_time(rng) * 2) / 2  # meetings start on the hour or half hour
        start = _start(rng, day, organizer.country, min(hour, 17.0))
        length = _duration(rng, 40 * 60, 0.35)
        conference = f"m-{day:%Y%m%d}-{index + 1:02d}"
        others = [office.country for office in OFFICES if office.country != organizer.country]
        legs = []
        for _ in range(1 + _poisson(rng, 0.7)):
            country = organizer.country if rng.random() < 0.55 else rng.choice(others)
            joins = rng.randrange(0, 240)
            leaves = max(60, length - joins - rng.randrange(0, 300))
            legs.append(
                Call(
                    call_id=self._id(day),
                    call_type="conf_in",
                    user=organizer.upn,
                    from_number=self.contacts.pick(country, rng.choice(("fixed", "mobile"))),
                    to_number=self.org.toll_free[country],
                    start=start + timedelta(seconds=joins),
                    duration=leaves,
                    live=True,
                    conference_id=conference,
                )
            )
        return legs

    def _dial_out(self, day: date) -> Call:
        rng = self.rng
        organizer = rng.choice(self.org.people)
        if rng.random() < OUTSIDE_ZONE_A_SHARE:
            country = rng.choice(OUTSIDE_ZONE_A)
        else:
            country = rng.choice(ZONE_A_DIALOUT)
        start = _start(rng, day, organizer.country)
        return Call(
            call_id=self._id(day),
            call_type="conf_out",
            user=organizer.upn,
            from_number=organizer.number or self.org.toll_free[organizer.country],
            to_number=self.contacts.pick(country, "mobile" if rng.random() < 0.5 else "fixed"),
            start=start,
            duration=_duration(rng, 18 * 60, 0.5),
            live=True,
            conference_id=f"m-{day:%Y%m%d}-d{self._serial}",
        )
