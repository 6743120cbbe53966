"""Baselines written through the bare driver, with none of the store's code in the way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from commcredits.store.database import create_store_engine


@contextmanager
def bare_connection(database: Path) -> Iterator[Any]:
    """A DB-API cursor on the SQLite file ``database``, opened by the store's own engine so
    that it has the store's settings (WAL, synchronous=FULL, cache size), with transactions
    left to the caller (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
    engine = create_store_engine(f"sqlite:///{database}")
    connection = engine.raw_connection()
    try:
        yield connection.cursor()
    finally:
        connection.close()
        engine.dispose()
