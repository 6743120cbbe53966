"""Card number, brand, expiry and security-code checks (pure domain, no gateway)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from commcredits.domain.cards import (
    BRANDS,
    card_brand,
    card_expired,
    check_cvc,
    check_expiry,
    check_expiry_fields,
    luhn_valid,
    normalize_card_number,
)
from commcredits.domain.errors import RuleViolation


def with_check_digit(body: str) -> str:
    """``body`` followed by the digit that makes it pass the Luhn check."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


# Luhn


@pytest.mark.parametrize(
    "number",
    ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "0", "18"],
)
def test_luhn_accepts_numbers_with_a_correct_check_digit(number: str) -> None:
    assert luhn_valid(number)


def test_luhn_rejects_the_number_when_any_single_digit_changes() -> None:
    number = "4242424242424242"
    for position in range(len(number)):
        changed = str((int(number[position]) + 1) % 10)
        assert not luhn_valid(number[:position] + changed + number[position + 1 :])


def test_luhn_rejects_two_swapped_neighbouring_digits() -> None:
    assert not luhn_valid("4242424242424224")


@pytest.mark.parametrize("text", ["", "4242 4242 4242 4242", "4242-4242", "abc", "４２４２", "-18"])
def test_luhn_rejects_anything_but_plain_ascii_digits(text: str) -> None:
    assert not luhn_valid(text)


# normalize_card_number


def test_normalizing_strips_spaces_and_dashes() -> None:
    assert normalize_card_number(" 4242 4242-4242 4242 ") == "4242424242424242"


@pytest.mark.parametrize("length", [12, 19])
def test_normalizing_accepts_the_shortest_and_longest_lengths(length: int) -> None:
    number = with_check_digit("4" + "1" * (length - 2))
    assert normalize_card_number(number) == number


@pytest.mark.parametrize("length", [11, 20])
def test_normalizing_refuses_a_luhn_valid_number_of_the_wrong_length(length: int) -> None:
    number = with_check_digit("4" + "1" * (length - 2))
    with pytest.raises(RuleViolation) as caught:
        normalize_card_number(number)
    assert (caught.value.code, caught.value.field) == ("invalid_card_number", "number")


@pytest.mark.parametrize(
    "raw",
    [
        "4242424242424241",
        "4242x42424242424",
        "４２４２４２４２４２４２４２４２",
        "",
        "4242_4242_4242_4242",
    ],
)
def test_normalizing_refuses_bad_check_digits_letters_and_other_separators(raw: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        normalize_card_number(raw)
    assert caught.value.code == "invalid_card_number"


def test_the_refusal_message_does_not_repeat_the_card_number() -> None:
    with pytest.raises(RuleViolation) as caught:
        normalize_card_number("4242424242424241")
    assert "4242" not in str(caught.value)


# card_brand


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000056655665556", "visa"),
        ("5555555555554444", "mastercard"),
        ("5105105105105100", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000000", "mastercard"),
        ("378282246310005", "amex"),
        ("341111111111111", "amex"),
        ("6011111111111117", "discover"),
        ("6445644564456445", "discover"),
        ("6500000000000002", "discover"),
        ("3566002020360505", "jcb"),
        ("3528000000000007", "jcb"),
        ("30569309025904", "diners"),
        ("36227206271667", "diners"),
        ("38520000023237", "diners"),
        ("30950000000000", "diners"),
        ("6200000000000005", "unionpay"),
        ("2220990000000000", "unknown"),
        ("2721000000000000", "unknown"),
        ("5000000000000000", "unknown"),
        ("9999999999999995", "unknown"),
        ("", "unknown"),
    ],
)
def test_the_brand_follows_the_issuer_prefix(number: str, brand: str) -> None:
    assert card_brand(number) == brand
    assert brand in BRANDS


def test_the_brand_ignores_spaces_and_dashes() -> None:
    assert card_brand("2221 0000-0000 0009") == "mastercard"


# expiry

LAST_MOMENT_OF_NOVEMBER = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)


def test_a_card_is_still_valid_at_23_59_59_on_the_last_day_of_its_month() -> None:
    assert not card_expired(11, 2026, datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert not card_expired(11, 2026, LAST_MOMENT_OF_NOVEMBER)


def test_a_card_is_expired_from_the_first_moment_of_the_next_month() -> None:
    assert card_expired(11, 2026, LAST_MOMENT_OF_NOVEMBER + timedelta(microseconds=1))


def test_a_december_card_expires_in_january_of_the_next_year() -> None:
    assert not card_expired(12, 2026, datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert card_expired(12, 2026, datetime(2027, 1, 1, tzinfo=UTC))


def test_a_card_is_valid_in_any_month_before_its_expiry() -> None:
    assert not card_expired(1, 2027, datetime(2026, 2, 15, tzinfo=UTC))


def test_expiry_is_judged_in_utc_whatever_the_offset_of_the_moment_given() -> None:
    paris_winter = timezone(timedelta(hours=1))
    # 00:30 on 1 December in Paris is still 30 November in UTC.
    assert not card_expired(11, 2026, datetime(2026, 12, 1, 0, 30, tzinfo=paris_winter))
    new_york = timezone(timedelta(hours=-5))
    # 19:00 on 30 November in New York is already 1 December in UTC.
    assert card_expired(11, 2026, datetime(2026, 11, 30, 19, 0, tzinfo=new_york))


def test_judging_expiry_needs_a_timezone_aware_moment() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        card_expired(11, 2026, datetime(2026, 11, 1))


def test_check_expiry_accepts_a_current_card() -> None:
    check_expiry(11, 2026, LAST_MOMENT_OF_NOVEMBER)


def test_check_expiry_refuses_an_expired_card_on_the_year_field() -> None:
    with pytest.raises(RuleViolation) as caught:
        check_expiry(10, 2026, LAST_MOMENT_OF_NOVEMBER)
    assert (caught.value.code, caught.value.field) == ("card_expired", "exp_year")


@pytest.mark.parametrize("month", [0, 13, -1, True])
def test_check_expiry_refuses_a_month_outside_1_to_12(month: int) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_expiry(month, 2030, LAST_MOMENT_OF_NOVEMBER)
    assert (caught.value.code, caught.value.field) == ("invalid_expiry", "exp_month")


@pytest.mark.parametrize("year", [26, 999, 10000])
def test_check_expiry_refuses_a_year_that_is_not_four_digits(year: int) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_expiry(11, year, LAST_MOMENT_OF_NOVEMBER)
    assert (caught.value.code, caught.value.field) == ("invalid_expiry", "exp_year")


def test_a_malformed_expiry_is_reported_as_malformed_rather_than_expired() -> None:
    with pytest.raises(RuleViolation) as caught:
        check_expiry(13, 2000, LAST_MOMENT_OF_NOVEMBER)
    assert caught.value.code == "invalid_expiry"


def test_the_expiry_fields_can_be_checked_without_a_clock() -> None:
    check_expiry_fields(1, 2000)
    with pytest.raises(RuleViolation):
        check_expiry_fields(12, 20)


# cvc


@pytest.mark.parametrize(("cvc", "brand"), [("123", "visa"), ("000", "unknown"), ("1234", "amex")])
def test_a_security_code_of_the_brands_length_is_accepted(cvc: str, brand: str) -> None:
    check_cvc(cvc, brand)


@pytest.mark.parametrize(
    ("cvc", "brand"),
    [
        ("1234", "visa"),
        ("123", "amex"),
        ("12", "mastercard"),
        ("12a", "visa"),
        ("１２３", "visa"),
        ("", "visa"),
    ],
)
def test_a_security_code_of_the_wrong_length_or_with_non_digits_is_refused(
    cvc: str, brand: str
) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_cvc(cvc, brand)
    assert (caught.value.code, caught.value.field) == ("invalid_cvc", "cvc")
