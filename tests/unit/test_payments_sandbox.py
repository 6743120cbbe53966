"""The sandbox payment gateway and the guarantees of the gateway protocol."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.adapters.payments import (
    CardToken,
    ChargeResult,
    GatewayError,
    GatewayTimeout,
    IdempotencyKeyMismatch,
    PaymentGateway,
    SandboxGateway,
)
from commcredits.domain.errors import RuleViolation

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

SUCCEEDS = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
EXPIRED = "4000 0000 0000 0069"
NO_FUNDS = "4000 0000 0000 9995"
TIMES_OUT = "4000 0000 0000 0119"
TEST_CARDS = [SUCCEEDS, DECLINED, EXPIRED, NO_FUNDS, TIMES_OUT]


@pytest.fixture
def gateway() -> SandboxGateway:
    return SandboxGateway()


def tokenize(
    gateway: PaymentGateway,
    number: str = SUCCEEDS,
    exp_month: int = 12,
    exp_year: int = 2030,
    cvc: str = "123",
) -> CardToken:
    return gateway.tokenize_card(number, exp_month, exp_year, cvc, "Ada Lovelace")


def charge(
    gateway: PaymentGateway,
    token: str,
    key: str = "order-1",
    amount: Decimal = Decimal("50.00"),
    currency: str = "USD",
    now: datetime = NOW,
) -> ChargeResult:
    return gateway.charge(
        idempotency_key=key,
        token=token,
        amount=amount,
        currency=currency,
        description="Communications Credits",
        now=now,
    )


# the protocol


def test_the_sandbox_is_a_payment_gateway(gateway: SandboxGateway) -> None:
    as_protocol: PaymentGateway = gateway
    assert isinstance(as_protocol, PaymentGateway)


def test_a_succeeded_result_needs_a_charge_id_and_a_failed_one_a_failure_code() -> None:
    with pytest.raises(ValueError, match="charge_id"):
        ChargeResult("succeeded", None, None, None)
    with pytest.raises(ValueError, match="failure_code"):
        ChargeResult("failed", None, None, "no reason")


# tokenization


def test_tokenizing_returns_only_the_token_brand_last4_and_expiry(gateway: SandboxGateway) -> None:
    card = tokenize(gateway, "5555 5555 5555 4444", exp_month=3, exp_year=2031)
    assert card.token.startswith("tok_sb_")
    stored = (card.brand, card.last4, card.exp_month, card.exp_year)
    assert stored == ("mastercard", "4444", 3, 2031)


@pytest.mark.parametrize("number", TEST_CARDS)
def test_the_token_does_not_contain_the_card_number(gateway: SandboxGateway, number: str) -> None:
    card = tokenize(gateway, number)
    digits = number.replace(" ", "")
    assert digits not in card.token
    assert digits not in repr(card)
    assert digits[:6] not in card.token


def test_tokenizing_one_card_twice_gives_different_tokens(gateway: SandboxGateway) -> None:
    assert tokenize(gateway).token != tokenize(gateway).token


@pytest.mark.parametrize(
    ("number", "exp_month", "exp_year", "cvc", "code"),
    [
        ("4242 4242 4242 4241", 12, 2030, "123", "invalid_card_number"),
        ("4242 4242 4242 4242", 13, 2030, "123", "invalid_expiry"),
        ("4242 4242 4242 4242", 12, 30, "123", "invalid_expiry"),
        ("4242 4242 4242 4242", 12, 2030, "1234", "invalid_cvc"),
        ("3782 822463 10005", 12, 2030, "123", "invalid_cvc"),
    ],
)
def test_tokenizing_refuses_malformed_card_details(
    gateway: SandboxGateway, number: str, exp_month: int, exp_year: int, cvc: str, code: str
) -> None:
    with pytest.raises(RuleViolation) as caught:
        tokenize(gateway, number, exp_month, exp_year, cvc)
    assert caught.value.code == code


def test_an_amex_card_tokenizes_with_a_four_digit_security_code(gateway: SandboxGateway) -> None:
    assert tokenize(gateway, "3782 822463 10005", cvc="1234").brand == "amex"


# each test card


def test_the_4242_card_succeeds_and_charges_once(gateway: SandboxGateway) -> None:
    result = charge(gateway, tokenize(gateway).token)
    assert result.succeeded
    assert result.charge_id is not None
    assert result.failure_code is None
    assert gateway.charges_for("order-1") == 1
    assert gateway.succeeded_total() == Decimal("50.00")


@pytest.mark.parametrize(
    ("number", "failure_code"),
    [(DECLINED, "card_declined"), (EXPIRED, "expired_card"), (NO_FUNDS, "insufficient_funds")],
)
def test_a_failing_test_card_fails_with_its_code_and_moves_no_money(
    gateway: SandboxGateway, number: str, failure_code: str
) -> None:
    result = charge(gateway, tokenize(gateway, number).token)
    assert result.status == "failed"
    assert result.failure_code == failure_code
    assert result.failure_message
    assert gateway.charges_for("order-1") == 0
    assert gateway.succeeded_total() == Decimal(0)


@pytest.mark.parametrize(
    ("number", "cvc"),
    [
        ("5555 5555 5555 4444", "123"),
        ("3782 822463 10005", "1234"),
        ("6011 1111 1111 1117", "123"),
        ("4000 0566 5566 5556", "123"),
    ],
)
def test_any_other_valid_card_succeeds(gateway: SandboxGateway, number: str, cvc: str) -> None:
    assert charge(gateway, tokenize(gateway, number, cvc=cvc).token).succeeded


def test_a_card_charged_on_the_last_second_of_its_expiry_month_succeeds(
    gateway: SandboxGateway,
) -> None:
    card = tokenize(gateway, exp_month=11, exp_year=2026)
    result = charge(gateway, card.token, now=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert result.succeeded


def test_a_card_charged_after_its_expiry_month_fails_as_expired(gateway: SandboxGateway) -> None:
    card = tokenize(gateway, exp_month=11, exp_year=2026)
    result = charge(gateway, card.token, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert result.failure_code == "expired_card"
    assert gateway.charges_for("order-1") == 0


def test_expiry_is_judged_by_the_now_passed_in_not_by_the_system_clock(
    gateway: SandboxGateway,
) -> None:
    card = tokenize(gateway, exp_month=1, exp_year=2000)
    result = charge(gateway, card.token, now=datetime(1999, 6, 1, tzinfo=UTC))
    assert result.succeeded


def test_a_token_the_sandbox_did_not_issue_fails_without_charging(
    gateway: SandboxGateway,
) -> None:
    result = charge(gateway, "tok_other_123")
    assert result.failure_code == "invalid_token"
    assert gateway.charges_for("order-1") == 0


# idempotency


def test_a_repeat_with_the_same_key_returns_the_first_result_and_charges_once(
    gateway: SandboxGateway,
) -> None:
    token = tokenize(gateway).token
    first = charge(gateway, token)
    assert charge(gateway, token) == first
    assert charge(gateway, token) == first
    assert gateway.charges_for("order-1") == 1
    assert gateway.attempts_for("order-1") == 3
    assert gateway.succeeded_total() == Decimal("50.00")


def test_the_same_amount_written_differently_is_the_same_charge(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    first = charge(gateway, token, amount=Decimal("50.00"))
    assert charge(gateway, token, amount=Decimal("50")) == first
    assert gateway.charges_for("order-1") == 1


def test_different_keys_are_different_charges(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    first = charge(gateway, token, key="order-1")
    second = charge(gateway, token, key="order-2")
    assert first.charge_id != second.charge_id
    assert gateway.succeeded_total() == Decimal("100.00")


def test_a_repeated_decline_stays_declined_under_its_key(gateway: SandboxGateway) -> None:
    token = tokenize(gateway, DECLINED).token
    first = charge(gateway, token)
    assert charge(gateway, token) == first
    assert first.failure_code == "card_declined"


def test_reusing_a_key_for_another_amount_is_refused_and_charges_nothing_more(
    gateway: SandboxGateway,
) -> None:
    token = tokenize(gateway).token
    charge(gateway, token)
    with pytest.raises(IdempotencyKeyMismatch):
        charge(gateway, token, amount=Decimal("60.00"))
    with pytest.raises(IdempotencyKeyMismatch):
        charge(gateway, token, currency="EUR")
    with pytest.raises(IdempotencyKeyMismatch):
        charge(gateway, tokenize(gateway).token)
    assert gateway.succeeded_total() == Decimal("50.00")


def test_concurrent_calls_with_one_key_charge_once(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    results: list[ChargeResult] = []
    start = threading.Barrier(16)

    def pay() -> None:
        start.wait()
        results.append(charge(gateway, token))

    threads = [threading.Thread(target=pay) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16
    assert len(set(results)) == 1
    assert gateway.charges_for("order-1") == 1


# the ambiguous time-out


def test_a_timeout_then_a_retry_with_the_same_key_returns_the_one_success(
    gateway: SandboxGateway,
) -> None:
    token = tokenize(gateway, TIMES_OUT).token
    with pytest.raises(GatewayTimeout):
        charge(gateway, token)
    # The charge did go through although the caller never heard of it.
    assert gateway.charges_for("order-1") == 1
    retried = charge(gateway, token)
    assert retried.succeeded
    assert charge(gateway, token) == retried
    assert gateway.charges_for("order-1") == 1
    assert gateway.attempts_for("order-1") == 3
    assert gateway.succeeded_total() == Decimal("50.00")


def test_the_timeout_card_times_out_once_per_key(gateway: SandboxGateway) -> None:
    token = tokenize(gateway, TIMES_OUT).token
    for key in ("recharge-1", "recharge-2"):
        with pytest.raises(GatewayTimeout):
            charge(gateway, token, key=key)
        assert charge(gateway, token, key=key).succeeded
    assert gateway.succeeded_total() == Decimal("100.00")


def test_a_timeout_is_not_a_gateway_error() -> None:
    # A caller catching GatewayError ("nothing moved") must not swallow an unknown outcome.
    assert not issubclass(GatewayTimeout, GatewayError)


# amounts


def test_a_float_amount_is_refused_before_anything_is_charged(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    with pytest.raises(TypeError, match="Decimal"):
        charge(gateway, token, amount=50.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        charge(gateway, token, amount=50)  # type: ignore[arg-type]
    assert gateway.attempts_for("order-1") == 0
    assert gateway.charges() == []


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (Decimal("0"), "USD", "positive"),
        (Decimal("-5.00"), "USD", "positive"),
        (Decimal("NaN"), "USD", "positive"),
        (Decimal("1E+30"), "USD", "positive"),
        (Decimal("1.005"), "USD", "minor unit"),
        (Decimal("100.5"), "JPY", "minor unit"),
        (Decimal("10.00"), "usd", "ISO 4217"),
    ],
)
def test_amounts_that_are_not_positive_whole_minor_units_are_refused(
    gateway: SandboxGateway, amount: Decimal, currency: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        charge(gateway, tokenize(gateway).token, amount=amount, currency=currency)
    assert gateway.charges() == []


def test_a_zero_decimal_currency_charges_whole_units(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    assert charge(gateway, token, amount=Decimal("5000"), currency="JPY").succeeded
    assert gateway.succeeded_total("JPY") == Decimal("5000")


def test_totals_are_exact_decimals(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    charge(gateway, token, key="a", amount=Decimal("0.10"))
    charge(gateway, token, key="b", amount=Decimal("0.20"))
    total = gateway.succeeded_total()
    assert isinstance(total, Decimal)
    assert total == Decimal("0.30")


def test_a_total_across_currencies_must_name_the_currency(gateway: SandboxGateway) -> None:
    token = tokenize(gateway).token
    charge(gateway, token, key="a", amount=Decimal("10.00"), currency="USD")
    charge(gateway, token, key="b", amount=Decimal("7.00"), currency="EUR")
    with pytest.raises(ValueError, match="several currencies"):
        gateway.succeeded_total()
    assert gateway.succeeded_total("EUR") == Decimal("7.00")


def test_a_naive_now_is_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        charge(gateway, tokenize(gateway).token, now=datetime(2026, 11, 27, 10, 0))


# the journal


def test_the_journal_keeps_a_charge_across_a_new_gateway_instance(tmp_path: Path) -> None:
    journal = tmp_path / "sandbox" / "charges.jsonl"
    before = SandboxGateway(journal_path=journal)
    token = tokenize(before).token
    first = charge(before, token)

    after = SandboxGateway(journal_path=journal)
    assert after.charges_for("order-1") == 1
    assert charge(after, token) == first
    assert after.charges_for("order-1") == 1
    assert after.succeeded_total() == Decimal("50.00")


def test_a_timeout_before_a_restart_then_a_retry_after_it_charges_once(tmp_path: Path) -> None:
    journal = tmp_path / "charges.jsonl"
    before = SandboxGateway(journal_path=journal)
    token = tokenize(before, TIMES_OUT).token
    with pytest.raises(GatewayTimeout):
        charge(before, token)

    after = SandboxGateway(journal_path=journal)
    assert charge(after, token).succeeded
    assert after.charges_for("order-1") == 1
    assert len(journal.read_text().splitlines()) == 1


def test_the_journal_remembers_declines_too(tmp_path: Path) -> None:
    journal = tmp_path / "charges.jsonl"
    token = tokenize(SandboxGateway()).token
    declined = tokenize(SandboxGateway(), DECLINED).token
    charge(SandboxGateway(journal_path=journal), declined)
    result = charge(SandboxGateway(journal_path=journal), declined)
    assert result.failure_code == "card_declined"
    with pytest.raises(IdempotencyKeyMismatch):
        charge(SandboxGateway(journal_path=journal), token)


def test_the_journal_holds_decimal_strings_and_no_card_number(tmp_path: Path) -> None:
    journal = tmp_path / "charges.jsonl"
    gateway = SandboxGateway(journal_path=journal)
    for key, number in enumerate(TEST_CARDS):
        with contextlib.suppress(GatewayTimeout):
            charge(gateway, tokenize(gateway, number).token, key=str(key))
    text = journal.read_text()
    for number in TEST_CARDS:
        assert number.replace(" ", "") not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == len(TEST_CARDS)
    assert {record["amount"] for record in records} == {"50.00"}


def test_a_torn_last_journal_line_is_dropped_and_the_journal_stays_usable(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "charges.jsonl"
    gateway = SandboxGateway(journal_path=journal)
    token = tokenize(gateway).token
    charge(gateway, token, key="kept")
    with journal.open("a") as file:
        file.write('{"idempotency_key":"torn","amo')

    restarted = SandboxGateway(journal_path=journal)
    assert restarted.charges_for("kept") == 1
    assert restarted.charges_for("torn") == 0
    charge(restarted, token, key="after")
    assert SandboxGateway(journal_path=journal).charges_for("after") == 1


def test_a_corrupt_journal_line_in_the_middle_stops_the_gateway_from_starting(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "charges.jsonl"
    journal.write_text("not json\n")
    with pytest.raises(ValueError, match=r"charges\.jsonl:1"):
        SandboxGateway(journal_path=journal)


def test_a_journal_that_cannot_be_written_is_a_gateway_error_and_charges_nothing(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "charges.jsonl"
    gateway = SandboxGateway(journal_path=journal)
    journal.mkdir()
    with pytest.raises(GatewayError):
        charge(gateway, tokenize(gateway).token)
    assert gateway.charges_for("order-1") == 0
