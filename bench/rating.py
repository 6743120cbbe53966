"""Rating, the hot path: a batch of calls priced against a large prefix table.

Figures:

* calls/s through ``CompiledRates.rate`` (1,000,000 calls, 50,000-row table; compile time is
  reported on its own), against the target of 1,000,000 calls/s;
* the same figure beside a lower bound measured in the same run over the same numbers: bare
  numpy, written here, that turns the numbers into integers, finds each one's longest prefix
  with one ``np.searchsorted`` over the flattened prefix spans and computes billed seconds. It
  skips what the service must do (shape checks, fallbacks, charges, overflow guards), so the
  service cannot beat it by much; the target is at least 0.25x of it;
* loading a 100,000-row table: ``parse_rate_table`` alone, and ``Rating.load`` on SQLite.

A random sample of 1,000 calls is re-rated through the exact Decimal path (``RateTable.match``
and ``price``); any difference stops the benchmark.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import phonenumbers

from bench.report import Figure
from commcredits.app import build
from commcredits.domain.rating import COLUMNS, Destination, RateTable, parse_rate_table, price
from commcredits.domain.rating_batch import CompiledRates
from commcredits.settings import Settings

SEED = 20260115
DAY = date(2026, 1, 15)
AT = datetime(2026, 1, 15, 12, tzinfo=UTC)
INCREMENTS = [(60, 60)] * 5 + [(60, 1)] * 2 + [(1, 1)] * 2 + [(30, 6), (30, 30)]
REPEATS = 3
SAMPLE = 1_000


def _prefixes(rng: random.Random, count: int) -> list[str]:
    """Prefixes of 1 to 8 digits under the country codes, mostly 4 to 7 digits long."""
    codes = sorted(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    # A few countries have no row at all, so some calls find no rate.
    covered = [code for code in codes if rng.random() > 0.03]
    found = set(covered)
    while len(found) < count:
        code = rng.choice(covered)
        length = min(8, max(len(code) + 1, round(rng.gauss(6, 1.2))))
        found.add(code + "".join(rng.choices("0123456789", k=length - len(code))))
    return sorted(found)


def _table_csv(rng: random.Random, rows: int) -> str:
    """A prefix table of ``rows`` rows; one prefix in ten has an old row and a new one."""
    out = io.StringIO()
    out.write(",".join(COLUMNS) + "\n")
    prefixes = _prefixes(rng, rows * 10 // 11)
    doubled = set(rng.sample(range(len(prefixes)), rows - len(prefixes)))
    for index, prefix in enumerate(prefixes):
        first, step = rng.choice(INCREMENTS)
        rate = Decimal(rng.randrange(10, 20_000)).scaleb(-4 - rng.choice([0, 0, 0, 1, 2]))
        fee = Decimal(rng.choice([0, 0, 0, 0, 1, 5, 10, 25])).scaleb(-2)
        terms = f"{fee},{first},{step},USD"
        if index in doubled:
            out.write(f"outbound,{prefix},,,{rate * 2},{terms},2020-01-01,2025-12-31,old\n")
            out.write(f"outbound,{prefix},,,{rate},{terms},2026-01-01,,new\n")
        else:
            out.write(f"outbound,{prefix},,,{rate},{terms},2020-01-01,,\n")
    return out.getvalue()


def _calls(
    rng: random.Random, table: RateTable, count: int
) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Numbers of 10 to 13 digits under the table's prefixes (2% under other country codes),
    and durations: mostly a few minutes, some unanswered (zero seconds)."""
    prefixes = sorted({row.prefix for row in table.rows})
    # Country codes are prefix-free: a code without its own row has no rows under it either.
    unrated = sorted(set(map(str, phonenumbers.COUNTRY_CODE_TO_REGION_CODE)) - set(prefixes))
    numbers = []
    for _ in range(count):
        prefix = rng.choice(unrated) if rng.random() < 0.02 else rng.choice(prefixes)
        length = max(len(prefix) + 1, rng.randint(10, 13))
        numbers.append("+" + prefix + "".join(rng.choices("0123456789", k=length - len(prefix))))
    generator = np.random.default_rng(SEED)
    durations = generator.exponential(180, count).astype(np.int64)
    durations[generator.random(count) < 0.05] = 0
    return numbers, durations


def _lower_bound(
    table: RateTable, numbers: list[str], durations: npt.NDArray[np.int64]
) -> tuple[float, npt.NDArray[np.int64]]:
    """Bare numpy: numbers to integers, one searchsorted over flattened prefix spans, billed
    seconds. Returns the best time of a few runs and the billed seconds."""
    rows = [row for row in table.rows if row.in_force(AT)]
    lengths = np.array([len(r.prefix) for r in rows], dtype=np.int64)
    values = np.array([int(r.prefix) for r in rows], dtype=np.int64)
    span = 10 ** (15 - lengths)
    starts, ends = values * span, (values + 1) * span
    # Segment starts; each labelled with the longest prefix covering it (longer ones overwrite).
    points = np.unique(np.concatenate([[0], starts, ends]))
    labels = np.full(points.size, -1, dtype=np.int64)
    for length in sorted(set(lengths.tolist())):
        of_length = np.flatnonzero(lengths == length)
        order = of_length[np.argsort(values[of_length])]
        keys = points // 10 ** (15 - length)
        at = np.minimum(np.searchsorted(values[order], keys), order.size - 1)
        hit = values[order][at] == keys
        labels[hit] = order[at[hit]]
    first = np.array([r.first_increment for r in rows] + [0], dtype=np.int64)
    step = np.array([r.increment for r in rows] + [1], dtype=np.int64)
    pow10 = 10 ** np.arange(14, -1, -1, dtype=np.int64)
    best = float("inf")
    billed = np.zeros(0, dtype=np.int64)
    for _ in range(REPEATS):
        began = time.perf_counter()
        raw = np.array(numbers, dtype="S16").view(np.uint8).reshape(len(numbers), 16)[:, 1:]
        padded = np.where(raw > 0, raw - 48, 0).astype(np.int64) @ pow10
        row = labels[np.searchsorted(points, padded, side="right") - 1]
        f, s = first[row], step[row]
        billed = np.where(durations > 0, f + -(-np.maximum(durations - f, 0) // s) * s, 0)
        billed[row < 0] = 0
        best = min(best, time.perf_counter() - began)
    return best, billed


def _check_exact(
    rng: random.Random,
    compiled: CompiledRates,
    numbers: list[str],
    durations: npt.NDArray[np.int64],
    result: Any,
) -> None:
    """Re-rate a random sample through the Decimal path; raise on the first differences."""
    differences = []
    for position in rng.sample(range(len(numbers)), min(SAMPLE, len(numbers))):
        number = numbers[position]
        # The table has prefix rows only, so country and type play no part.
        destination = Destination(e164=number, country="ZZ", types=())
        rate = compiled.table.match("outbound", destination, AT, "USD")
        got_row = int(result.row[position])
        if rate is None:
            expected: tuple[object, ...] = (None, 0, Decimal(0))
        else:
            charge = price(rate, int(durations[position]))
            expected = (rate.line, charge.units, charge.charge)
        got = (
            compiled.rows[got_row].line if got_row >= 0 else None,
            int(result.units[position]),
            result.amount(position),
        )
        if got != expected:
            differences.append(f"{number} {durations[position]}s: batch {got}, exact {expected}")
    if differences:
        raise AssertionError(
            f"{len(differences)} of {SAMPLE} sampled calls differ from the exact path:\n"
            + "\n".join(differences[:20])
        )


def _load_times(rng: random.Random, say: Callable[..., Any]) -> tuple[float, float]:
    text = _table_csv(rng, 100_000)
    began = time.perf_counter()
    parse_rate_table(text)
    parsed = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        container = build(
            Settings(
                database_url=f"sqlite:///{folder / 'bench.db'}",
                sandbox_journal=None,
                mail_spool_dir=folder / "mail",
            )
        )
        began = time.perf_counter()
        container.rating.load(text, "bench.csv")
        loaded = time.perf_counter() - began
        container.close()
    say(f"  100,000 rows: parse {parsed:.2f} s, Rating.load on SQLite {loaded:.2f} s")
    return parsed, loaded


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    rng = random.Random(SEED)
    count = 100_000 if quick else 1_000_000
    say("  building a 50,000-row table")
    table = parse_rate_table(_table_csv(rng, 50_000))
    say(f"  generating {count:,} calls")
    numbers, durations = _calls(rng, table, count)

    began = time.perf_counter()
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    compile_seconds = time.perf_counter() - began
    best = float("inf")
    result = None
    for _ in range(REPEATS):
        began = time.perf_counter()
        result = compiled.rate(numbers, durations)
        best = min(best, time.perf_counter() - began)
    assert result is not None
    service = count / best
    lower, billed = _lower_bound(table, numbers, durations)
    bound = count / lower
    if not np.array_equal(billed, result.units):
        raise AssertionError("the lower bound and the service disagree on billed seconds")
    _check_exact(rng, compiled, numbers, durations, result)
    rated = int(np.count_nonzero(result.row >= 0))
    say(
        f"  compile {compile_seconds:.2f} s ({len(compiled.rows):,} rows in force);"
        f" rate {best:.3f} s, lower bound {lower:.3f} s; {rated:,} rated,"
        f" {result.exact_calls:,} through the exact path; {SAMPLE} sampled calls match exactly"
    )
    parsed, loaded = _load_times(rng, say)
    return [
        Figure(
            figure=f"rating, {count:,} calls",
            value=service,
            unit="calls/s",
            baseline=None,
            target=">= 1,000,000 calls/s",
            met=service >= 1_000_000,
        ),
        Figure(
            figure="rating vs lower bound",
            value=service,
            unit="calls/s",
            baseline=bound,
            target=">= 0.25x lower bound",
            met=service / bound >= 0.25,
        ),
        Figure(
            figure="rating: compile 50k rows",
            value=compile_seconds * 1000,
            unit="ms",
            baseline=None,
            target="reported only",
            met=None,
        ),
        Figure(
            figure="parse 100k rate rows",
            value=parsed * 1000,
            unit="ms",
            baseline=None,
            target="< 3 s",
            met=parsed < 3,
        ),
        Figure(
            figure="load 100k rate rows (SQLite)",
            value=loaded * 1000,
            unit="ms",
            baseline=None,
            target="< 3 s",
            met=loaded < 3,
        ),
    ]
