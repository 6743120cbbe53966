"""The simulated clock and the job runner (API.md, Conventions: Clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commcredits.adapters.clock import SimulatedClock
from commcredits.app import Container, build
from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.services import mail
from tests.conftest import CollectingTransport, make_settings


def _queue_mail(container: Container, subject: str = "hello") -> None:
    with container.store.unit_of_work() as uow:
        mail.enqueue(
            uow,
            org_id=None,
            kind="test",
            recipients=["admin@example.com"],
            subject=subject,
            body="body",
            now=container.clock.now(),
        )
        uow.commit()


def test_the_simulated_clock_starts_where_configured_and_only_moves_forward(
    container: Container,
) -> None:
    start = container.clock.now()
    assert start == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    container.jobs.advance_clock(start + timedelta(days=1))
    assert container.clock.now() == start + timedelta(days=1)
    with pytest.raises(RuleViolation) as refused:
        container.jobs.advance_clock(start)
    assert refused.value.code == "clock_cannot_go_backwards"
    assert container.clock.now() == start + timedelta(days=1)


def test_the_simulated_time_is_shared_by_every_process_on_the_database(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    container.jobs.advance_clock(datetime(2026, 6, 1, tzinfo=UTC))
    other = build(make_settings(database_url, tmp_path, clock_start="2020-01-01T00:00:00Z"))
    assert isinstance(other.clock, SimulatedClock)
    assert other.clock.now() == datetime(2026, 6, 1, tzinfo=UTC)
    other.close()


def test_the_system_clock_cannot_be_moved(
    database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    system = build(make_settings(database_url, tmp_path, clock="system"), transport=mail)
    with pytest.raises(Conflict) as refused:
        system.jobs.advance_clock(datetime(2030, 1, 1, tzinfo=UTC))
    assert refused.value.code == "clock_not_simulated"
    system.close()


def test_a_job_run_twice_does_its_work_once(
    container: Container, mail: CollectingTransport
) -> None:
    _queue_mail(container)
    first = container.jobs.run_due()
    second = container.jobs.run_due()
    assert [(run.job, run.processed) for run in first] == [("mail_dispatch", 1)]
    assert second == []
    assert len(mail.sent) == 1


def test_a_runner_skips_a_job_whose_lease_another_runner_holds(
    container: Container, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    _queue_mail(container)
    other = build(make_settings(database_url, tmp_path), transport=mail)
    [job] = [job for job in container.jobs.jobs if job.name == "mail_dispatch"]
    from commcredits.store.jobs import JobLeaseRepository

    now = datetime.now(UTC)
    with other.store.unit_of_work() as uow:
        leases = JobLeaseRepository(uow.conn)
        leases.ensure(job.name)
        assert leases.acquire(job.name, "other-runner", now, now + timedelta(minutes=5))
        uow.commit()
    assert container.jobs.run_due() == []
    assert mail.sent == []
    other.close()


def test_moving_the_clock_runs_jobs_that_fell_due_on_the_way(
    container: Container, mail: CollectingTransport
) -> None:
    mail.failures_left = 1
    _queue_mail(container)
    runs = container.jobs.run_due()
    assert [(run.job, run.processed) for run in runs] == [("mail_dispatch", 1)]
    assert mail.sent == []  # failed, kept, retried a minute later
    target = container.clock.now() + timedelta(hours=2)
    runs = container.jobs.advance_clock(target)
    assert len(mail.sent) == 1
    assert [run.job for run in runs] == ["mail_dispatch"]
    assert runs[0].at < target  # it ran when it fell due, not at the end of the jump
