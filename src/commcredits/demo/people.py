"""The demo organization: offices, people, their licenses and numbers, drawn from one seed.

Fabrikam is billed in the US in USD and has offices in New York, London, Berlin and Paris.
Everyone holds Microsoft 365 E5 (Audio Conferencing and Teams Phone) and Communications
Credits; most hold a calling plan of their office's country, chosen so each kind of funding
shows up: large US pools, an international plan in London, a pay-as-you-go plan in Berlin
(every outbound minute charged) and a 120-minute plan in Paris that runs out every month.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

import phonenumbers
from phonenumbers import PhoneNumberType

ORG_NAME = "Fabrikam (demo)"
DOMAIN = "fabrikam.example"
ADMIN_NAMES = ("Megan Bowen", "Alex Wilber")
"""The global admin (who signs in to the console) and the billing admin."""
ADMIN_EMAIL = f"megan.bowen@{DOMAIN}"
E5 = "SPE_E5"
CREDITS = "MCOPSTNPP"
DIALOUT_US = "MCOMEETADD_DIALOUT_US"


@dataclass(frozen=True, slots=True)
class Office:
    country: str
    city: str
    utc_offset: int
    """Hours from UTC of the office's working day (standard time; close enough for traffic)."""
    share: int
    """Percent of the headcount."""
    plans: tuple[tuple[str | None, int], ...]
    """Calling plans and the percent of the office holding each; None: conferencing only."""
    did_prefix: str
    """The office's direct-dial numbers start with this; the rest is drawn."""
    international: tuple[str, ...]
    """Countries the office calls abroad, most frequent first."""


OFFICES: tuple[Office, ...] = (
    Office(
        "US",
        "New York",
        -5,
        40,
        (("MCOPSTN1", 70), ("MCOPSTN2", 20), (None, 10)),
        "+1212555",
        ("CA", "MX", "GB", "DE", "FR", "IN", "BR", "JP"),
    ),
    Office(
        "GB",
        "London",
        0,
        24,
        (("MCOPSTN1", 50), ("MCOPSTN2", 25), (None, 25)),
        "+4420794",
        ("US", "IE", "FR", "DE", "NL", "ES", "IN"),
    ),
    Office(
        "DE",
        "Berlin",
        1,
        20,
        (("MCOPSTN_PAYG_2", 80), (None, 20)),
        "+4930901",
        ("AT", "CH", "NL", "FR", "PL", "US", "GB"),
    ),
    Office(
        "FR",
        "Paris",
        1,
        16,
        (("MCOPSTN5", 85), (None, 15)),
        "+33142",
        ("BE", "CH", "ES", "IT", "DE", "GB", "US"),
    ),
)
OFFICE_BY_COUNTRY = {office.country: office for office in OFFICES}

# Meeting dial-out destinations outside Zone A: charged per minute from credits.
OUTSIDE_ZONE_A: tuple[str, ...] = ("AE", "EG", "NG", "PH", "AR")
ZONE_A_DIALOUT: tuple[str, ...] = ("US", "GB", "DE", "FR", "IE", "NL", "ES", "IT", "CA", "JP")

_FIRST = {
    "US": ("Megan", "Alex", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Avery", "Jamie",
           "Drew", "Parker", "Quinn", "Reese", "Hayden", "Logan", "Skyler", "Cameron", "Dana"),
    "GB": ("Oliver", "Amelia", "Harry", "Isla", "George", "Ava", "Noah", "Mia", "Jack",
           "Grace", "Charlie", "Freya", "Arthur", "Poppy", "Leo", "Evie"),
    "DE": ("Lukas", "Anna", "Finn", "Lena", "Jonas", "Marie", "Paul", "Sophie", "Felix",
           "Laura", "Max", "Hannah", "Elias", "Lea"),
    "FR": ("Louis", "Chloé", "Gabriel", "Léa", "Hugo", "Manon", "Arthur", "Camille",
           "Jules", "Inès", "Nathan", "Zoé"),
}  # fmt: skip
_LAST = {
    "US": ("Bowen", "Wilber", "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis",
           "Martinez", "Lopez", "Wilson", "Anderson", "Thomas", "Moore", "Jackson", "Lee"),
    "GB": ("Taylor", "Evans", "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes",
           "Edwards", "Green", "Hall", "Wood"),
    "DE": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
           "Becker", "Schulz", "Hoffmann", "Koch", "Richter"),
    "FR": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit",
           "Durand", "Leroy", "Moreau", "Simon", "Laurent"),
}  # fmt: skip
_ASCII = str.maketrans({"é": "e", "ü": "u", "ö": "o", "ä": "a", "è": "e", "ï": "i"})


@dataclass(frozen=True, slots=True)
class Person:
    upn: str
    display_name: str
    country: str
    plan: str | None
    """The calling plan, or None for someone who only meets (E5 conferencing)."""
    number: str | None
    """The direct-dial number, for those with a calling plan."""
    activity: float
    """How much this person phones, relative to the office's average."""
    dialout_us: bool = False

    @property
    def licenses(self) -> tuple[str, ...]:
        held = [E5, self.plan, CREDITS, DIALOUT_US if self.dialout_us else None]
        return tuple(sku for sku in held if sku)


@dataclass(frozen=True, slots=True)
class Funding:
    """The money side, scaled to the headcount: a pilot deposit a year before the roll-out
    (the lot that expires) with a small auto-recharge, then the roll-out's deposit and
    auto-recharge."""

    pilot_deposit: Decimal
    pilot_trigger: Decimal
    pilot_recharge: Decimal
    deposit: Decimal
    trigger: Decimal
    recharge: Decimal


@dataclass(frozen=True, slots=True)
class DemoOrganization:
    people: tuple[Person, ...]
    toll_free: dict[str, str]
    """Country -> the organization's toll-free conference number there (R-34)."""
    funding: Funding

    @property
    def admin(self) -> Person:
        """The global admin who signs in to the console (the first New Yorker)."""
        return self.people[0]

    @property
    def billing_admin(self) -> Person:
        return self.people[1]

    def seats(self) -> dict[str, int]:
        """Seats to buy per SKU (MCOPSTNPP needs none: R-10)."""
        counts: dict[str, int] = {}
        for person in self.people:
            for sku in person.licenses:
                if sku != CREDITS:
                    counts[sku] = counts.get(sku, 0) + 1
        return counts


def _scaled(amount: int, users: int, floor: int) -> Decimal:
    return Decimal(max(floor, round(amount * users / 50 / 10) * 10))


def build_organization(rng: random.Random, users: int) -> DemoOrganization:
    """Draw the people of the demo organization: ``users`` of them across the four offices."""
    if users < len(OFFICES) * 2:
        raise ValueError(f"the demo needs at least {len(OFFICES) * 2} users")
    sizes = [max(2, users * office.share // 100) for office in OFFICES]
    sizes[0] += users - sum(sizes)
    # The two admins have fixed names, so the sign-in and the docs can name them.
    fixed_names = list(ADMIN_NAMES)
    taken_names: set[str] = set(fixed_names)
    taken_numbers: set[str] = set()
    people: list[Person] = []
    for office, size in zip(OFFICES, sizes, strict=True):
        plans = _plans_for(office, size)
        for index, plan in enumerate(plans):
            name = fixed_names.pop(0) if fixed_names else _unique_name(rng, office, taken_names)
            number = _did(rng, office, taken_numbers) if plan else None
            people.append(
                Person(
                    upn=f"{name.lower().replace(' ', '.').translate(_ASCII)}@{DOMAIN}",
                    display_name=name,
                    country=office.country,
                    plan=plan,
                    number=number,
                    activity=round(rng.lognormvariate(0, 0.45), 3),
                    # Two US organizers dial out to North America without pool or credits.
                    dialout_us=office.country == "US" and index in (2, 3),
                )
            )
    toll_free = {office.country: _toll_free(rng, office.country) for office in OFFICES}
    funding = Funding(
        pilot_deposit=_scaled(200, users, 50),
        pilot_trigger=_scaled(20, users, 10),
        pilot_recharge=_scaled(50, users, 10),
        deposit=_scaled(300, users, 50),
        trigger=_scaled(100, users, 10),
        recharge=_scaled(200, users, 10),
    )
    return DemoOrganization(tuple(people), toll_free, funding)


def _plans_for(office: Office, size: int) -> list[str | None]:
    plans: list[str | None] = []
    for plan, percent in office.plans:
        plans += [plan] * round(size * percent / 100)
    plans = (plans + [office.plans[0][0]] * size)[:size]
    # The first two people (the admins) always have a phone.
    return sorted(plans, key=lambda plan: plan is None)


def _unique_name(rng: random.Random, office: Office, taken: set[str]) -> str:
    first, last = _FIRST[office.country], _LAST[office.country]
    for attempt in range(1000):
        name = f"{rng.choice(first)} {rng.choice(last)}"
        if attempt > 100:  # a large headcount runs out of plain combinations
            name = f"{name} {attempt}"
        if name not in taken:
            taken.add(name)
            return name
    raise ValueError("too many people for the demo's name lists")


_KINDS = {
    "fixed": (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE),
    "mobile": (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE),
    "toll_free": (PhoneNumberType.TOLL_FREE,),
}


def _valid(text: str, kind: str) -> bool:
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in _KINDS[kind]


def _drawn(rng: random.Random, prefix: str, total_digits: int, kind: str) -> str:
    """A valid number of ``kind`` that starts with ``prefix`` and has ``total_digits``
    digits after the plus sign."""
    for _ in range(200):
        rest = "".join(str(rng.randrange(10)) for _ in range(total_digits - len(prefix) + 1))
        candidate = prefix + rest
        if _valid(candidate, kind):
            return candidate
    raise ValueError(f"no valid {kind} number starts with {prefix}")


def _did(rng: random.Random, office: Office, taken: set[str]) -> str:
    length = len(_example(office.country, "fixed")) - 1
    while True:
        number = _drawn(rng, office.did_prefix, length, "fixed")
        if number not in taken:
            taken.add(number)
            return number


@cache
def _example(country: str, kind: str) -> str:
    found = phonenumbers.example_number_for_type(country, _KINDS[kind][0])
    if found is None:
        raise ValueError(f"no example {kind} number for {country}")
    return phonenumbers.format_number(found, phonenumbers.PhoneNumberFormat.E164)


def _toll_free(rng: random.Random, country: str) -> str:
    example = _example(country, "toll_free")
    keep = len(example) - 4
    return _drawn(rng, example[:keep], len(example) - 1, "toll_free")


def external_number(rng: random.Random, country: str, kind: str = "fixed") -> str:
    """Someone outside the organization: a valid number of ``kind`` in ``country``."""
    example = _example(country, kind)
    keep = max(len(example) - 6, 4)
    return _drawn(rng, example[:keep], len(example) - 1, kind)


@dataclass
class ContactBook:
    """The outside numbers an organization deals with: customers, suppliers, colleagues'
    mobiles. People call the same numbers again and again; drawing from a book per country
    and kind is also far cheaper than validating a new number for every call."""

    rng: random.Random
    size: int = 60
    _numbers: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def pick(self, country: str, kind: str = "fixed") -> str:
        numbers = self._numbers.get((country, kind))
        if numbers is None:
            numbers = [external_number(self.rng, country, kind) for _ in range(self.size)]
            self._numbers[(country, kind)] = numbers
        return self.rng.choice(numbers)
