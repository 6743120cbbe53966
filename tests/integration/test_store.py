"""The store: migrations on both databases, durability settings, UTC instants."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect, select, text

from commcredits.services import overage
from commcredits.store import migrate, tables
from commcredits.store.credits import CreditRepository
from commcredits.store.database import create_store_engine
from tests.support.postgres import PostgresAdmin


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all."""
    if request.param == "sqlite":
        engine = create_store_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    server: PostgresAdmin = request.getfixturevalue("postgres")
    name = f"empty_{uuid.uuid4().hex[:12]}"
    engine = create_store_engine(server.create_database(name))
    yield engine
    engine.dispose()
    server.drop_database(name)


def test_migrations_build_the_whole_schema_from_an_empty_database(empty_engine: Engine) -> None:
    assert inspect(empty_engine).get_table_names() == []
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert set(tables.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_the_migrated_schema_is_exactly_the_code_schema(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, tables.metadata)
    assert differences == []


def test_migrations_go_down_to_nothing_and_up_again(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_running_the_upgrade_again_changes_nothing(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_sqlite_runs_in_wal_mode_with_full_synchronous_writes(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'durable.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # 64 MB of pages per connection, not SQLite's 2 MB (store/database.py).
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -65_536
    engine.dispose()


def test_instants_are_stored_and_read_back_as_utc(database_url: str) -> None:
    engine = create_store_engine(database_url)
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=paris)
    with engine.begin() as connection:
        connection.execute(
            tables.outbox.insert().values(
                id="msg_1",
                org_id=None,
                kind="test",
                recipients=[],
                subject="s",
                body_text="b",
                created_at=moment,
                status="no_recipients",
                attempts=0,
            )
        )
    with engine.connect() as connection:
        stored = connection.execute(select(tables.outbox.c.created_at)).scalar_one()
    assert stored == moment
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored.astimezone(UTC).hour == 9
    engine.dispose()


def test_a_naive_datetime_never_reaches_the_database(database_url: str) -> None:
    engine = create_store_engine(database_url)
    with engine.connect() as connection:
        connection.execute(tables.system_state.insert().values(key="k", value="v"))
        naive_time = datetime(2026, 1, 1)  # naive on purpose
        naive = tables.job_leases.insert().values(name="j", lease_until=naive_time)
        with pytest.raises(Exception, match="naive"):
            connection.execute(naive)
        connection.rollback()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM system_state")).scalar() == 0
    engine.dispose()


def _plans(tmp_path: Path, reads: Callable[[Connection], object], parameter: object) -> list[str]:
    """SQLite's query plan of each SELECT that ``reads`` runs on a migrated database, every
    placeholder bound to ``parameter``."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate.upgrade(engine)
    statements: list[str] = []

    def plan(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", plan)
    with engine.connect() as conn:
        reads(conn)
    event.remove(engine, "before_cursor_execute", plan)
    used = []
    with engine.connect() as conn:
        for statement in statements:
            count = statement.count("?")
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", (parameter,) * count)
            used.append(" ".join(str(row[-1]) for row in rows))
    engine.dispose()
    return used


def test_the_job_scheduler_reads_live_rows_only_never_the_history(tmp_path: Path) -> None:
    """The job runner asks for the next lot expiry, the next expiry warning and the oldest
    unbilled overage on every pass; each must be answered from a partial index of the live
    rows, not by walking years of spent lots and billed calls (SQLite's plan, which never
    falls back to a scan silently)."""

    def reads(conn: Connection) -> None:
        repo = CreditRepository(conn)
        repo.next_expiry()
        repo.next_warning_at(30)
        conn.execute(select(text("1")).select_from(tables.calls).where(overage._unbilled_calls()))
        conn.execute(
            select(text("1")).select_from(tables.sms_messages).where(overage._unbilled_sms())
        )

    used = _plans(tmp_path, reads, 30)
    assert len(used) == 4
    assert "ix_lots_live_expires_at" in used[0]
    assert "ix_lots_live_expires_at" in used[1]
    assert "ix_calls_overage_unbilled_start_time" in used[2]
    assert "ix_sms_messages_overage_unbilled_sent_at" in used[3]


def test_an_account_reads_its_live_lots_in_spending_order_never_its_spent_ones(
    tmp_path: Path,
) -> None:
    """Every money movement reads the lots it may spend from, oldest first (R-22). An account
    recharged every day for years holds thousands of spent lots: the read must come from the
    partial index of live lots, already in spending order (SQLite's plan: no scan of the
    organization's lots, no sort)."""
    (used,) = _plans(
        tmp_path, lambda conn: CreditRepository(conn).lots_with_money("org_x"), "org_x"
    )
    assert "ix_lots_live_org_id_purchased_at" in used
    assert "TEMP B-TREE" not in used
