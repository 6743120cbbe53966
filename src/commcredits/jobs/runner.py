"""The job runner: runs what fell due, once, whoever else is running.

A job says when it next has work (:meth:`Job.next_due`) and does it (:meth:`Job.run`). Each job
keeps its work in the database, so running it twice does it once; a lease row makes sure two
runners (two workers, a CLI next to a server) never work on the same job at the same time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from commcredits.adapters.clock import Clock, SimulatedClock
from commcredits.domain.errors import Conflict
from commcredits.store.database import Store
from commcredits.store.jobs import JobLeaseRepository

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_PASSES = 50


class Job(Protocol):
    name: str

    def next_due(self) -> datetime | None:
        """The earliest service time at which the job has work, or None when it has none."""
        ...

    def run(self) -> int:
        """Do the work that is due now; returns how many items it handled."""
        ...


@dataclass(frozen=True, slots=True)
class JobRun:
    job: str
    at: datetime
    processed: int


class JobRunner:
    def __init__(self, store: Store, clock: Clock, jobs: Sequence[Job]):
        self.store = store
        self.clock = clock
        self.jobs = list(jobs)
        self.holder = f"{os.getpid()}-{id(self):x}"

    def _run_one(self, job: Job) -> int | None:
        wall = datetime.now(UTC)  # leases run on real time: the simulated clock may stand still
        with self.store.unit_of_work() as uow:
            leases = JobLeaseRepository(uow.conn)
            leases.ensure(job.name)
            acquired = leases.acquire(job.name, self.holder, wall, wall + LEASE)
            uow.commit()
        if not acquired:
            return None
        processed = 0
        outcome = "failed"
        try:
            processed = job.run()
            outcome = f"processed {processed}"
        finally:
            with self.store.unit_of_work() as uow:
                JobLeaseRepository(uow.conn).release(
                    job.name, self.holder, datetime.now(UTC), outcome
                )
                uow.commit()
        return processed

    def run_due(self) -> list[JobRun]:
        """Run every job that is due now, again while running one makes another due."""
        return self._run_due()[0]

    def _run_due(self) -> tuple[list[JobRun], dict[str, datetime | None]]:
        """:meth:`run_due`, also returning the next due time of each job the last pass looked
        at without running it (nothing ran after it looked): :meth:`advance_clock` needs them
        next and need not ask again."""
        runs: list[JobRun] = []
        failed: dict[str, Exception] = {}
        dues: dict[str, datetime | None] = {}
        for _ in range(MAX_PASSES):
            now = self.clock.now()
            ran_any = False
            dues = {}
            for job in self.jobs:
                if job.name in failed:
                    continue
                due = job.next_due()
                if due is None or due > now:
                    dues[job.name] = due
                    continue
                try:
                    processed = self._run_one(job)
                except Exception as exc:
                    # One failing job must not hold up the others (mail, pending payments):
                    # it is logged, the rest run, and the failure is raised at the end.
                    log.exception("job %s failed", job.name)
                    failed[job.name] = exc
                    continue
                if processed is None:
                    continue
                runs.append(JobRun(job.name, now, processed))
                ran_any = ran_any or processed > 0
            if not ran_any:
                break
        if failed:
            raise next(iter(failed.values()))
        return runs, dues

    def advance_clock(self, target: datetime) -> list[JobRun]:
        """Move the simulated clock to ``target``, stopping at each moment a job falls due on
        the way, so months of simulated time unfold in the order they would in real time."""
        clock = self.clock
        if not isinstance(clock, SimulatedClock):
            raise Conflict(
                "the clock is the system's; it cannot be moved", code="clock_not_simulated"
            )
        if target < clock.now():
            clock.set(target)  # raises clock_cannot_go_backwards
        runs, dues = self._run_due()
        while True:
            now = clock.now()
            upcoming = [
                due
                for job in self.jobs
                if (due := dues[job.name] if job.name in dues else job.next_due()) is not None
                and now < due <= target
            ]
            if not upcoming:
                break
            clock.set(min(upcoming))
            more, dues = self._run_due()
            runs += more
        clock.set(target)
        return runs + self.run_due()

    def start_background(self, interval_seconds: float) -> threading.Event:
        """Run due jobs every ``interval_seconds`` in a daemon thread until the event is set."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_seconds):
                try:
                    self.run_due()
                except Exception:
                    log.exception("background job run failed; will try again")

        threading.Thread(target=loop, name="commcredits-jobs", daemon=True).start()
        return stop
