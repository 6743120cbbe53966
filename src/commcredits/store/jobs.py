"""Job leases: at most one runner works on a job at a time, across processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from commcredits.store.tables import job_leases


class JobLeaseRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def ensure(self, name: str) -> None:
        exists = self.conn.execute(
            select(job_leases.c.name).where(job_leases.c.name == name)
        ).first()
        if exists is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(insert(job_leases).values(name=name))
            except IntegrityError:
                pass  # another runner created it first

    def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        result = self.conn.execute(
            update(job_leases)
            .where(
                job_leases.c.name == name,
                or_(job_leases.c.lease_until.is_(None), job_leases.c.lease_until < now),
            )
            .values(holder=holder, lease_until=until)
        )
        return result.rowcount == 1

    def release(self, name: str, holder: str, ran_at: datetime, result: str) -> None:
        self.conn.execute(
            update(job_leases)
            .where(job_leases.c.name == name, job_leases.c.holder == holder)
            .values(holder=None, lease_until=None, last_run_at=ran_at, last_result=result)
        )
