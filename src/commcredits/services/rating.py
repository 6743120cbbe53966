"""Use cases of rating: loading rate tables and quoting prices (R-40..R-42).

A loaded table is kept verbatim (``rate_tables.source``) and becomes the active one in the same
transaction; calls already rated keep the rate they were rated with, so loading a new table
never changes them. The parsed active table is cached per process and re-read when another
table becomes active.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from sqlalchemy import Connection, insert, select, update

from commcredits.adapters.clock import Clock
from commcredits.domain.errors import NotFound
from commcredits.domain.ids import new_id
from commcredits.domain.rating import Charge, Destination, RateTable, parse_rate_table
from commcredits.store import tables
from commcredits.store.database import Store, retrying


@dataclass(frozen=True, slots=True)
class LoadedTable:
    id: str
    name: str
    rows: int
    loaded_at: datetime


def sample_rates() -> str:
    """The small sample table shipped with the package (sample prices, not a real tariff)."""
    return (resources.files("commcredits") / "data" / "sample_rates.csv").read_text("utf-8")


class Rating:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock
        self._cached: tuple[str, RateTable] | None = None
        self._lock = threading.Lock()

    @retrying()
    def load(self, text: str, name: str = "rates.csv") -> LoadedTable:
        """Check the whole table (every bad row reported), then make it the active one."""
        table = parse_rate_table(text)
        loaded = LoadedTable(new_id("rt"), name[:200], len(table), self.clock.now())
        with self.store.unit_of_work() as uow:
            uow.conn.execute(
                update(tables.rate_tables).where(tables.rate_tables.c.active).values(active=False)
            )
            uow.conn.execute(
                insert(tables.rate_tables).values(
                    id=loaded.id,
                    loaded_at=loaded.loaded_at,
                    name=loaded.name,
                    row_count=loaded.rows,
                    sha256=hashlib.sha256(text.encode()).hexdigest(),
                    source=text,
                    active=True,
                )
            )
            uow.commit()
        with self._lock:
            self._cached = (loaded.id, table)
        return loaded

    def active_id(self) -> str | None:
        with self.store.unit_of_work(read_only=True) as uow:
            found: str | None = uow.conn.execute(
                select(tables.rate_tables.c.id).where(tables.rate_tables.c.active)
            ).scalar_one_or_none()
        return found

    def table(self) -> tuple[str, RateTable]:
        """The active table (parsed once per process per table)."""
        with self.store.unit_of_work(read_only=True) as uow:
            return self.table_in(uow.conn)

    def table_in(self, conn: Connection) -> tuple[str, RateTable]:
        """The active table as ``conn``'s transaction sees it. A writer already inside a
        transaction reads through its own connection: asking the pool for a second one while
        holding the write lock can wait forever on connections that wait for that lock."""
        active: str | None = conn.execute(
            select(tables.rate_tables.c.id).where(tables.rate_tables.c.active)
        ).scalar_one_or_none()
        if active is None:
            raise NotFound("no rate table is loaded yet", code="no_rate_table")
        with self._lock:
            if self._cached is not None and self._cached[0] == active:
                return self._cached
        source = conn.execute(
            select(tables.rate_tables.c.source).where(tables.rate_tables.c.id == active)
        ).scalar_one()
        parsed = parse_rate_table(source)
        with self._lock:
            self._cached = (active, parsed)
        return active, parsed

    def ensure_loaded(self) -> LoadedTable | None:
        """Load the sample table when none was ever loaded (so a new install can rate)."""
        if self.active_id() is not None:
            return None
        return self.load(sample_rates(), "sample_rates.csv (sample prices)")

    def quote(
        self,
        to: str,
        service: str,
        quantity: int,
        at: datetime | None = None,
        currency: str | None = None,
    ) -> tuple[str, Destination, Charge]:
        table_id, table = self.table()
        destination, charge = table.quote(service, to, quantity, at or self.clock.now(), currency)
        return table_id, destination, charge
