"""Use cases of Communications Credits: payment methods, orders, adjustments, auto-recharge.

Rules R-01..R-05 and R-20..R-28. Money moves only inside an :class:`AccountSession` (one
transaction under the organization's lock). A card is charged *between* two transactions: the
order is written ``pending`` first, the gateway is called with the order id as its idempotency
key, and the outcome is settled under the lock. A crash in between leaves a pending order that
the ``credit_orders`` job settles with the same key, so nothing is ever charged twice (R-27).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError

from commcredits.adapters.clock import Clock
from commcredits.adapters.payments import ChargeResult, GatewayError, GatewayTimeout, PaymentGateway
from commcredits.domain import recharge as policy
from commcredits.domain.cards import check_cvc, check_expiry, normalize_card_number
from commcredits.domain.credits import (
    CreditAccount,
    CreditOrder,
    Invoice,
    LedgerEntry,
    PaymentMethod,
    check_credits_offered,
)
from commcredits.domain.errors import Conflict, NotFound, RuleViolation
from commcredits.domain.ids import new_id
from commcredits.domain.ledger import Lot
from commcredits.domain.money import Money, parse_amount, parse_money
from commcredits.domain.organizations import Organization
from commcredits.services import idempotency, notices
from commcredits.services.account import AccountSession
from commcredits.services.idempotency import Idempotency
from commcredits.services.orgs import get_org
from commcredits.store.credits import (
    CreditRepository,
    InvoiceRepository,
    OrderRepository,
    PaymentMethodRepository,
)
from commcredits.store.database import Store, TransientConflict, UnitOfWork, retrying
from commcredits.store.idempotency import IdempotencyRepository

GATEWAY_ATTEMPTS = 3
"""Immediate tries of a charge that times out, before it is left pending for the job."""

PENDING_RETRY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class AutoRechargeSettings:
    enabled: bool
    trigger_amount: str | None = None
    recharge_amount: str | None = None
    payment_method_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewOrder:
    amount: str
    payment_method_id: str
    purchase_order: str | None = None
    auto_recharge: AutoRechargeSettings | None = None


@dataclass(frozen=True, slots=True)
class CreditsView:
    """What ``GET /credits`` shows: the account and every lot, as of ``at``."""

    org: Organization
    account: CreditAccount
    lots: list[Lot]
    at: datetime

    @property
    def balance(self) -> Decimal:
        # the balance counts unexpired lots only, even before the expiry job ran.
        return sum((lot.remaining for lot in self.lots if not lot.is_expired(self.at)), Decimal(0))

    @property
    def reserved(self) -> Decimal:
        return min(self.account.reserved, self.balance)

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


@dataclass(frozen=True, slots=True)
class Adjustment:
    entries: list[LedgerEntry]
    amount: Decimal
    reason: str

    @property
    def balance_after(self) -> Decimal:
        return self.entries[-1].balance_after


def _settings_amount(value: str | None, currency: str, field: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_money(value, currency, field=field).amount
    except RuleViolation as exc:
        raise RuleViolation(exc.message, code="invalid_auto_recharge", field=field) from exc


class Credits:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        gateway: PaymentGateway,
        *,
        minimum_deposit: Decimal = Decimal("50.00"),
    ):
        self.store = store
        self.clock = clock
        self.gateway = gateway
        self.minimum_deposit = minimum_deposit

    # -- payment methods (R-25) ---------------------------------------------------------------

    @retrying()
    def add_card(
        self, org_id: str, *, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> PaymentMethod:
        """Check the card (Luhn, expiry by the service clock, CVC), tokenize it at the gateway
        and keep only the token, brand, last four digits and expiry."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
        holder = _short_text(holder, 200, "holder", "invalid_holder") or ""
        digits = normalize_card_number(number)
        check_expiry(exp_month, exp_year, now)
        token = self.gateway.tokenize_card(digits, exp_month, exp_year, cvc, holder)
        check_cvc(cvc, token.brand)
        method = PaymentMethod(
            org_id=org_id,
            id=new_id("pm"),
            type="card",
            created_at=now,
            token=token.token,
            brand=token.brand,
            last4=token.last4,
            exp_month=token.exp_month,
            exp_year=token.exp_year,
            holder=holder or None,
        )
        with self.store.unit_of_work() as uow:
            PaymentMethodRepository(uow.conn).add(method)
            uow.commit()
        return method

    @retrying()
    def add_agreement(
        self, org_id: str, agreement_number: str, purchase_order: str | None = None
    ) -> PaymentMethod:
        number = agreement_number.strip()
        if not number or len(number) > 64:
            raise RuleViolation(
                "an agreement number has 1 to 64 characters",
                code="invalid_agreement_number",
                field="agreement_number",
            )
        with self.store.unit_of_work() as uow:
            get_org(uow, org_id)
            methods = PaymentMethodRepository(uow.conn)
            if any(m.agreement_number == number for m in methods.active(org_id)):
                raise Conflict(
                    f"enterprise agreement {number} is already on file",
                    code="payment_method_exists",
                    field="agreement_number",
                )
            method = PaymentMethod(
                org_id=org_id,
                id=new_id("pm"),
                type="enterprise_agreement",
                created_at=self.clock.now(),
                agreement_number=number,
                purchase_order=_short_text(
                    purchase_order, 64, "purchase_order", "invalid_purchase_order"
                ),
            )
            methods.add(method)
            uow.commit()
        return method

    def payment_methods(self, org_id: str) -> list[PaymentMethod]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return PaymentMethodRepository(uow.conn).active(org_id)

    def remove_payment_method(self, org_id: str, method_id: str) -> None:
        self.pay_if_started(self._remove_payment_method(org_id, method_id))

    @retrying()
    def _remove_payment_method(self, org_id: str, method_id: str) -> CreditOrder | None:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            # The method is the resource the path names: unknown (or another organization's)
            # is 404, not a rule's 422.
            found = PaymentMethodRepository(uow.conn).get(org_id, method_id)
            if found is None or found.removed_at is not None:
                raise NotFound("no such payment method", code="payment_method_not_found")
            method = found
            if session.account.auto_recharge.enabled and (
                session.account.auto_recharge.payment_method_id == method.id
            ):
                raise Conflict(
                    "auto-recharge charges this payment method; change or turn it off first",
                    code="payment_method_in_use",
                )
            PaymentMethodRepository(uow.conn).remove(org_id, method_id, now)
            order = self.after_debit(uow, session)
            session.close()
            uow.commit()
        return order

    @staticmethod
    def _method(
        uow: UnitOfWork, org_id: str, method_id: str | None, *, field: str = "payment_method"
    ) -> PaymentMethod:
        # Another organization's method is exactly as unknown as one that does not exist.
        method = PaymentMethodRepository(uow.conn).get(org_id, method_id) if method_id else None
        if method is None or method.removed_at is not None:
            raise RuleViolation(
                f"no payment method {method_id!r} in this organization",
                code="unknown_payment_method",
                field=field,
            )
        return method

    # -- orders (R-20, R-24, R-27) -------------------------------------------------------------

    def _auto_recharge(
        self, uow: UnitOfWork, org: Organization, wanted: AutoRechargeSettings, fallback_method: str
    ) -> policy.AutoRecharge:
        trigger = _settings_amount(wanted.trigger_amount, org.currency, "trigger_amount")
        amount = _settings_amount(wanted.recharge_amount, org.currency, "recharge_amount")
        policy.validate_settings(
            wanted.enabled, trigger, amount, org.currency, postpaid=org.is_postpaid
        )
        method_id = wanted.payment_method_id or fallback_method
        if wanted.enabled:
            self._method(uow, org.id, method_id)
        return policy.AutoRecharge(
            enabled=wanted.enabled,
            trigger_amount=trigger,
            recharge_amount=amount,
            payment_method_id=method_id if wanted.enabled else None,
            status="ok" if wanted.enabled else "off",
        )

    def place_order(
        self,
        org_id: str,
        new: NewOrder,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> CreditOrder:
        """Buy credits: a deposit paid by the chosen method, with optional auto-recharge."""
        order = self._open_order(org_id, new, idempotency_key, fingerprint)
        if order.status != "pending":
            return order
        return self._pay(order)

    @retrying()
    def _open_order(
        self, org_id: str, new: NewOrder, key: str | None, fingerprint: str | None
    ) -> CreditOrder:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            org = get_org(uow, org_id)
            orders = OrderRepository(uow.conn)
            if key is not None:
                previous = orders.by_idempotency_key(org_id, key)
                if previous is not None:
                    if previous.fingerprint != fingerprint:
                        raise Conflict(
                            "this Idempotency-Key was already used with a different request",
                            code="idempotency_key_reused",
                            field="Idempotency-Key",
                        )
                    return previous  # a retry: settled already, or resumed by the caller
            if key is not None:
                # One key space per organization: a key an adjustment used is taken here too.
                claimed = IdempotencyRepository(uow.conn).get(org_id, key)
                if claimed is not None and claimed.fingerprint != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was already used with a different request",
                        code="idempotency_key_reused",
                        field="Idempotency-Key",
                    )
            check_credits_offered(org.country, org.billing)
            amount = parse_money(new.amount, org.currency).amount
            if amount <= 0:
                raise RuleViolation(
                    "a deposit must be a positive amount", code="invalid_amount", field="amount"
                )
            if amount < self.minimum_deposit:
                raise RuleViolation(
                    f"the smallest deposit is {Money(self.minimum_deposit, org.currency)}",
                    code="amount_below_minimum",
                    field="amount",
                )
            method = self._method(uow, org_id, new.payment_method_id)
            wanted = new.auto_recharge
            settings = self._auto_recharge(uow, org, wanted, method.id) if wanted else None
            purchase_order = _short_text(
                new.purchase_order, 64, "purchase_order", "invalid_purchase_order"
            )
            order = CreditOrder(
                org_id=org_id,
                id=new_id("ord"),
                kind="deposit",
                status="pending",
                amount=amount,
                currency=org.currency,
                payment_method_id=method.id,
                purchase_order=purchase_order or method.purchase_order,
                auto_recharge=_settings_json(settings) if settings else None,
                idempotency_key=key,
                fingerprint=fingerprint,
                attempts=0,
                next_attempt_at=now + PENDING_RETRY,
                charge_id=None,
                failure_code=None,
                failure_message=None,
                lot_id=None,
                invoice_id=None,
                created_at=now,
                settled_at=None,
            )
            try:
                with uow.conn.begin_nested():
                    orders.add(order)
                    if key is not None and fingerprint is not None:
                        # Claimed for good: the order row holds the outcome, not this record.
                        IdempotencyRepository(uow.conn).claim(org_id, key, fingerprint, now)
            except IntegrityError as exc:
                # The same key, committed by a concurrent request: run again to find its order.
                raise TransientConflict("order idempotency key taken concurrently") from exc
            uow.commit()
        return order

    def _pay(self, order: CreditOrder) -> CreditOrder:
        """Charge the order's payment method and settle the outcome; pending if unknown."""
        with self.store.unit_of_work(read_only=True) as uow:
            method = PaymentMethodRepository(uow.conn).get(order.org_id, order.payment_method_id)
        result: ChargeResult | None
        if method is None:
            result = ChargeResult.failure("payment_method_removed", "the payment method is gone")
        elif method.type == "enterprise_agreement":
            # an agreement purchase is accepted at once and invoiced to the agreement.
            result = ChargeResult.success(f"ea_{order.id}")
        else:
            result = self._charge_card(order, method)
        if result is None:
            return self._postpone(order)
        settled, follow_up = self._settle(order.org_id, order.id, result)
        self.pay_if_started(follow_up)
        return settled

    def pay_if_started(self, order: CreditOrder | None) -> None:
        """Pay a recharge a use case started, once its transaction has committed."""
        if order is not None:
            self._pay(order)

    def _charge_card(self, order: CreditOrder, method: PaymentMethod) -> ChargeResult | None:
        assert method.token is not None
        for _ in range(GATEWAY_ATTEMPTS):
            try:
                return self.gateway.charge(
                    idempotency_key=order.id,
                    token=method.token,
                    amount=order.amount,
                    currency=order.currency,
                    description=f"Communications Credits {order.kind} {order.id}",
                    now=self.clock.now(),
                )
            except (GatewayTimeout, GatewayError):
                continue  # same key: a retry can never charge twice
        return None

    @retrying()
    def _postpone(self, order: CreditOrder) -> CreditOrder:
        now = self.clock.now()
        attempts = order.attempts + 1
        when = now + PENDING_RETRY * min(2 ** (attempts - 1), 12 * 24)
        with self.store.unit_of_work() as uow:
            OrderRepository(uow.conn).postpone(order.org_id, order.id, attempts, when)
            uow.commit()
        return replace(order, attempts=attempts, next_attempt_at=when)

    @retrying()
    def _settle(
        self, org_id: str, order_id: str, result: ChargeResult
    ) -> tuple[CreditOrder, CreditOrder | None]:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            orders = OrderRepository(uow.conn)
            order = orders.get(org_id, order_id)
            assert order is not None
            if order.status != "pending":
                return order, None  # settled by someone else meanwhile: nothing to do twice
            method = PaymentMethodRepository(uow.conn).get(org_id, order.payment_method_id)
            method_name = method.describe() if method else "the removed payment method"
            account = session.account
            if result.succeeded:
                lot = session.credit(
                    order.kind,
                    order.amount,
                    kind=order.kind,
                    reference=order.id,
                    description=f"{order.kind} paid by {method_name}",
                    order_id=order.id,
                )
                invoice = self._invoice(uow, session.org, order, method, now)
                order = replace(
                    order,
                    status="paid",
                    next_attempt_at=None,
                    attempts=order.attempts + 1,
                    charge_id=result.charge_id,
                    lot_id=lot.id,
                    invoice_id=invoice.id,
                    settled_at=now,
                )
                if order.kind == "recharge":
                    session.account = replace(
                        session.account, auto_recharge=policy.after_success(account.auto_recharge)
                    )
                    notices.recharge_succeeded(
                        uow, session.org, order.amount, session.balance, method_name, now
                    )
                elif order.auto_recharge is not None and not session.org.is_postpaid:
                    session.account = replace(
                        session.account, auto_recharge=_settings_from_json(order.auto_recharge)
                    )
            else:
                order = replace(
                    order,
                    status="failed",
                    next_attempt_at=None,
                    attempts=order.attempts + 1,
                    charge_id=result.charge_id,
                    failure_code=result.failure_code,
                    failure_message=result.failure_message,
                    settled_at=now,
                )
                if order.kind == "recharge":
                    after = policy.after_failure(account.auto_recharge, now)
                    session.account = replace(session.account, auto_recharge=after)
                    notices.recharge_failed(
                        uow,
                        session.org,
                        order.amount,
                        method_name,
                        result.failure_message or result.failure_code or "declined",
                        after.next_retry_at,
                        now,
                    )
            orders.settle(order)
            # Lots that expired since the last look were swept when the session opened.
            follow_up = self.after_debit(uow, session)
            session.close()
            uow.commit()
        return order, follow_up

    @staticmethod
    def _invoice(
        uow: UnitOfWork,
        org: Organization,
        order: CreditOrder,
        method: PaymentMethod | None,
        now: datetime,
    ) -> Invoice:
        """R-24: one invoice per deposit and per processed recharge."""
        number = CreditRepository(uow.conn).next_invoice_number(org.id)
        label = "deposit" if order.kind == "deposit" else "auto-recharge"
        invoice = Invoice(
            org_id=org.id,
            id=new_id("inv"),
            number=f"CC-{now:%Y}-{number:06d}",
            kind="credits",
            order_id=order.id,
            issued_at=now,
            amount=order.amount,
            currency=order.currency,
            payment_method=method.describe() if method else None,
            purchase_order=order.purchase_order,
            status="paid",
            lines=[
                {
                    "description": f"Communications Credits {label}",
                    "quantity": 1,
                    "amount": Money(order.amount, order.currency).format(),
                }
            ],
        )
        InvoiceRepository(uow.conn).add(invoice)
        return invoice

    def order_for_key(self, org_id: str, key: str) -> CreditOrder | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return OrderRepository(uow.conn).by_idempotency_key(org_id, key)

    def get_order(self, org_id: str, order_id: str) -> CreditOrder:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            order = OrderRepository(uow.conn).get(org_id, order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        return order

    def orders(
        self, org_id: str, *, kind: str | None = None, limit: int = 100
    ) -> list[CreditOrder]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return OrderRepository(uow.conn).for_org(org_id, kind=kind, limit=limit)

    # -- the account ---------------------------------------------------------------------------

    def view(self, org_id: str) -> CreditsView:
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            repo = CreditRepository(uow.conn)
            account = repo.account(org_id) or CreditAccount(
                org_id=org_id,
                balance=Decimal(0),
                reserved=Decimal(0),
                auto_recharge=policy.AutoRecharge(False, None, None, None, "off"),
                zero_notified=False,
                next_expiry_at=None,
            )
            return CreditsView(org=org, account=account, lots=repo.all_lots(org_id), at=now)

    def set_auto_recharge(self, org_id: str, wanted: AutoRechargeSettings) -> policy.AutoRecharge:
        """R-23 settings; R-03: refused for postpaid organizations. A change forgets failures."""
        settings, order = self._set_auto_recharge(org_id, wanted)
        self.pay_if_started(order)
        return settings

    @retrying()
    def _set_auto_recharge(
        self, org_id: str, wanted: AutoRechargeSettings
    ) -> tuple[policy.AutoRecharge, CreditOrder | None]:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            current = session.account.auto_recharge
            fallback = wanted.payment_method_id or current.payment_method_id or ""
            settings = self._auto_recharge(uow, session.org, wanted, fallback)
            if current.status == "pending":
                settings = replace(settings, status="pending")
            settings = policy.reset_on_change(settings)
            session.account = replace(session.account, auto_recharge=settings)
            order = self.after_debit(uow, session)
            session.close()
            uow.commit()
        return session.account.auto_recharge, order

    def adjust(
        self, org_id: str, amount: str, reason: str, *, request: Idempotency | None = None
    ) -> Adjustment:
        """Support's correction: a positive amount is a new lot (source ``adjustment``, the same
        12-month expiry); a negative one is spent FIFO like usage."""
        adjustment, recharge_order = self._adjust(org_id, amount, reason, request)
        self.pay_if_started(recharge_order)
        return adjustment

    @retrying()
    def _adjust(
        self, org_id: str, amount: str, reason: str, request: Idempotency | None
    ) -> tuple[Adjustment, CreditOrder | None]:
        now = self.clock.now()
        reason = reason.strip()
        if not reason or len(reason) > 300:
            raise RuleViolation(
                "say why, in 1 to 300 characters", code="invalid_reason", field="reason"
            )
        with self.store.unit_of_work() as uow:
            idempotency.begin(uow, request, now)
            session = AccountSession(uow, org_id, now)
            value = parse_money(amount, session.org.currency).amount
            if value == 0:
                raise RuleViolation(
                    "an adjustment cannot be zero", code="invalid_amount", field="amount"
                )
            if value > 0:
                session.credit(
                    "adjustment", value, kind="adjustment", reference=None, description=reason
                )
            else:
                session.debit(-value, kind="adjustment", reference=None, description=reason)
            order = self.after_debit(uow, session)
            entries = session.close()
            adjustment = Adjustment(entries=entries, amount=value, reason=reason)
            idempotency.finish(uow, request, adjustment)
            uow.commit()
        return adjustment, order

    def after_debit(self, uow: UnitOfWork, session: AccountSession) -> CreditOrder | None:
        """What follows money going out: the zero-balance mail (R-26) and, when the balance is
        below the trigger, one recharge order (R-23). Returns the order to pay after commit."""
        if not session.debited:
            return None
        if session.reached_zero and not session.account.zero_notified:
            notices.balance_zero(uow, session.org, session.now)
            session.account = replace(session.account, zero_notified=True)
        return self.maybe_start_recharge(uow, session)

    def maybe_start_recharge(self, uow: UnitOfWork, session: AccountSession) -> CreditOrder | None:
        settings = session.account.auto_recharge
        orders = OrderRepository(uow.conn)
        decision = policy.decide(
            settings,
            session.available,
            session.now,
            in_flight=False,
            postpaid=session.org.is_postpaid,
        )
        # Only a recharge that is otherwise due needs to know whether one is in flight: the
        # store is asked then, not on every debit.
        if decision.recharge and orders.has_pending_recharge(session.org.id):
            decision = policy.RechargeDecision(recharge=False, reason="in_flight")
        if not decision.recharge:
            if decision.reason == "not_below_trigger" and settings.status == "retrying":
                session.account = replace(
                    session.account, auto_recharge=policy.after_success(settings)
                )
            return None
        assert settings.recharge_amount is not None
        assert settings.payment_method_id is not None
        order = CreditOrder(
            org_id=session.org.id,
            id=new_id("ord"),
            kind="recharge",
            status="pending",
            amount=settings.recharge_amount,
            currency=session.org.currency,
            payment_method_id=settings.payment_method_id,
            purchase_order=None,
            auto_recharge=None,
            idempotency_key=None,
            fingerprint=None,
            attempts=0,
            next_attempt_at=session.now,
            charge_id=None,
            failure_code=None,
            failure_message=None,
            lot_id=None,
            invoice_id=None,
            created_at=session.now,
            settled_at=None,
        )
        orders.add(order)
        session.account = replace(session.account, auto_recharge=policy.after_start(settings))
        return order

    def transactions(
        self, org_id: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[LedgerEntry]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return CreditRepository(uow.conn).entries(org_id, limit=limit, before_seq=before_seq)

    def invoices(self, org_id: str, *, limit: int = 100) -> list[Invoice]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return InvoiceRepository(uow.conn).for_org(org_id, limit=limit)

    def invoice(self, org_id: str, invoice_id: str) -> Invoice:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            invoice = InvoiceRepository(uow.conn).get(org_id, invoice_id)
        if invoice is None:
            raise NotFound("no such invoice", code="invoice_not_found")
        return invoice

    # -- organization events ---------------------------------------------------------------------

    def on_billing_changed(
        self, uow: UnitOfWork, before: Organization, after: Organization
    ) -> None:
        """R-03: an organization that becomes postpaid has auto-recharge turned off."""
        if after.billing != "postpaid":
            return
        repo = CreditRepository(uow.conn)
        account = repo.account(after.id)
        if account is None or not account.auto_recharge.enabled:
            return
        off = replace(
            account.auto_recharge, enabled=False, status="off", failures=0, next_retry_at=None
        )
        repo.save_account(replace(account, auto_recharge=off), self.clock.now())

    # -- jobs ----------------------------------------------------------------------------------

    def pay_pending_orders(self) -> int:
        """Settle orders whose payment outcome is not known yet (time-outs, crashes)."""
        with self.store.unit_of_work(read_only=True) as uow:
            due = OrderRepository(uow.conn).pending_due(self.clock.now())
        for order in due:
            self._pay(order)
        return len(due)

    def next_pending_order_at(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return OrderRepository(uow.conn).next_pending_at()

    def retry_recharges(self) -> int:
        """Try declined recharges again once their back-off is over (1 h, 6 h, 24 h)."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            due = CreditRepository(uow.conn).accounts_due_for_retry(now)
        started = 0
        for org_id in due:
            order = self._retry_one(org_id)
            if order is not None:
                self._pay(order)
                started += 1
        return started

    @retrying()
    def _retry_one(self, org_id: str) -> CreditOrder | None:
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, self.clock.now())
            # Below the trigger: the retry's order. Lifted meanwhile: back to ok, no charge.
            order = self.maybe_start_recharge(uow, session)
            session.close()
            uow.commit()
        return order

    def next_retry_at(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return CreditRepository(uow.conn).next_retry_at()

    def expire_lots(self) -> int:
        """R-21: forfeit what is left in lots whose 12 months are over."""
        with self.store.unit_of_work(read_only=True) as uow:
            orgs = CreditRepository(uow.conn).orgs_with_expired_lots(self.clock.now())
        for org_id in orgs:
            order = self._expire_org(org_id)
            if order is not None:
                self._pay(order)
        return len(orgs)

    @retrying()
    def _expire_org(self, org_id: str) -> CreditOrder | None:
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, self.clock.now())  # sweeps on opening
            order = self.after_debit(uow, session)
            session.close()
            uow.commit()
        return order

    def next_expiry_at(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return CreditRepository(uow.conn).next_expiry()

    def warn_expiring_lots(self, days_before: Sequence[int]) -> int:
        """Mail the billing admins before lots with money left expire (30 and 7 days)."""
        now = self.clock.now()
        warned = 0
        for days in sorted(days_before):
            with self.store.unit_of_work() as uow:
                repo = CreditRepository(uow.conn)
                by_org: dict[str, list[Lot]] = {}
                for org_id, lot, _ in repo.lots_to_warn(now, days):
                    by_org.setdefault(org_id, []).append(lot)
                for org_id, lots in by_org.items():
                    org = get_org(uow, org_id)
                    notices.lots_expiring(uow, org, lots, days, now)
                    for lot in lots:
                        repo.mark_warned(org_id, lot.id, days)
                    warned += len(lots)
                uow.commit()
        return warned

    def next_warning_at(self, days_before: Sequence[int]) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            repo = CreditRepository(uow.conn)
            times = [t for days in days_before if (t := repo.next_warning_at(days)) is not None]
        return min(times) if times else None


def _short_text(value: str | None, limit: int, field: str, code: str) -> str | None:
    """Trimmed text of at most ``limit`` characters (what the column holds), or None if blank."""
    text = (value or "").strip()
    if len(text) > limit:
        raise RuleViolation(f"{field} has at most {limit} characters", code=code, field=field)
    return text or None


def _settings_json(settings: policy.AutoRecharge) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "trigger_amount": str(settings.trigger_amount) if settings.trigger_amount else None,
        "recharge_amount": str(settings.recharge_amount) if settings.recharge_amount else None,
        "payment_method_id": settings.payment_method_id,
    }


def _settings_from_json(data: dict[str, Any]) -> policy.AutoRecharge:
    enabled = bool(data["enabled"])
    return policy.AutoRecharge(
        enabled=enabled,
        trigger_amount=parse_amount(data["trigger_amount"]) if data["trigger_amount"] else None,
        recharge_amount=parse_amount(data["recharge_amount"]) if data["recharge_amount"] else None,
        payment_method_id=data["payment_method_id"],
        status="ok" if enabled else "off",
    )
