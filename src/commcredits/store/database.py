"""Engines, transactions and the unit of work, for SQLite and PostgreSQL alike.

SQLite runs in WAL mode with ``synchronous=FULL``: an acknowledged commit survives power loss.
Write transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock
upgrade. Before that, a write unit of work on a database file takes the file's
:class:`WriteLock`, so writers (threads of one process, and other processes such as the
workers of ``serve --workers``) queue in the kernel and the next one starts the moment the
previous one commits, instead of SQLite's busy handler putting it to sleep for growing
intervals. Read-only units of work use a plain ``BEGIN``, take no lock and never block writers.

On PostgreSQL the default READ COMMITTED isolation is used with explicit row locks
(:meth:`UnitOfWork.lock_org`), which is what serializes money movements per organization.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
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
SQLITE_CACHE_KIB = 65_536
"""Pages each SQLite connection may keep in memory (64 MB; SQLite's default is 2 MB): a
million-call batch or export walks indexes far larger than 2 MB, and every page missed is
read again from the file, or spilled to the WAL mid-transaction. Memory is taken only as
pages are read."""


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
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
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


class WriteLock:
    """Writers of one SQLite file take turns: an in-process lock, then ``flock`` on a file
    beside the database (``<database>-writelock``), held from before the write transaction
    begins until it commits or rolls back.

    It only decides who goes next, never whether data is safe: SQLite's own locking still
    guards every transaction, so a writer that does not take this lock (another program, a
    statement run after a commit on the same connection) is merely slower, never wrong. What
    it changes is the wait: a writer blocked in ``flock`` is woken by the kernel when the holder
    releases it, where SQLite's busy handler sleeps 1, 2, 5, ... 100 ms between attempts, so
    two processes committing in turn lose most of their time asleep.

    ``flock`` belongs to the open file, and the kernel drops it when its process dies, so a
    crashed writer never leaves it held. A thread that already holds the turn (a write unit of
    work opened inside another) just counts it; its inner transaction meets SQLite's
    busy timeout exactly as it would without the lock. Waiting for the in-process lock is
    bounded by the same timeout, after which the writer goes on without it.
    """

    def __init__(self, path: Path, *, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000):
        self.path = path
        self.timeout = timeout
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        # A forked child gets a lock and a file of its own: an inherited open file would share
        # its flock with the parent, and an inherited lock may be held by a thread that is gone.
        self._threads = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._fd: int | None = None
        self._pid = os.getpid()

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def acquire(self) -> bool:
        """Wait for the turn to write. False when the wait in this process timed out: the
        caller goes on without the turn and must not release it."""
        if self._pid != os.getpid():
            self._reset()
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return True
        if not self._threads.acquire(timeout=self.timeout):
            log.warning(
                "no write turn on %s after %.0f s: going on without", self.path, self.timeout
            )
            return False
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._owner = me
        self._depth = 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._owner = None
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class _Turn:
    """A taken write turn, given back once however many times it is released."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None] | None):
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class UnitOfWork:
    """One database transaction. Nothing is kept unless :meth:`commit` is called."""

    def __init__(
        self, connection: Connection, dialect: str, after_commit: Callable[[], None] | None = None
    ):
        self.conn = connection
        self.dialect = dialect
        self._committed = False
        self._after_commit = after_commit

    def commit(self) -> None:
        self.conn.commit()
        self._committed = True
        if self._after_commit is not None:
            self._after_commit()  # the next writer may start while this one tidies up

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
        path = sqlite_file(engine.url.render_as_string(hide_password=False))
        self.write_lock = WriteLock(path.with_name(path.name + "-writelock")) if path else None

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(create_store_engine(url))

    def write_turn(self) -> Callable[[], None]:
        """Wait for this thread's turn to write (see :class:`WriteLock`) and return what gives
        it back (idempotent). Write units of work the thread opens meanwhile run within it."""
        lock = self.write_lock
        return _Turn(lock.release if lock is not None and lock.acquire() else None).release

    @contextmanager
    def unit_of_work(self, *, read_only: bool = False) -> Iterator[UnitOfWork]:
        lock = None if read_only else self.write_lock
        # The turn is taken before a pooled connection, so writers waiting for it hold none.
        turn = _Turn(lock.release if lock is not None and lock.acquire() else None)
        try:
            with self.engine.connect() as connection:
                if read_only:
                    connection = connection.execution_options(read_only=True)
                connection.begin()
                uow = UnitOfWork(connection, self.dialect, turn.release)
                try:
                    yield uow
                finally:
                    if connection.in_transaction():
                        connection.rollback()
        finally:
            turn.release()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_lock is not None:
            self.write_lock.close()
