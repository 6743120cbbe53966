"""Console sign-in: passwords, invitations, sessions and lock-out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from commcredits.adapters.clock import SimulatedClock
from commcredits.app import Container
from commcredits.domain.errors import NotFound, RuleViolation, Unauthenticated
from commcredits.services.orgs import NewOrganization
from commcredits.services.signin import LOCKOUT, MAX_FAILURES, PURGE_AFTER
from commcredits.store.tables import admin_invitations, console_sessions, signin_failures

PASSWORD = "correct horse battery"


def _org_with_admin(container: Container, email: str = "pat@contoso.example") -> str:
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    container.orgs.add_admin(org.id, email, "Pat", ["billing_admin"])
    return org.id


def _advance(container: Container, delta: timedelta) -> None:
    clock = container.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(clock.now() + delta)


def test_an_admin_with_a_password_signs_in_and_out(container: Container) -> None:
    org_id = _org_with_admin(container)
    container.signin.set_password(org_id, "Pat@Contoso.example", PASSWORD)

    session = container.signin.sign_in("pat@contoso.example", PASSWORD)

    assert (session.org_id, session.roles) == (org_id, ("billing_admin",))
    found = container.signin.session(session.token)
    assert found is not None
    assert found.email == "pat@contoso.example"
    container.signin.sign_out(session.token)
    assert container.signin.session(session.token) is None


def test_the_password_is_stored_only_as_an_argon2_hash(container: Container) -> None:
    from sqlalchemy import select

    from commcredits.store.tables import admins

    org_id = _org_with_admin(container)
    container.signin.set_password(org_id, "pat@contoso.example", PASSWORD)
    with container.store.unit_of_work(read_only=True) as uow:
        stored = uow.conn.execute(select(admins.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_a_wrong_password_or_unknown_address_is_refused_alike(container: Container) -> None:
    org_id = _org_with_admin(container)
    container.signin.set_password(org_id, "pat@contoso.example", PASSWORD)

    with pytest.raises(Unauthenticated) as wrong:
        container.signin.sign_in("pat@contoso.example", "not the password")
    with pytest.raises(Unauthenticated) as unknown:
        container.signin.sign_in("nobody@contoso.example", PASSWORD)
    assert wrong.value.code == unknown.value.code == "invalid_credentials"
    assert wrong.value.message == unknown.value.message


def test_a_short_password_is_refused(sqlite_container: Container) -> None:
    org_id = _org_with_admin(sqlite_container)
    with pytest.raises(RuleViolation) as refused:
        sqlite_container.signin.set_password(org_id, "pat@contoso.example", "short")
    assert refused.value.code == "password_too_short"


def test_setting_a_password_for_someone_who_is_not_an_admin_is_refused(
    sqlite_container: Container,
) -> None:
    org_id = _org_with_admin(sqlite_container)
    with pytest.raises(NotFound):
        sqlite_container.signin.set_password(org_id, "eve@contoso.example", PASSWORD)


def test_repeated_failures_lock_the_address_even_against_the_right_password(
    container: Container,
) -> None:
    org_id = _org_with_admin(container)
    container.signin.set_password(org_id, "pat@contoso.example", PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthenticated):
            container.signin.sign_in("pat@contoso.example", "guess")

    with pytest.raises(Unauthenticated) as locked:
        container.signin.sign_in("pat@contoso.example", PASSWORD)
    assert locked.value.code == "signin_locked"

    _advance(container, timedelta(minutes=16))
    assert container.signin.sign_in("pat@contoso.example", PASSWORD).org_id == org_id


def test_an_invitation_sets_the_password_once(container: Container) -> None:
    org_id = _org_with_admin(container)
    token = container.signin.invite(org_id, "pat@contoso.example")

    assert container.signin.invitation(token).email == "pat@contoso.example"
    container.signin.accept_invitation(token, PASSWORD)

    assert container.signin.sign_in("pat@contoso.example", PASSWORD).org_id == org_id
    with pytest.raises(RuleViolation) as reused:
        container.signin.accept_invitation(token, "another long password")
    assert reused.value.code == "invitation_invalid"


def test_an_invitation_expires_after_seven_days(sqlite_container: Container) -> None:
    org_id = _org_with_admin(sqlite_container)
    token = sqlite_container.signin.invite(org_id, "pat@contoso.example")
    _advance(sqlite_container, timedelta(days=7, seconds=1))
    with pytest.raises(RuleViolation):
        sqlite_container.signin.accept_invitation(token, PASSWORD)


def test_a_session_ends_when_idle_and_when_the_password_changes(
    sqlite_container: Container,
) -> None:
    org_id = _org_with_admin(sqlite_container)
    signin = sqlite_container.signin
    signin.set_password(org_id, "pat@contoso.example", PASSWORD)
    idle = signin.sign_in("pat@contoso.example", PASSWORD)
    _advance(sqlite_container, timedelta(hours=2, seconds=1))
    assert signin.session(idle.token) is None

    active = signin.sign_in("pat@contoso.example", PASSWORD)
    signin.set_password(org_id, "pat@contoso.example", "a different long password")
    assert signin.session(active.token) is None


def test_an_address_admin_of_two_organizations_must_choose(sqlite_container: Container) -> None:
    first = _org_with_admin(sqlite_container)
    second = _org_with_admin(sqlite_container)
    for org_id in (first, second):
        sqlite_container.signin.set_password(org_id, "pat@contoso.example", PASSWORD)

    with pytest.raises(RuleViolation) as ambiguous:
        sqlite_container.signin.sign_in("pat@contoso.example", PASSWORD)
    assert ambiguous.value.code == "organization_required"
    chosen = sqlite_container.signin.sign_in("pat@contoso.example", PASSWORD, org_id=second)
    assert chosen.org_id == second


def test_the_operator_signs_in_with_an_operator_key_only(sqlite_container: Container) -> None:
    session = sqlite_container.signin.sign_in_operator("test-operator-key")
    assert session.is_operator
    assert session.reaches("org_anything")
    with pytest.raises(Unauthenticated):
        sqlite_container.signin.sign_in_operator("cck_nope.nope")


def test_csrf_tokens_belong_to_their_session(sqlite_container: Container) -> None:
    one = sqlite_container.signin.sign_in_operator("test-operator-key")
    two = sqlite_container.signin.sign_in_operator("test-operator-key")
    assert one.csrf_matches(one.csrf_token())
    assert not one.csrf_matches(two.csrf_token())
    assert not one.csrf_matches(None)


def _rows(container: Container) -> dict[str, int]:
    with container.store.unit_of_work(read_only=True) as uow:
        return {
            table.name: uow.conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (console_sessions, admin_invitations, signin_failures)
        }


def test_the_console_purge_job_deletes_what_ended_a_month_ago_and_keeps_the_rest(
    container: Container,
) -> None:
    """Ended sessions, lapsed invitations and old sign-in failures do not pile up: the
    ``console_purge`` job deletes them a month after they stopped mattering, and touches
    nothing still in use."""
    org_id = _org_with_admin(container)
    signin = container.signin
    assert signin.next_purge_at() is None  # nothing to purge: the job is not due
    signin.set_password(org_id, "pat@contoso.example", PASSWORD)
    signin.sign_in("pat@contoso.example", PASSWORD)
    signin.invite(org_id, "pat@contoso.example")
    failed_at = container.clock.now()
    with pytest.raises(Unauthenticated):
        signin.sign_in("pat@contoso.example", "guess")
    assert _rows(container) == {"console_sessions": 1, "admin_invitations": 1, "signin_failures": 1}
    # The failure is the oldest thing to lapse: LOCKOUT after it, plus the month.
    assert signin.next_purge_at() == failed_at + LOCKOUT + PURGE_AFTER

    _advance(container, PURGE_AFTER + timedelta(hours=12))
    runs = container.jobs.run_due()
    assert ("console_purge", 2) in [(run.job, run.processed) for run in runs]
    fresh = signin.sign_in("pat@contoso.example", PASSWORD)
    assert _rows(container) == {"console_sessions": 1, "admin_invitations": 1, "signin_failures": 0}
    assert signin.session(fresh.token) is not None

    _advance(container, timedelta(days=8))
    runs = container.jobs.run_due()
    assert ("console_purge", 1) in [(run.job, run.processed) for run in runs]
    assert _rows(container)["admin_invitations"] == 0
    assert signin.session(fresh.token) is None  # ended long ago by its lifetime, kept a month
    assert _rows(container)["console_sessions"] == 1


def test_a_lock_out_in_force_is_never_purged(sqlite_container: Container) -> None:
    org_id = _org_with_admin(sqlite_container)
    signin = sqlite_container.signin
    signin.set_password(org_id, "pat@contoso.example", PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthenticated):
            signin.sign_in("pat@contoso.example", "guess")
    assert signin.purge() == 0
    with pytest.raises(Unauthenticated) as locked:
        signin.sign_in("pat@contoso.example", PASSWORD)
    assert locked.value.code == "signin_locked"
