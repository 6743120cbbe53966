"""Writers of one SQLite file take turns through its write lock (store/database.py).

Two :class:`Store` objects on one file stand for two processes: each has its own open lock
file, and ``flock`` excludes two open files exactly as it excludes two processes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from commcredits.store.database import Store, sqlite_file

WAIT = 30.0
"""Seconds a test waits for a thread before it reports a hang (never a speed assertion)."""


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    store = Store.from_url(url)
    with store.unit_of_work() as uow:
        uow.conn.execute(text("CREATE TABLE t (n INTEGER NOT NULL)"))
        uow.commit()
    store.dispose()
    return url


def _count(store: Store) -> int:
    with store.unit_of_work(read_only=True) as uow:
        return int(uow.conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_the_lock_file_lies_beside_a_database_file_and_nowhere_else(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'a.db'}")
    assert store.write_lock is not None
    assert store.write_lock.path == tmp_path / "a.db-writelock"
    store.dispose()
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u:p@localhost/db") is None
    assert Store(create_engine("sqlite://")).write_lock is None


def test_a_second_writer_waits_for_the_first_to_commit_and_then_sees_its_row(url: str) -> None:
    first, second = Store.from_url(url), Store.from_url(url)
    began = threading.Event()
    seen: list[int] = []

    def write_second() -> None:
        began.set()
        with second.unit_of_work() as uow:
            # Its transaction starts only after the first one committed: it sees that row.
            seen.append(int(uow.conn.execute(text("SELECT count(*) FROM t")).scalar_one()))
            uow.conn.execute(text("INSERT INTO t VALUES (2)"))
            uow.commit()

    with first.unit_of_work() as uow:
        uow.conn.execute(text("INSERT INTO t VALUES (1)"))
        thread = threading.Thread(target=write_second)
        thread.start()
        assert began.wait(WAIT)
        thread.join(0.2)  # give it every chance to get in early, which it must not
        assert thread.is_alive()
        assert seen == []
        uow.commit()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert seen == [1]
    assert _count(first) == 2
    first.dispose()
    second.dispose()


def test_readers_never_wait_for_the_write_turn(url: str) -> None:
    writer, reader = Store.from_url(url), Store.from_url(url)
    give_back = writer.write_turn()
    try:
        assert _count(reader) == 0  # would hang here if reads took the turn
    finally:
        give_back()
    writer.dispose()
    reader.dispose()


def test_a_thread_holding_the_turn_writes_within_it_and_others_wait_until_it_is_given_back(
    url: str,
) -> None:
    store, other = Store.from_url(url), Store.from_url(url)
    done = threading.Event()

    def write_other() -> None:
        with other.unit_of_work() as uow:
            uow.conn.execute(text("INSERT INTO t VALUES (9)"))
            uow.commit()
        done.set()

    give_back = store.write_turn()
    with store.unit_of_work() as uow:  # the same thread: runs within the turn it holds
        uow.conn.execute(text("INSERT INTO t VALUES (1)"))
        uow.commit()
    thread = threading.Thread(target=write_other)
    thread.start()
    assert not done.wait(0.2)  # the commit alone did not give the outer turn back
    give_back()
    give_back()  # giving it back twice is harmless
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert _count(store) == 2
    store.dispose()
    other.dispose()


def test_a_writer_that_dies_holding_the_lock_does_not_block_the_next(url: str) -> None:
    store = Store.from_url(url)
    assert store.write_lock is not None
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
            str(store.write_lock.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        written = threading.Event()

        def write() -> None:
            with store.unit_of_work() as uow:
                uow.conn.execute(text("INSERT INTO t VALUES (1)"))
                uow.commit()
            written.set()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        assert not written.wait(0.2)  # another process holds the lock
        holder.kill()  # dies without letting go: the kernel releases its lock
        holder.wait(WAIT)
        assert written.wait(WAIT)
        assert _count(store) == 1
    finally:
        holder.kill()
        holder.wait(WAIT)
        store.dispose()


def test_a_failed_transaction_gives_the_turn_back(url: str) -> None:
    store, other = Store.from_url(url), Store.from_url(url)

    def refused_half_way() -> None:
        with store.unit_of_work() as uow:
            uow.conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("refused half-way")

    with pytest.raises(RuntimeError):
        refused_half_way()
    done = threading.Event()

    def write_other() -> None:
        with other.unit_of_work() as uow:
            uow.conn.execute(text("INSERT INTO t VALUES (2)"))
            uow.commit()
        done.set()

    thread = threading.Thread(target=write_other, daemon=True)
    thread.start()
    assert done.wait(WAIT)
    assert _count(store) == 1  # the failed one left nothing behind
    store.dispose()
    other.dispose()
