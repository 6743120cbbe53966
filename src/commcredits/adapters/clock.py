"""The service clock: the system's, or a simulated one that only moves when told to.

The simulated clock lives in the database (``system_state``), so every worker process and
every restart sees the same time, and a demo can run months of traffic in minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select

from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.store import tables
from commcredits.store.database import Store

CLOCK_KEY = "clock_now"


class Clock(Protocol):
    mode: str

    def now(self) -> datetime: ...


class SystemClock:
    mode = "system"

    def now(self) -> datetime:
        return datetime.now(UTC)

    def set(self, when: datetime) -> None:
        raise Conflict("the system clock cannot be moved", code="clock_not_simulated")


class SimulatedClock:
    """A clock stored in the database that moves forward only."""

    mode = "simulated"

    def __init__(self, store: Store, start: datetime | None = None):
        self._store = store
        self._start = start

    def now(self) -> datetime:
        with self._store.unit_of_work(read_only=True) as uow:
            value = uow.conn.execute(
                select(tables.system_state.c.value).where(tables.system_state.c.key == CLOCK_KEY)
            ).scalar_one_or_none()
        if value is None:
            return self._initialise()
        return datetime.fromisoformat(value)

    def _initialise(self) -> datetime:
        start = (self._start or datetime.now(UTC)).astimezone(UTC)
        with self._store.unit_of_work() as uow:
            existing = uow.conn.execute(
                select(tables.system_state.c.value).where(tables.system_state.c.key == CLOCK_KEY)
            ).scalar_one_or_none()
            if existing is not None:
                return datetime.fromisoformat(existing)
            uow.conn.execute(
                tables.system_state.insert().values(key=CLOCK_KEY, value=start.isoformat())
            )
            uow.commit()
        return start

    def set(self, when: datetime) -> None:
        """Move the clock to ``when``; refuses to go backwards."""
        when = when.astimezone(UTC)
        current = self.now()
        if when < current:
            raise RuleViolation(
                f"the clock is at {current.isoformat()} and only moves forward",
                code="clock_cannot_go_backwards",
                field="now",
            )
        with self._store.unit_of_work() as uow:
            uow.conn.execute(
                tables.system_state.update()
                .where(tables.system_state.c.key == CLOCK_KEY)
                .values(value=when.isoformat())
            )
            uow.commit()
