"""Engines, transactions and the unit of work, for SQLite and PostgreSQL alike.

SQLite runs in WAL mode with ``synchronous=FULL``: an acknowledged commit survives power loss.
Write transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock
upgrade; they queue on the busy timeout instead. Read-only units of work use a plain ``BEGIN``
and never block writers.

On PostgreSQL the default READ COMMITTED isolation is used with explicit row locks
(:meth:`UnitOfWork.lock_org`), which is what serializes money movements per organization.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.base import Executable

from commcredits.store import tables

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_store_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine configured for durability: WAL + synchronous=FULL on SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class TransientConflict(Exception):
    """A conflict with a concurrent transaction that running the unit of work again resolves."""


def is_retryable(exc: BaseException) -> bool:
    """True for the transient conflicts a transaction may simply run again after."""
    if isinstance(exc, TransientConflict):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in {"40001", "40P01"}:  # serialization failure, deadlock detected
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def retrying(attempts: int = 5) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Run a whole unit of work again when the database reports a transient conflict."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except (DBAPIError, TransientConflict) as exc:
                    if attempt == attempts or not is_retryable(exc):
                        raise
                    log.info("retrying %s after a transient conflict: %s", fn.__name__, exc)
            raise AssertionError("unreachable")

        return wrapper

    return decorate


class UnitOfWork:
    """One database transaction. Nothing is kept unless :meth:`commit` is called."""

    def __init__(self, connection: Connection, dialect: str):
        self.conn = connection
        self.dialect = dialect
        self._committed = False

    def commit(self) -> None:
        self.conn.commit()
        self._committed = True

    def rollback(self) -> None:
        self.conn.rollback()

    def lock_org(self, org_id: str) -> bool:
        """Serialize money movements of one organization until the transaction ends.

        On PostgreSQL this locks the organization's row; on SQLite the whole write transaction
        is already exclusive (BEGIN IMMEDIATE). Returns False when the organization is unknown.
        """
        query = _LOCK_ORG_ROW if self.dialect == "postgresql" else _ORG_EXISTS
        return self.conn.execute(query, {"k_org": org_id}).first() is not None


# Built once: every batch of call control takes the lock, and building a statement costs
# more than running it.
_ORG_EXISTS = select(tables.organizations.c.id).where(
    tables.organizations.c.id == bindparam("k_org")
)
_LOCK_ORG_ROW = _ORG_EXISTS.with_for_update()


class DriverStatement:
    """A Core statement compiled once per dialect and run as the driver's own ``executemany``.

    For the many-row writes of a batch (ledger entries, calls): SQLAlchemy's per-row parameter
    processing costs more than the database's work on a narrow row. Rows are given as dicts of
    the statement's parameter names; the columns named in ``times`` hold UTC instants, which
    are converted exactly as :class:`~commcredits.store.types.UTCDateTime` and SQLite's
    DATETIME would (naive UTC text on SQLite, aware datetimes on PostgreSQL). Every other value
    must already be what the column stores (integer micro-units, text, booleans).
    """

    def __init__(self, statement: Executable, *, times: frozenset[str] = frozenset()):
        self.statement = statement
        self.times = times
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            positional = dialect.paramstyle in ("qmark", "format", "numeric")
            order = tuple(compiled.positiontup) if positional else None
            found = self._compiled[dialect.name] = (str(compiled), order)
        return found

    def execute_many(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Run the statement once per row; returns the rows matched (as the driver counts)."""
        if not rows:
            return 0
        sql, order = self._sql(conn.dialect)
        if self.times:
            sqlite = conn.dialect.name == "sqlite"
            for row in rows:
                for name in self.times:
                    row[name] = driver_time(row[name], sqlite=sqlite)
        params: list[Any] = rows
        if order is not None:
            # itemgetter answers a bare value, not a 1-tuple, for a single name.
            values = itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)
            params = list(map(values, rows))
        return int(conn.exec_driver_sql(sql, params).rowcount)


def driver_time(value: datetime | None, *, sqlite: bool) -> datetime | str | None:
    """A UTC instant as the driver takes it for a ``UTCDateTime`` column."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
    return _sqlite_text(value) if sqlite else value.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _sqlite_text(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DATETIME writes: microseconds always six digits. Remembered,
    # because the rows of one batch share a handful of instants (its moment, its expiries).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class Store:
    """The database: an engine and the way to open units of work on it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(create_store_engine(url))

    @contextmanager
    def unit_of_work(self, *, read_only: bool = False) -> Iterator[UnitOfWork]:
        with self.engine.connect() as connection:
            if read_only:
                connection = connection.execution_options(read_only=True)
            connection.begin()
            uow = UnitOfWork(connection, self.dialect)
            try:
                yield uow
            finally:
                if connection.in_transaction():
                    connection.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
