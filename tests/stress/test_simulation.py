"""The seeded simulation (tests/stress/simulation.py): thousands of random operations on the real
engine, every money invariant checked after every commit.

``STRESS_SIM_OPS`` sets the length (20,000 by default, a few minutes; ``make stress`` runs
1,000,000), ``STRESS_SIM_SEED`` the seed (default: a fixed one, so the suite is repeatable; a
failure prints its seed and operation index and the command that replays it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from commcredits.adapters.payments import SandboxGateway
from commcredits.app import Container, build
from tests.conftest import TEMPLATE, CollectingTransport, make_settings
from tests.stress.simulation import Outcome, Simulation, SimulationFailure
from tests.support.postgres import PostgresAdmin

DEFAULT_SEED = 20261127
OPS = int(os.environ.get("STRESS_SIM_OPS", "20000"))
SEED = int(os.environ.get("STRESS_SIM_SEED", str(DEFAULT_SEED)))


def _scratch() -> Path:
    """A folder in memory when the machine has one: the simulation checks logic, not disks
    (durability is the crash test's subject), and it runs many thousand commits."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="commcredits-sim-", dir=shm if shm.is_dir() else None))


class Engine:
    """A fresh container on SQLite or PostgreSQL, with the sandbox gateway the simulation
    wraps, removed again afterwards."""

    def __init__(self, sqlite_template: Path, postgres: PostgresAdmin | None = None) -> None:
        self.folder = _scratch()
        self.postgres = postgres
        self.pg_name: str | None = None
        if postgres is None:
            shutil.copyfile(sqlite_template, self.folder / "commcredits.db")
            url = f"sqlite:///{self.folder / 'commcredits.db'}"
        else:
            self.pg_name = f"sim_{uuid.uuid4().hex[:16]}"
            url = postgres.create_database(self.pg_name, template=TEMPLATE)
        self.sandbox = SandboxGateway()
        self.container: Container = build(
            make_settings(url, self.folder, call_slice_seconds=120),
            transport=CollectingTransport(),
            gateway=self.sandbox,
        )

    def simulate(self, seed: int, ops: int, **options: object) -> Outcome:
        simulation = Simulation(self.container, self.sandbox, seed, **options)  # type: ignore[arg-type]
        simulation.setup()
        return simulation.run(ops)

    def close(self) -> None:
        self.container.close()
        if self.postgres is not None and self.pg_name is not None:
            self.postgres.drop_database(self.pg_name)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def engine(sqlite_template: Path) -> Iterator[Engine]:
    built = Engine(sqlite_template)
    yield built
    built.close()


@pytest.mark.timeout(600 if OPS <= 20_000 else 0)
def test_the_seeded_simulation_keeps_every_money_invariant_after_every_commit(
    engine: Engine,
) -> None:
    """R-21..R-28, R-33, R-41: no money invented or lost, nothing charged twice, no overdraft,
    reservations released, whatever the mix and the order of operations."""
    began = time.monotonic()

    every = 10_000 if OPS >= 200_000 else 1_000

    def progress(done: int, now: datetime) -> None:
        if done % every == 0:
            elapsed = time.monotonic() - began
            print(
                f"  {done:,} operations clean, {elapsed:,.0f} s, clock at {now:%Y-%m-%d}",
                flush=True,
            )

    # The whole-table pass reads every row: in a long run, less often.
    deep_every = 500 if OPS <= 20_000 else 10_000
    outcome = engine.simulate(SEED, OPS, progress=progress, deep_every=deep_every)
    print(f"\nsimulation seed {SEED}: {outcome.ops} operations, digest {outcome.digest[:16]}")
    print(f"  operations: {outcome.counts}")
    print(f"  balances: { {k[-6:]: str(v) for k, v in outcome.balances.items()} }")
    # The mix really exercised what it claims to (a silent no-op run proves nothing).
    assert outcome.counts.get("call", 0) > OPS // 10
    assert outcome.counts.get("cdrs", 0) > OPS // 30


def test_a_seed_replays_exactly(sqlite_template: Path) -> None:
    """The same seed gives the same operations and the same outcomes, so a failure found once
    can be replayed and debugged."""
    outcomes = []
    for _ in range(2):
        engine = Engine(sqlite_template)
        try:
            outcomes.append(engine.simulate(4242, 600, deep_every=200))
        finally:
            engine.close()
    assert outcomes[0].digest == outcomes[1].digest
    assert outcomes[0].counts == outcomes[1].counts
    assert list(outcomes[0].balances.values()) == list(outcomes[1].balances.values())


def test_another_seed_takes_another_path(sqlite_template: Path) -> None:
    outcomes = []
    for seed in (1, 2):
        engine = Engine(sqlite_template)
        try:
            outcomes.append(engine.simulate(seed, 200, deep_every=200))
        finally:
            engine.close()
    assert outcomes[0].digest != outcomes[1].digest


def test_a_broken_invariant_names_the_seed_the_operation_and_the_replay(engine: Engine) -> None:
    simulation = Simulation(engine.container, engine.sandbox, 77)
    simulation.setup()
    simulation.run(50)
    # Money that appears from nowhere: a lot with no ledger entry behind it.
    with engine.container.store.unit_of_work() as uow:
        uow.conn.exec_driver_sql(
            "UPDATE lots SET remaining_micros = remaining_micros + 1"
            " WHERE remaining_micros < amount_micros"
        )
        uow.conn.exec_driver_sql("UPDATE credit_accounts SET balance_micros = balance_micros + 1")
        uow.commit()
    with pytest.raises(SimulationFailure) as failure:
        simulation.run(5)
    message = str(failure.value)
    assert "seed 77" in message
    assert "STRESS_SIM_SEED=77" in message
    assert "entries sum to" in message


@pytest.mark.postgres
def test_the_simulation_holds_on_postgresql(sqlite_template: Path, postgres: PostgresAdmin) -> None:
    ops = int(os.environ.get("STRESS_SIM_PG_OPS", "1500"))
    engine = Engine(sqlite_template, postgres)
    try:
        outcome = engine.simulate(SEED + 1, ops)
    finally:
        engine.close()
    assert outcome.counts.get("call", 0) > ops // 10
