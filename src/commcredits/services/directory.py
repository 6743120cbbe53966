"""Use cases of the directory: users, licenses, subscriptions, numbers, policies (R-10..R-15,
R-37). Every change is written to the audit log in the same transaction, naming the key that
made it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, get_args

from sqlalchemy.exc import IntegrityError

from commcredits.adapters.clock import Clock
from commcredits.domain.countries import check_country
from commcredits.domain.directory import (
    AuditEntry,
    PhoneNumber,
    Subscription,
    User,
    check_toll_free,
    check_upn,
    parse_e164,
)
from commcredits.domain.errors import CommcreditsError, Conflict, NotFound, RuleViolation
from commcredits.domain.ids import new_id
from commcredits.domain.licensing import Catalogue
from commcredits.domain.money import parse_money
from commcredits.domain.organizations import (
    DialoutPolicy,
    Organization,
    PstnPolicy,
    check_name,
)
from commcredits.services.orgs import get_org, locked_org
from commcredits.store.credits import CreditRepository
from commcredits.store.database import Store, UnitOfWork, retrying
from commcredits.store.directory import (
    AuditRepository,
    NumberRepository,
    SubscriptionRepository,
    UserRepository,
)

CREDITS_SKU: Final = "MCOPSTNPP"
PSTN_POLICIES: Final[tuple[str, ...]] = get_args(PstnPolicy)
DIALOUT_POLICIES: Final[tuple[str, ...]] = get_args(DialoutPolicy)
UNSET: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class UserChanges:
    display_name: str | None = None
    usage_location: Any = UNSET  # str | None; UNSET leaves it
    pstn_policy: Any = UNSET  # PstnPolicy | None (None: the organization's default)
    dialout_policy: Any = UNSET
    spend_limit: Any = UNSET  # decimal string | None


@dataclass(frozen=True, slots=True)
class BulkResult:
    user: str
    ok: bool
    licenses: tuple[str, ...] = ()
    error: CommcreditsError | None = None


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(line, upn, code, message) for every refused row."""


class _Seats:
    """Seat accounting for one transaction: what is bought, what is taken (R-10)."""

    def __init__(self, uow: UnitOfWork, org: Organization, catalogue: Catalogue):
        self.quantities = SubscriptionRepository(uow.conn).quantities(org.id)
        self.assigned = UserRepository(uow.conn).assigned_counts(org.id)
        self.catalogue = catalogue
        funded = CreditRepository(uow.conn).has_lots(org.id)
        # MCOPSTNPP only gates access to the one balance: unlimited once there is a balance
        # to reach (funded credits), or overage to bill (postpaid with overage on).
        self.credits_open = funded or (org.is_postpaid and org.overage_enabled)

    def take(self, added: Iterable[str], removed: Iterable[str]) -> None:
        added = list(added)
        for sku in added:
            if self.catalogue.sku(sku).unlimited_seats:
                if not self.credits_open:
                    raise RuleViolation(
                        f"{sku} becomes available once the organization has funded credits",
                        code="no_seats_available",
                        field="add",
                    )
                continue
            if self.assigned.get(sku, 0) >= self.quantities.get(sku, 0):
                raise RuleViolation(
                    f"no free {sku} seat: {self.quantities.get(sku, 0)} bought,"
                    f" {self.assigned.get(sku, 0)} assigned",
                    code="no_seats_available",
                    field="add",
                )
        for sku in added:
            self.assigned[sku] = self.assigned.get(sku, 0) + 1
        for sku in removed:
            self.assigned[sku] = max(self.assigned.get(sku, 0) - 1, 0)


def _audit(
    org_id: str, actor: str, action: str, target: str | None, now: datetime, **details: Any
) -> AuditEntry:
    return AuditEntry(
        org_id=org_id,
        id=new_id("aud"),
        at=now,
        actor=actor,
        action=action,
        target=target,
        details=details,
    )


class Directory:
    def __init__(self, store: Store, clock: Clock, catalogue: Catalogue):
        self.store = store
        self.clock = clock
        self.catalogue = catalogue

    # -- users ---------------------------------------------------------------------------------

    @staticmethod
    def _user(uow: UnitOfWork, org_id: str, id_or_upn: str) -> User:
        user = UserRepository(uow.conn).get(org_id, id_or_upn)
        if user is None:
            raise NotFound(f"no user {id_or_upn!r} in this organization", code="user_not_found")
        return user

    @retrying()
    def create_user(
        self, org_id: str, upn: str, display_name: str, usage_location: str | None, *, actor: str
    ) -> User:
        now = self.clock.now()
        user = User(
            org_id=org_id,
            id=new_id("usr"),
            upn=check_upn(upn),
            display_name=check_name(display_name, field="display_name"),
            usage_location=check_country(usage_location, field="usage_location")
            if usage_location
            else None,
            licenses=frozenset(),
            pstn_policy=None,
            dialout_policy=None,
            spend_limit=None,
            created_at=now,
            updated_at=now,
        )
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            repo = UserRepository(uow.conn)
            if repo.get(org_id, user.upn) is not None:
                raise Conflict(f"{user.upn} already exists", code="user_exists", field="upn")
            repo.add(user)  # the organization is locked: no concurrent twin can slip in
            AuditRepository(uow.conn).add_many(
                [
                    _audit(
                        org_id,
                        actor,
                        "user.created",
                        user.upn,
                        now,
                        display_name=user.display_name,
                        usage_location=user.usage_location,
                    )
                ]
            )
            uow.commit()
        return user

    def get_user(self, org_id: str, id_or_upn: str) -> User:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return self._user(uow, org_id, id_or_upn)

    def list_users(
        self,
        org_id: str,
        *,
        sku: str | None = None,
        search: str | None = None,
        usage_location: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[User]:
        if sku is not None:
            self.catalogue.sku(sku)
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return UserRepository(uow.conn).page(
                org_id,
                sku=sku,
                search=search,
                usage_location=usage_location,
                limit=limit,
                after=after,
            )

    def all_users(self, org_id: str) -> list[User]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return sorted(UserRepository(uow.conn).all(org_id), key=lambda u: u.upn)

    def _apply_changes(
        self, user: User, changes: UserChanges, currency: str, *, check_plans: bool = True
    ) -> User:
        updated = user
        if changes.display_name is not None:
            updated = replace(
                updated, display_name=check_name(changes.display_name, field="display_name")
            )
        if changes.usage_location is not UNSET:
            location = changes.usage_location
            location = check_country(location, field="usage_location") if location else None
            if check_plans and location != user.usage_location:
                # Changing where a user is re-checks the calling plan.
                self.catalogue.check_location_change(user.licenses, location)
            updated = replace(updated, usage_location=location)
        if changes.pstn_policy is not UNSET:
            updated = replace(updated, pstn_policy=changes.pstn_policy)
        if changes.dialout_policy is not UNSET:
            updated = replace(updated, dialout_policy=changes.dialout_policy)
        if changes.spend_limit is not UNSET:
            limit = changes.spend_limit
            amount = parse_money(limit, currency, field="spend_limit").amount if limit else None
            if amount is not None and amount < 0:
                raise RuleViolation(
                    "a spend limit cannot be negative", code="invalid_amount", field="spend_limit"
                )
            updated = replace(updated, spend_limit=amount)
        return updated

    @retrying()
    def update_user(self, org_id: str, id_or_upn: str, changes: UserChanges, *, actor: str) -> User:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            org = locked_org(uow, org_id)
            user = self._user(uow, org_id, id_or_upn)
            updated = self._apply_changes(user, changes, org.currency)
            if updated != user:
                updated = replace(updated, updated_at=now)
                UserRepository(uow.conn).update(updated)
                AuditRepository(uow.conn).add_many(
                    [_audit(org_id, actor, "user.updated", user.upn, now, **_diff(user, updated))]
                )
            uow.commit()
        return updated

    @retrying()
    def delete_user(self, org_id: str, id_or_upn: str, *, actor: str) -> None:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            user = self._user(uow, org_id, id_or_upn)
            NumberRepository(uow.conn).release_user(org_id, user.id)
            UserRepository(uow.conn).delete(org_id, user.id)
            AuditRepository(uow.conn).add_many(
                [
                    _audit(
                        org_id, actor, "user.deleted", user.upn, now, licenses=sorted(user.licenses)
                    )
                ]
            )
            uow.commit()

    # -- licenses ------------------------------------------------------------------------------

    @retrying()
    def change_licenses(
        self, org_id: str, id_or_upn: str, add: Sequence[str], remove: Sequence[str], *, actor: str
    ) -> User:
        """Assign and remove licenses of one user, all or nothing (R-11..R-13)."""
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            org = locked_org(uow, org_id)
            user = self._user(uow, org_id, id_or_upn)
            seats = _Seats(uow, org, self.catalogue)
            updated = self._change(user, add, remove, seats, now)
            if updated.licenses != user.licenses:
                UserRepository(uow.conn).set_licenses(updated, user.licenses, now)
                AuditRepository(uow.conn).add_many([self._license_audit(user, updated, actor, now)])
            uow.commit()
        return updated

    def _change(
        self, user: User, add: Sequence[str], remove: Sequence[str], seats: _Seats, now: datetime
    ) -> User:
        licenses = self.catalogue.check_change(user.licenses, add, remove, user.usage_location)
        seats.take(licenses - user.licenses, user.licenses - licenses)
        return replace(user, licenses=licenses, updated_at=now)

    @staticmethod
    def _license_audit(before: User, after: User, actor: str, now: datetime) -> AuditEntry:
        return _audit(
            before.org_id,
            actor,
            "licenses.changed",
            before.upn,
            now,
            added=sorted(after.licenses - before.licenses),
            removed=sorted(before.licenses - after.licenses),
        )

    @retrying()
    def bulk_change_licenses(
        self,
        org_id: str,
        users: Sequence[str],
        add: Sequence[str],
        remove: Sequence[str],
        *,
        actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> list[BulkResult]:
        """R-14: one change for many users. Each user is all or nothing; one user's refusal does
        not stop the others. Seats are taken in the order the users are given."""
        now = self.clock.now()
        results: list[BulkResult] = []
        with self.store.unit_of_work() as uow:
            org = locked_org(uow, org_id)
            repo = UserRepository(uow.conn)
            everyone = {u.upn: u for u in repo.all(org_id)}
            by_id = {u.id: u for u in everyone.values()}
            seats = _Seats(uow, org, self.catalogue)
            additions: list[tuple[str, str]] = []
            removals: list[tuple[str, str]] = []
            audits: list[AuditEntry] = []
            for index, wanted in enumerate(users, start=1):
                key = wanted.strip().lower()
                user = everyone.get(key) or by_id.get(wanted.strip())
                if user is None:
                    error = NotFound(f"no user {wanted!r}", code="user_not_found", field="users")
                    results.append(BulkResult(wanted, False, error=error))
                    continue
                try:
                    updated = self._change(user, add, remove, seats, now)
                except CommcreditsError as exc:
                    results.append(BulkResult(user.upn, False, tuple(sorted(user.licenses)), exc))
                    continue
                additions += [(user.id, sku) for sku in sorted(updated.licenses - user.licenses)]
                removals += [(user.id, sku) for sku in sorted(user.licenses - updated.licenses)]
                if updated.licenses != user.licenses:
                    audits.append(self._license_audit(user, updated, actor, now))
                everyone[user.upn] = by_id[user.id] = updated
                results.append(BulkResult(user.upn, True, tuple(sorted(updated.licenses))))
                if progress is not None and index % 1000 == 0:
                    progress(index)
            repo.bulk_change_licenses(org_id, additions, removals, now)
            AuditRepository(uow.conn).add_many(audits)
            uow.commit()
        if progress is not None:
            progress(len(users))
        return results

    # -- subscriptions -------------------------------------------------------------------------

    @retrying()
    def set_subscription(self, org_id: str, sku: str, quantity: int, *, actor: str) -> Subscription:
        """Buy seats of a SKU: sets the seat count, never below the seats already assigned."""
        definition = self.catalogue.sku(sku)
        if definition.unlimited_seats:
            raise Conflict(
                f"{sku} is not bought by the seat: it comes with funded credits",
                code="subscription_not_needed",
                field="sku",
            )
        if quantity < 0:
            raise RuleViolation(
                "a seat count cannot be negative", code="invalid_quantity", field="quantity"
            )
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            assigned = UserRepository(uow.conn).assigned_counts(org_id).get(sku, 0)
            if quantity < assigned:
                raise Conflict(
                    f"{assigned} {sku} seats are assigned; remove licenses before reducing to"
                    f" {quantity}",
                    code="seats_in_use",
                    field="quantity",
                )
            SubscriptionRepository(uow.conn).set(org_id, sku, quantity, now)
            AuditRepository(uow.conn).add_many(
                [_audit(org_id, actor, "subscription.set", sku, now, quantity=quantity)]
            )
            uow.commit()
        return Subscription(sku=sku, quantity=quantity, assigned=assigned)

    def subscriptions(self, org_id: str) -> list[Subscription]:
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            quantities = SubscriptionRepository(uow.conn).quantities(org_id)
            assigned = UserRepository(uow.conn).assigned_counts(org_id)
            seats = _Seats(uow, org, self.catalogue)
        found = [
            Subscription(sku=sku, quantity=quantity, assigned=assigned.get(sku, 0))
            for sku, quantity in sorted(quantities.items())
        ]
        if seats.credits_open or assigned.get(CREDITS_SKU):
            found.append(Subscription(CREDITS_SKU, None, assigned.get(CREDITS_SKU, 0)))
        return found

    # -- numbers -------------------------------------------------------------------------------

    @retrying()
    def add_number(
        self, org_id: str, number: str, kind: str, assigned_to: str | None, *, actor: str
    ) -> PhoneNumber:
        e164, country = parse_e164(number)
        check_toll_free(e164, kind)
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            numbers = NumberRepository(uow.conn)
            taken = Conflict(f"{e164} is already in use", code="number_taken", field="number")
            if numbers.get_any(e164) is not None:
                # Said the same way whichever organization holds it: nothing leaks.
                raise taken
            user_id = self._number_user(uow, org_id, kind, assigned_to)
            phone = PhoneNumber(e164, org_id, kind, country, user_id, now)  # type: ignore[arg-type]
            try:
                with uow.conn.begin_nested():
                    numbers.add(phone)
            except IntegrityError:
                raise taken from None  # another organization added it at the same moment
            AuditRepository(uow.conn).add_many(
                [
                    _audit(
                        org_id, actor, "number.added", e164, now, kind=kind, assigned_to=assigned_to
                    )
                ]
            )
            uow.commit()
        return phone

    def _number_user(
        self, uow: UnitOfWork, org_id: str, kind: str, assigned_to: str | None
    ) -> str | None:
        if kind != "user":
            if assigned_to:
                raise RuleViolation(
                    "only user numbers are assigned to users",
                    code="invalid_assignment",
                    field="assigned_to",
                )
            return None
        if not assigned_to:
            return None
        user = self._user(uow, org_id, assigned_to)
        if not self.catalogue.has_calling_plan(user.licenses):
            raise RuleViolation(
                f"{user.upn} has no calling plan, so a user number cannot be assigned",
                code="calling_plan_required",
                field="assigned_to",
            )
        return user.id

    @retrying()
    def assign_number(
        self, org_id: str, number: str, assigned_to: str | None, *, actor: str
    ) -> PhoneNumber:
        now = self.clock.now()
        e164, _ = parse_e164(number)
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            numbers = NumberRepository(uow.conn)
            phone = numbers.get(org_id, e164)
            if phone is None:
                raise NotFound(f"no number {e164} in this organization", code="number_not_found")
            user_id = self._number_user(uow, org_id, phone.kind, assigned_to)
            numbers.assign(org_id, e164, user_id)
            AuditRepository(uow.conn).add_many(
                [_audit(org_id, actor, "number.assigned", e164, now, assigned_to=assigned_to)]
            )
            uow.commit()
        return replace(phone, user_id=user_id)

    def numbers(
        self, org_id: str, *, kind: str | None = None
    ) -> tuple[list[PhoneNumber], dict[str, str]]:
        """The organization's numbers, and the UPN of each user a number is assigned to."""
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            found = NumberRepository(uow.conn).for_org(org_id, kind=kind)
            ids = sorted({n.user_id for n in found if n.user_id})
            return found, UserRepository(uow.conn).upns(org_id, ids)

    @retrying()
    def remove_number(self, org_id: str, number: str, *, actor: str) -> None:
        e164, _ = parse_e164(number)
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            locked_org(uow, org_id)
            if not NumberRepository(uow.conn).delete(org_id, e164):
                raise NotFound(f"no number {e164} in this organization", code="number_not_found")
            AuditRepository(uow.conn).add_many([_audit(org_id, actor, "number.removed", e164, now)])
            uow.commit()

    # -- audit ---------------------------------------------------------------------------------

    def audit(
        self, org_id: str, *, limit: int = 100, before: str | None = None
    ) -> list[AuditEntry]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return AuditRepository(uow.conn).page(org_id, limit=limit, before=before)

    # -- import --------------------------------------------------------------------------------

    def import_users(
        self,
        org_id: str,
        rows: Iterable[tuple[int, dict[str, str]]],
        *,
        actor: str,
        progress: Callable[[int], None] | None = None,
        chunk: int = 500,
    ) -> ImportReport:
        """Create or update users from CSV rows (line number, columns). A bad row is reported
        with its line and never stops the good ones; importing the same file again changes
        nothing. Columns: upn, display_name, usage_location, and optionally licenses
        (``;``-separated: the user's exact set afterwards)."""
        report = ImportReport()
        batch: list[tuple[int, dict[str, str]]] = []
        done = 0
        for item in rows:
            batch.append(item)
            if len(batch) >= chunk:
                self._import_chunk(org_id, batch, actor, report)
                done += len(batch)
                batch = []
                if progress:
                    progress(done)
        if batch:
            self._import_chunk(org_id, batch, actor, report)
            done += len(batch)
            if progress:
                progress(done)
        return report

    @retrying()
    def _import_chunk(
        self, org_id: str, batch: list[tuple[int, dict[str, str]]], actor: str, report: ImportReport
    ) -> None:
        now = self.clock.now()
        outcome = ImportReport()
        with self.store.unit_of_work() as uow:
            org = locked_org(uow, org_id)
            seats = _Seats(uow, org, self.catalogue)
            for line, row in batch:
                try:
                    with uow.conn.begin_nested():
                        kind = self._import_row(uow, org, row, seats, actor, now)
                except CommcreditsError as exc:
                    outcome.errors.append((line, row.get("upn", ""), exc.code, exc.message))
                    continue
                setattr(outcome, kind, getattr(outcome, kind) + 1)
            uow.commit()
        report.created += outcome.created
        report.updated += outcome.updated
        report.unchanged += outcome.unchanged
        report.errors += outcome.errors

    def _import_row(
        self,
        uow: UnitOfWork,
        org: Organization,
        row: dict[str, str],
        seats: _Seats,
        actor: str,
        now: datetime,
    ) -> str:
        """One CSV row: the user as the row describes it, checked as a whole end state."""
        upn = check_upn(row.get("upn") or "")
        repo = UserRepository(uow.conn)
        audits = AuditRepository(uow.conn)
        existing = repo.get(org.id, upn)
        before = existing or User(
            org.id, new_id("usr"), upn, "", None, frozenset(), None, None, None, now, now
        )
        location_text = (row.get("usage_location") or "").strip().upper()
        changes = UserChanges(
            display_name=row.get("display_name") or "",
            # Checked below against the licenses the user will have, not those it has now.
            usage_location=location_text or None,
            pstn_policy=_policy(row, "pstn_policy", PSTN_POLICIES),
            dialout_policy=_policy(row, "dialout_policy", DIALOUT_POLICIES),
            spend_limit=row["spend_limit"] or None if "spend_limit" in row else UNSET,
        )
        after = self._apply_changes(before, changes, org.currency, check_plans=False)
        wanted_text = row.get("licenses")
        if wanted_text is not None:
            wanted = {
                s.strip().upper() for s in wanted_text.replace(",", ";").split(";") if s.strip()
            }
            add, remove = sorted(wanted - before.licenses), sorted(before.licenses - wanted)
            if add or remove:
                after = self._change(after, add, remove, seats, now)
        self.catalogue.check_location_change(after.licenses, after.usage_location)
        if existing is None:
            repo.add(replace(after, licenses=frozenset()))
            repo.set_licenses(after, frozenset(), now)
            audits.add_many([_audit(org.id, actor, "user.created", upn, now, source="import")])
            return "created"
        if after == existing:
            return "unchanged"
        if replace(after, licenses=existing.licenses, updated_at=existing.updated_at) != existing:
            after = replace(after, updated_at=now)
            repo.update(after)
            audits.add_many(
                [_audit(org.id, actor, "user.updated", upn, now, **_diff(existing, after))]
            )
        if after.licenses != existing.licenses:
            repo.set_licenses(after, existing.licenses, now)
            audits.add_many([self._license_audit(existing, after, actor, now)])
        return "updated"


def _policy(row: dict[str, str], column: str, allowed: tuple[str, ...]) -> Any:
    """A policy column of an import row: absent leaves it, blank means the default."""
    if column not in row:
        return UNSET
    value = row[column].strip()
    if value and value not in allowed:
        raise RuleViolation(
            f"{column} is one of {', '.join(allowed)}, or blank for the default",
            code="invalid_policy",
            field=column,
        )
    return value or None


def _diff(before: User, after: User) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for name in ("display_name", "usage_location", "pstn_policy", "dialout_policy", "spend_limit"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changed[name] = {
                "from": str(old) if isinstance(old, Decimal) else old,
                "to": str(new) if isinstance(new, Decimal) else new,
            }
    return changed
