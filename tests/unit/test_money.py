"""Money: exact decimals, one rounding policy, currencies never mixed (R-41)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.money import (
    Money,
    check_currency,
    from_micros,
    minor_units,
    parse_amount,
    parse_money,
    quantize,
    to_micros,
)


def test_amounts_parse_from_strings_ints_and_decimals_exactly() -> None:
    assert parse_amount("50.00") == Decimal("50.00")
    assert parse_amount("-12.5") == Decimal("-12.5")
    assert parse_amount(7) == Decimal(7)
    assert parse_amount(Decimal("0.000001")) == Decimal("0.000001")


@pytest.mark.parametrize("value", [0.1, 50.0, True])
def test_floats_and_booleans_are_never_accepted_as_amounts(value: object) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_amount(value)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_amount"


@pytest.mark.parametrize("text", ["", "abc", "1e3", "NaN", "Infinity", "1.2.3", "١٢", " . "])
def test_text_that_is_not_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(RuleViolation) as raised:
        parse_amount(text)
    assert raised.value.code == "invalid_amount"


def test_absurdly_large_amounts_are_refused() -> None:
    with pytest.raises(RuleViolation) as raised:
        parse_amount("1000000000000")
    assert raised.value.code == "amount_too_large"


@pytest.mark.parametrize(
    ("currency", "decimals"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3)]
)
def test_minor_units_follow_iso_4217(currency: str, decimals: int) -> None:
    assert minor_units(currency) == decimals


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "USD", "1.01"),  # half-up, where banker's rounding would give 1.00
        ("1.004999", "USD", "1.00"),
        ("-1.005", "USD", "-1.01"),  # half-up rounds away from zero
        ("2.5", "JPY", "3"),
        ("1234.4999", "JPY", "1234"),
        ("0.0005", "BHD", "0.001"),
    ],
)
def test_quantize_rounds_half_up_to_the_currency_minor_unit(
    amount: str, currency: str, expected: str
) -> None:
    assert quantize(Decimal(amount), currency) == Decimal(expected)
    assert str(quantize(Decimal(amount), currency)) == expected


def test_quantize_takes_another_rounding_only_when_asked() -> None:
    assert quantize(Decimal("1.009"), "USD", ROUND_DOWN) == Decimal("1.00")


def test_a_hundred_thirds_of_a_cent_sum_exactly_before_one_rounding() -> None:
    third = Money(Decimal(1) / Decimal(300), "USD")
    total = Money.zero("USD")
    for _ in range(100):
        total += third
    assert total.quantized() == Money(Decimal("0.33"), "USD")


def test_money_in_different_currencies_never_mixes() -> None:
    with pytest.raises(ValueError, match="USD with EUR"):
        _ = Money.of("1", "USD") + Money.of("1", "EUR")
    with pytest.raises(ValueError, match="USD with JPY"):
        _ = Money.of("1", "USD") < Money.of("1", "JPY")


def test_money_refuses_a_float_amount() -> None:
    with pytest.raises(TypeError):
        Money(0.1, "USD")  # type: ignore[arg-type]


def test_money_arithmetic_is_exact() -> None:
    a = Money.of("0.10", "USD")
    b = Money.of("0.20", "USD")
    assert a + b == Money.of("0.30", "USD")
    assert (b - a) * 3 == Money.of("0.30", "USD")
    assert -a == Money.of("-0.10", "USD")
    assert not Money.zero("USD")


def test_money_formats_with_exactly_the_currency_decimals() -> None:
    assert Money.of("50", "USD").format() == "50.00"
    assert Money.of("5000", "JPY").format() == "5000"
    assert Money.of("1.5", "BHD").format() == "1.500"
    assert str(Money.of("12.3", "EUR")) == "12.30 EUR"


def test_user_amounts_with_more_decimals_than_the_currency_are_refused() -> None:
    assert parse_money("50.00", "USD") == Money.of("50", "USD")
    with pytest.raises(RuleViolation) as raised:
        parse_money("50.001", "USD")
    assert raised.value.code == "too_many_decimals"
    with pytest.raises(RuleViolation):
        parse_money("100.5", "JPY")
    assert parse_money("100", "JPY").format() == "100"


def test_micro_units_round_trip_exactly_and_refuse_what_they_cannot_hold() -> None:
    assert to_micros(Decimal("50.00")) == 50_000_000
    assert to_micros(Decimal("-0.000001")) == -1
    assert from_micros(50_000_000) == Decimal("50")
    assert Money.from_micros(1_234_567, "USD").amount == Decimal("1.234567")
    with pytest.raises(ValueError, match="six decimals"):
        to_micros(Decimal("0.0000001"))


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_every_micro_unit_value_survives_the_round_trip(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros


@given(st.lists(st.decimals(min_value=-10000, max_value=10000, places=6), min_size=1, max_size=30))
def test_sums_in_micro_units_equal_decimal_sums(amounts: list[Decimal]) -> None:
    assert from_micros(sum(to_micros(a) for a in amounts)) == sum(amounts, Decimal(0))


def test_only_active_billing_currencies_are_accepted() -> None:
    assert check_currency("USD") == "USD"
    assert check_currency("JPY") == "JPY"
    for bad in ["usd", "XXX", "XAU", "DEM", "", "US", 840]:
        with pytest.raises(RuleViolation) as raised:
            check_currency(bad)
        assert raised.value.code == "invalid_currency"
