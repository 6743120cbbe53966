"""Report exports on the embedded default (SQLite): a million calls in constant memory.

Figures:

* CSV export rows/s of the PSTN usage report (R-50) over 1,000,000 ended calls (100,000 with
  ``--quick``), through ``Reports.export``: the query (which reads the line each call was
  stored with when it ended, masked by two substr() calls, the organization being German),
  and the batch check. Target:
  200,000 rows/s. Baseline: the bare driver (``sqlite3``) fetching the report's stored
  columns and ``csv.writerows`` writing them raw, no SQLAlchemy and no formatting at all: what
  exporting the rows one Python value per cell costs on this machine before any shaping;
* Excel export rows/s (200,000 rows, 20,000 with ``--quick``), through ``Reports.export``
  (rows shaped in Python, sheet XML written by ``services/xlsx_stream.py``). Target: 10,000
  rows/s. Baseline: xlsxwriter in constant-memory mode writing the same number of prepared
  rows (times and money already numbers), the faster of ``write_row`` and typed writes: the
  plainest path through an established writer on this machine, and what the export was
  bound by before it wrote its own sheet XML;
* peak memory of the CSV and Excel exports: the growth of the process's resident memory
  (Linux's high-water mark, reset before each export) during the timed exports themselves,
  at a tenth of the rows and at all of them: Python objects, buffers and SQLite's page cache
  all count. Target: under 200 MB, and flat (the full export needs no more than twice the
  tenth's peak plus 16 MB).

Calls are stored straight through ``CallRepository.add_many`` (each with the report line the
store writes when a call ends), not charged through the service: the figures are about reading
them out.
"""

from __future__ import annotations

import atexit
import csv
import ctypes
import gc
import io
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.report import Figure
from commcredits.app import build
from commcredits.domain.money import from_micros
from commcredits.domain.usage import CallRecord
from commcredits.services.orgs import NewOrganization
from commcredits.services.reports import PSTN, Reports
from commcredits.settings import Settings
from commcredits.store.tables import calls
from commcredits.store.usage import CallRepository

SEED = 20260115
NOW = "2026-06-15T12:00:00+00:00"
BATCH = 20_000
MB = 1024 * 1024

_TYPES = ["user_out"] * 6 + ["user_in"] * 2 + ["conf_out", "user_out_forwarding"]
_CAPS = (
    [("pool", "MCOPSTN1", 0)] * 5 + [("credits", "MCOPSTNPP", 1)] * 4 + [("free", "FREECALL", 0)]
)
_DESTINATIONS = [("DE", "+4930", "fixed"), ("FR", "+3314", "fixed"), ("US", "+1212", "mobile")]


def _calls(org_id: str, count: int, start: datetime, span: timedelta) -> Iterator[CallRecord]:
    rng = random.Random(SEED)
    step = span / count
    # Drawn in bulk, and positional records: building a million calls is not what is measured.
    types = rng.choices(_TYPES, k=count)
    paying = rng.choices(_CAPS, k=count)
    places = rng.choices(_DESTINATIONS, k=count)
    draw = rng.random
    zero = from_micros(0)
    for n in range(count):
        call_type = types[n]
        funding, capability, paid = paying[n]
        country, prefix, number_type = places[n]
        duration = 5 + int(draw() * 1796)
        begin = start + step * n
        other = f"{prefix}{1_000_000 + int(draw() * 9_000_000)}"
        user = n % 500
        mine = f"+4930123456{user:03d}"
        inbound = call_type.endswith("_in")
        charge = paid * int(draw() * 501) * 10_000
        yield CallRecord(
            org_id,
            f"call-{n:08d}",
            call_type,
            f"user-{user:04d}",
            f"user{user}@contoso.com",
            f"User {user}",
            "DE",
            other if inbound else mine,
            mine if inbound else other,
            f"conf-{n % 97}" if call_type.startswith("conf") else None,
            "ended",
            "allow",
            None,
            funding,
            capability,
            country,
            number_type,
            country == "DE",
            None,
            0 if paid else -(-duration // 60),
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            "EUR",
            from_micros(charge) if charge else zero,
            from_micros(15_000) if charge else zero,
            zero,
            0,
            duration,
            begin,
            begin + timedelta(seconds=duration),
            duration,
            None,
            "cdr",
        )


def _fill(container: Any, org_id: str, count: int, say: Callable[..., Any]) -> None:
    """Store ``count`` ended calls as the store writes them (``CallRepository.add_many``,
    each with its report line), in one transaction."""
    start = datetime.fromisoformat(NOW) - timedelta(days=27)
    batch: list[CallRecord] = []
    with container.store.unit_of_work() as uow:
        repository = CallRepository(uow.conn)
        for record in _calls(org_id, count, start, timedelta(days=27)):
            batch.append(record)
            if len(batch) == BATCH:
                repository.add_many(batch)
                batch.clear()
        repository.add_many(batch)
        uow.commit()
    say(f"  {count:,} calls stored")


_DATABASES: dict[int, tuple[Path, str]] = {}


def calls_database(count: int, say: Callable[..., Any]) -> tuple[Path, str]:
    """A SQLite file holding one German organization (EUR) and ``count`` ended calls of the
    last 27 days (:func:`_fill`), and the organization's id: built once per process and kept
    until it exits. The reports suite reads it; the console suite works on a copy. Building
    a million calls takes a minute here, and is not what either suite measures."""
    found = _DATABASES.get(count)
    if found is not None and found[0].exists():
        say(f"  {count:,} calls: the database built earlier in this run")
        return found
    folder = Path(tempfile.mkdtemp(prefix="commcredits-bench-calls-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "calls.db"
    container = build(settings(path))
    try:
        org = container.orgs.create(NewOrganization("Bench", "DE", "EUR", "prepaid"))
        _fill(container, org.id, count, say)
    finally:
        container.close()
    _DATABASES[count] = (path, org.id)
    return path, org.id


def settings(path: Path) -> Settings:
    """The benchmark's settings for a database file (mail spooled beside it)."""
    return Settings(
        database_url=f"sqlite:///{path}",
        clock="simulated",
        clock_start=NOW,
        sandbox_journal=None,
        mail_spool_dir=path.parent / "mail",
    )


def _drain(chunks: Iterator[bytes]) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
    return size


def _resident_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def _timed_export(reports: Reports, request: Any, fmt: str) -> tuple[float, int, float]:
    """Seconds, bytes written, and the peak growth of the process's resident memory (MB)
    while exporting: Linux's high-water mark (VmHWM), reset first through
    /proc/self/clear_refs, above the resident size when the export started (after handing
    freed memory back to the system). Everything the export holds counts: Python objects,
    buffers, SQLite's page cache."""
    # Memory freed earlier (building the database) but still resident would hide what the
    # export takes: give it back to the system first.
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the high-water mark starts again from the resident size now
    before = _resident_kb("VmRSS")
    began = time.perf_counter()
    size = _drain(reports.export(request, fmt).chunks)
    seconds = time.perf_counter() - began
    return seconds, size, (_resident_kb("VmHWM") - before) / 1024


def _bare_fetch_and_write(reports: Reports, request: Any) -> float:
    """The report's stored columns fetched by the bare driver (no SQLAlchemy, no formatting)
    and written by ``csv.writerows`` as they come: a cell-by-cell export before any shaping."""
    from commcredits.services.reports import _pstn_query

    query = _pstn_query(request, None)
    sql = str(query.compile(reports.store.engine, compile_kwargs={"literal_binds": True}))
    raw = reports.store.engine.raw_connection()
    began = time.perf_counter()
    count = 0
    try:
        cursor = raw.cursor()
        cursor.execute(sql)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        while rows := cursor.fetchmany(reports.fetch_rows):
            writer.writerows(rows)
            buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            count += len(rows)
        cursor.close()
    finally:
        raw.close()
    return count / (time.perf_counter() - began)


def _bare_xlsxwriter(rows: list[tuple[Any, ...]], count: int, folder: Path) -> float:
    """xlsxwriter's own best here: constant-memory mode writing prepared rows (times and money
    already numbers), the faster of ``write_row`` and typed ``write_string``/``write_number``
    calls. No export through it could be faster than this."""
    import xlsxwriter

    from commcredits.services.reports import _excel_time

    def number(value: Any, kind: str) -> Any:
        if value is None or kind in ("text", "int"):
            return value
        return _excel_time(value) if kind == "time" else float(value)

    prepared = [
        tuple(number(v, kind) for v, kind in zip(row, PSTN.kinds, strict=True)) for row in rows
    ]
    numeric = {n for n, kind in enumerate(PSTN.kinds) if kind != "text"}

    def by_row(sheet: Any, n: int, row: tuple[Any, ...]) -> None:
        sheet.write_row(n, 0, row)

    def typed(sheet: Any, n: int, row: tuple[Any, ...]) -> None:
        for column, value in enumerate(row):
            if value is None or value == "":
                continue
            if column in numeric:
                sheet.write_number(n, column, value)
            else:
                sheet.write_string(n, column, value)

    best = 0.0
    for write in (by_row, typed):
        began = time.perf_counter()
        book = xlsxwriter.Workbook(str(folder / "bare.xlsx"), {"constant_memory": True})
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, PSTN.columns)
        for n in range(count):
            write(sheet, n + 1, prepared[n % len(prepared)])
        book.close()
        best = max(best, count / (time.perf_counter() - began))
    return best


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    count = 100_000 if quick else 1_000_000
    xlsx_count = 20_000 if quick else 200_000
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, org_id = calls_database(count, say)
        container = build(settings(path))
        try:
            big = Reports(container.store, container.clock, container.calls)
            request = big.request("pstn", org_id, days=28)
            assert big.count(request) == count, "the range must hold every inserted call"

            tenth = big.request(
                "pstn",
                org_id,
                from_=request.range.first_day,
                to=request.range.first_day + timedelta(days=2),
            )
            tenth_rows = big.count(tenth)
            say(f"  CSV export of {tenth_rows:,} rows, then of {count:,} rows")
            _, _, tenth_csv_peak = _timed_export(big, tenth, "csv")
            seconds, size, csv_peak = _timed_export(big, request, "csv")
            csv_rate = count / seconds
            say(f"    {seconds:.2f} s, {size / MB:.0f} MB written")
            bare = _bare_fetch_and_write(big, request)
            figures.append(
                Figure(
                    figure=f"report CSV export rows/s ({count:,} calls, SQLite)",
                    value=csv_rate,
                    unit="rows/s",
                    baseline=bare,
                    target=">= 200,000 rows/s",
                    met=csv_rate >= 200_000,
                )
            )

            # The Excel figure reads the first xlsx_count calls of the same table.
            with container.store.unit_of_work(read_only=True) as uow:
                last = uow.conn.execute(
                    select(calls.c.start_time)
                    .order_by(calls.c.start_time)
                    .offset(xlsx_count - 1)
                    .limit(1)
                ).scalar_one()
            small = big.request("pstn", org_id, from_=request.range.first_day, to=last.date())
            # Whole days: trim to exactly xlsx_count by counting what the range holds.
            xlsx_rows = big.count(small)
            say(f"  Excel export of {tenth_rows:,} rows, then of {xlsx_rows:,} rows")
            _, _, tenth_xlsx_peak = _timed_export(big, tenth, "xlsx")
            seconds, size, xlsx_peak = _timed_export(big, small, "xlsx")
            xlsx_rate = xlsx_rows / seconds
            say(f"    {seconds:.2f} s, {size / MB:.1f} MB written")
            sample = list(big.rows(small))[:1000] if xlsx_rows <= 50_000 else _first(big, small)
            # xlsxwriter's rate is steady after a few thousand rows: 20,000 are enough for the
            # baseline, and writing all of them twice (two ways) took a minute of the run.
            bare_xlsx = _bare_xlsxwriter(sample, min(xlsx_rows, 20_000), folder)
            figures.append(
                Figure(
                    figure=f"report Excel export rows/s ({xlsx_rows:,} calls)",
                    value=xlsx_rate,
                    unit="rows/s",
                    baseline=bare_xlsx,
                    target=">= 10,000 rows/s",
                    met=xlsx_rate >= 10_000,
                )
            )

            for label, rows, peak, tenth_peak in (
                ("CSV", count, csv_peak, tenth_csv_peak),
                ("Excel", xlsx_rows, xlsx_peak, tenth_xlsx_peak),
            ):
                say(
                    f"  peak resident memory growth of the {label} export:"
                    f" {tenth_rows:,} rows: {tenth_peak:.1f} MB; {rows:,} rows: {peak:.1f} MB"
                )
                figures.append(
                    Figure(
                        figure=f"report {label} export peak memory ({rows:,} calls)",
                        value=peak,
                        unit="MB",
                        baseline=tenth_peak,
                        target=f"< 200 MB, flat (<= 2x the {tenth_rows:,}-row peak + 16 MB)",
                        met=peak < 200 and peak <= 2 * tenth_peak + 16,
                    )
                )
        finally:
            container.close()
    return figures


def _first(reports: Reports, request: Any, count: int = 1000) -> list[tuple[Any, ...]]:
    rows = []
    iterator = reports.rows(request)
    for row in iterator:
        rows.append(row)
        if len(rows) == count:
            break
    iterator.close()  # type: ignore[attr-defined]
    return rows
