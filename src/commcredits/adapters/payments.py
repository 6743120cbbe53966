"""Payment gateways: the only code that moves money from a customer's card.

:class:`PaymentGateway` is the contract a card processor adapter fulfils; the service depends
on nothing else. :class:`SandboxGateway` is the built-in implementation for development and
tests, driven by well-known test card numbers. ``docs/payments.md`` explains how to plug in
a real processor.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

from commcredits.domain.cards import (
    card_brand,
    card_expired,
    check_cvc,
    check_expiry_fields,
    normalize_card_number,
)
from commcredits.domain.money import MAX_AMOUNT, quantize

ChargeStatus = Literal["succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class CardToken:
    """What the service may keep about a card: an opaque gateway token and display fields.

    The full card number and the security code are never part of it.
    """

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The definite outcome of one charge.

    ``succeeded`` means the money moved and ``charge_id`` identifies it at the processor.
    ``failed`` means no money moved; ``failure_code`` says why (``card_declined``,
    ``expired_card``, ``insufficient_funds``, ...).
    """

    status: ChargeStatus
    charge_id: str | None
    failure_code: str | None
    failure_message: str | None

    def __post_init__(self) -> None:
        if self.status == "succeeded" and (self.charge_id is None or self.failure_code):
            raise ValueError("a succeeded charge has a charge_id and no failure_code")
        if self.status == "failed" and not self.failure_code:
            raise ValueError("a failed charge has a failure_code")

    @classmethod
    def success(cls, charge_id: str) -> ChargeResult:
        """A charge that moved the money."""
        return cls("succeeded", charge_id, None, None)

    @classmethod
    def failure(cls, code: str, message: str, charge_id: str | None = None) -> ChargeResult:
        """A charge the processor refused; nothing moved."""
        return cls("failed", charge_id, code, message)

    @property
    def succeeded(self) -> bool:
        """True when the money moved."""
        return self.status == "succeeded"


class GatewayTimeout(Exception):
    """The gateway did not give an answer: the charge may or may not have happened.

    The caller must not treat this as a failure. It retries the same charge with the same
    idempotency key (now or from a job) until it gets a :class:`ChargeResult`.
    """


class GatewayError(Exception):
    """A transport or configuration fault that the gateway knows moved no money.

    Examples: the processor could not be reached, refused the credentials, or rejected the
    request as malformed. Retrying with the same idempotency key is safe.
    """


class IdempotencyKeyMismatch(ValueError):
    """An idempotency key was reused for a different token, amount or currency.

    A programming error in the caller; nothing was charged.
    """


@runtime_checkable
class PaymentGateway(Protocol):
    """A card processor, and the rules for when money may move.

    Money moves only inside :meth:`charge`, and at most once per idempotency key, for the whole
    life of the gateway account (across process restarts). Nothing else moves money:
    :meth:`tokenize_card` only stores the card at the processor.

    The service keeps only :class:`CardToken` fields. The card number and security code pass
    through the API process into :meth:`tokenize_card` and nowhere else: an implementation must
    not write them to disk, to logs or into error messages.
    """

    def tokenize_card(
        self, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> CardToken:
        """Store a card at the processor and return its token and display fields.

        Moves no money, so it may be retried freely (a retry may leave an unused token behind,
        which is harmless). Raises ``RuleViolation`` with the codes of
        :mod:`commcredits.domain.cards` (``invalid_card_number``, ``invalid_expiry``,
        ``invalid_cvc``) for details the gateway refuses, :class:`GatewayTimeout` or
        :class:`GatewayError` for transport faults.

        Expiry is not judged against a clock here: the service checks it with
        ``check_expiry`` and its own clock (which may be simulated) before calling.
        """
        ...

    def charge(
        self,
        *,
        idempotency_key: str,
        token: str,
        amount: Decimal,
        currency: str,
        description: str,
        now: datetime,
    ) -> ChargeResult:
        """Charge ``amount`` of ``currency`` to the card behind ``token``, at most once per key.

        Guarantees:

        * A call with an idempotency key already used returns the first call's result,
          succeeded or failed, and moves no money. A declined charge therefore stays declined
          under its key: a new attempt (a later recharge retry) needs a new key.
        * Concurrent calls with one key charge at most once.
        * Reusing a key with a different token, amount or currency raises
          :class:`IdempotencyKeyMismatch` and moves nothing.
        * A returned :class:`ChargeResult` is definite. When the outcome is unknown (the
          request was sent and no answer came back) the call raises :class:`GatewayTimeout`;
          the caller retries with the same key. :class:`GatewayError` means nothing moved.
        * ``amount`` is a positive ``Decimal`` with no digits below the currency's minor
          unit; anything else (a float above all) raises ``TypeError`` or ``ValueError``
          before anything is sent.
        * ``now`` (timezone-aware) is the service's clock, which may be simulated; a gateway
          that judges time (the sandbox's expiry check) uses it rather than the system clock.
        """
        ...


_CURRENCY: Final = re.compile(r"[A-Z]{3}")
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255


def _check_charge_arguments(
    idempotency_key: str, amount: Decimal, currency: str, now: datetime
) -> None:
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise ValueError("idempotency_key must be a non-empty string")
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValueError(f"idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH}")
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise ValueError("currency must be an ISO 4217 code such as 'USD'")
    if not amount.is_finite() or not 0 < amount < MAX_AMOUNT:
        raise ValueError("amount must be a positive finite Decimal below MAX_AMOUNT")
    if quantize(amount, currency) != amount:
        raise ValueError(f"amount has digits below the {currency} minor unit")
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


# The sandbox behaviours, keyed by the full test card number (the usual processor test
# cards). Any other valid number behaves as "ok".
_TEST_CARDS: Final[dict[str, str]] = {
    "4242424242424242": "ok",
    "4000000000000002": "declined",
    "4000000000000069": "expired",
    "4000000000009995": "nofunds",
    "4000000000000119": "timeout",
}
_FAILURES: Final[dict[str, tuple[str, str]]] = {
    "declined": ("card_declined", "The card was declined."),
    "expired": ("expired_card", "The card has expired."),
    "nofunds": ("insufficient_funds", "The card has insufficient funds."),
}
_SANDBOX_TOKEN: Final = re.compile(
    r"tok_sb_(?P<behaviour>ok|declined|expired|nofunds|timeout)_"
    r"(?P<year>[0-9]{4})(?P<month>0[1-9]|1[0-2])_[0-9a-f]{16}"
)


@dataclass(frozen=True, slots=True)
class SandboxCharge:
    """One charge the sandbox decided: the first call for its idempotency key."""

    idempotency_key: str
    token: str
    amount: Decimal
    currency: str
    description: str
    at: datetime
    result: ChargeResult

    def to_json(self) -> str:
        """One journal line (without the newline); amounts as decimal strings."""
        record: dict[str, Any] = {
            "idempotency_key": self.idempotency_key,
            "token": self.token,
            "amount": str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "at": self.at.isoformat(),
            "status": self.result.status,
            "charge_id": self.result.charge_id,
            "failure_code": self.result.failure_code,
            "failure_message": self.result.failure_message,
        }
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> SandboxCharge:
        """Read one journal line written by :meth:`to_json`."""
        record = json.loads(line)
        return cls(
            idempotency_key=record["idempotency_key"],
            token=record["token"],
            amount=Decimal(record["amount"]),
            currency=record["currency"],
            description=record["description"],
            at=datetime.fromisoformat(record["at"]),
            result=ChargeResult(
                status=record["status"],
                charge_id=record["charge_id"],
                failure_code=record["failure_code"],
                failure_message=record["failure_message"],
            ),
        )


class SandboxGateway:
    """An in-process :class:`PaymentGateway` driven by test card numbers.

    ==========================  =========================================================
    4242 4242 4242 4242         succeeds
    4000 0000 0000 0002         fails ``card_declined``
    4000 0000 0000 0069         fails ``expired_card``
    4000 0000 0000 9995         fails ``insufficient_funds``
    4000 0000 0000 0119         succeeds, but the first call for a key raises
                                :class:`GatewayTimeout` after charging; a retry with the
                                same key returns the success
    any other valid number      succeeds
    ==========================  =========================================================

    A card whose expiry month is past at the ``now`` given to :meth:`charge` fails
    ``expired_card`` whatever its number. The token carries the behaviour and the expiry
    (``tok_sb_<behaviour>_<yyyymm>_<random>``), never the number, since the service keeps only
    the token. Tokens are not signed: this is for development and tests only.

    Decided charges are remembered in memory and, with ``journal_path``, in an append-only
    JSON-lines file loaded at construction, so a retry after a restart still charges once.
    One process per journal file; a lock makes one instance safe across threads.
    """

    def __init__(self, journal_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._journal_path = journal_path
        self._charges: dict[str, SandboxCharge] = {}
        self._attempts: dict[str, int] = {}
        if journal_path is not None:
            journal_path.parent.mkdir(parents=True, exist_ok=True)
            for charge in _read_journal(journal_path):
                self._charges.setdefault(charge.idempotency_key, charge)

    def tokenize_card(
        self, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> CardToken:
        """Check the card's format and return a sandbox token; see :class:`PaymentGateway`."""
        digits = normalize_card_number(number)
        check_expiry_fields(exp_month, exp_year)
        brand = card_brand(digits)
        check_cvc(cvc, brand)
        behaviour = _TEST_CARDS.get(digits, "ok")
        token = f"tok_sb_{behaviour}_{exp_year:04d}{exp_month:02d}_{secrets.token_hex(8)}"
        return CardToken(
            token=token, brand=brand, last4=digits[-4:], exp_month=exp_month, exp_year=exp_year
        )

    def charge(
        self,
        *,
        idempotency_key: str,
        token: str,
        amount: Decimal,
        currency: str,
        description: str,
        now: datetime,
    ) -> ChargeResult:
        """Decide the charge once per key; see :class:`PaymentGateway` for the guarantees."""
        _check_charge_arguments(idempotency_key, amount, currency, now)
        with self._lock:
            self._attempts[idempotency_key] = self._attempts.get(idempotency_key, 0) + 1
            earlier = self._charges.get(idempotency_key)
            if earlier is not None:
                if (earlier.token, earlier.amount, earlier.currency) != (token, amount, currency):
                    raise IdempotencyKeyMismatch(
                        f"idempotency key {idempotency_key!r} was used for a different charge"
                    )
                return earlier.result
            result, times_out = self._decide(token, now)
            charge = SandboxCharge(
                idempotency_key=idempotency_key,
                token=token,
                amount=amount,
                currency=currency,
                description=description,
                at=now,
                result=result,
            )
            # Journal first: a charge exists only once it would survive a restart.
            self._append(charge)
            self._charges[idempotency_key] = charge
        if times_out:
            raise GatewayTimeout("the sandbox charged the card but did not answer in time")
        return result

    def charges_for(self, idempotency_key: str) -> int:
        """How many times money moved under ``idempotency_key`` (0 or 1)."""
        with self._lock:
            charge = self._charges.get(idempotency_key)
            return int(charge is not None and charge.result.succeeded)

    def attempts_for(self, idempotency_key: str) -> int:
        """How many calls this instance received for ``idempotency_key``, replays included."""
        with self._lock:
            return self._attempts.get(idempotency_key, 0)

    def charges(self) -> list[SandboxCharge]:
        """Every decided charge, succeeded or failed, in the order they were decided."""
        with self._lock:
            return list(self._charges.values())

    def succeeded_total(self, currency: str | None = None) -> Decimal:
        """The exact sum of succeeded charges, in ``currency``.

        Without ``currency``, all charges must share one currency (else ``ValueError``);
        with none at all the total is ``Decimal(0)``.
        """
        succeeded = [c for c in self.charges() if c.result.succeeded]
        currencies = {c.currency for c in succeeded}
        if currency is None and len(currencies) > 1:
            raise ValueError(f"charges in several currencies: {sorted(currencies)}")
        return sum(
            (c.amount for c in succeeded if currency is None or c.currency == currency),
            Decimal(0),
        )

    def _decide(self, token: str, now: datetime) -> tuple[ChargeResult, bool]:
        match = _SANDBOX_TOKEN.fullmatch(token)
        if match is None:
            return ChargeResult.failure("invalid_token", "The token is not a sandbox token."), False
        behaviour = match["behaviour"]
        if card_expired(int(match["month"]), int(match["year"]), now):
            code, message = _FAILURES["expired"]
            return ChargeResult.failure(code, message), False
        if behaviour in _FAILURES:
            code, message = _FAILURES[behaviour]
            return ChargeResult.failure(code, message), False
        return ChargeResult.success(f"ch_sb_{secrets.token_hex(12)}"), behaviour == "timeout"

    def _append(self, charge: SandboxCharge) -> None:
        if self._journal_path is None:
            return
        try:
            with self._journal_path.open("a", encoding="utf-8") as journal:
                journal.write(charge.to_json() + "\n")
                journal.flush()
                os.fsync(journal.fileno())
        except OSError as exc:
            raise GatewayError("the sandbox could not record the charge") from exc


def _read_journal(path: Path) -> list[SandboxCharge]:
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        # A crash during an append leaves a torn last line. Its caller never got an answer,
        # so that charge never happened; cut it off so the next append starts a clean line.
        os.truncate(path, complete)
    charges = []
    for line_number, line in enumerate(data[:complete].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            charges.append(SandboxCharge.from_json(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{line_number}: unreadable sandbox journal line") from exc
    return charges
