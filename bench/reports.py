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
* peak memory of the CSV and Excel exports: the growth of Python's traced allocations
  (tracemalloc) while exporting, at a tenth of the rows and at all of them. Target: under
  200 MB, and flat (the full export needs no more than twice the tenth's peak plus 16 MB).

Rows are inserted straight into ``calls`` (executemany), each with the report line the store
writes when a call ends, not charged through the service: the figures are about reading them
out.
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.report import Figure
from commcredits.app import build
from commcredits.domain.money import from_micros
from commcredits.domain.report_line import pstn_line
from commcredits.domain.usage import CallRecord
from commcredits.services.orgs import NewOrganization
from commcredits.services.reports import PSTN, Reports
from commcredits.settings import Settings
from commcredits.store.tables import calls

SEED = 20260115
NOW = "2026-06-15T12:00:00+00:00"
BATCH = 20_000
MB = 1024 * 1024

_TYPES = ["user_out"] * 6 + ["user_in"] * 2 + ["conf_out", "user_out_forwarding"]
_CAPS = (
    [("pool", "MCOPSTN1", 0)] * 5 + [("credits", "MCOPSTNPP", 1)] * 4 + [("free", "FREECALL", 0)]
)
_DESTINATIONS = [("DE", "+4930", "fixed"), ("FR", "+3314", "fixed"), ("US", "+1212", "mobile")]


def _rows(org_id: str, count: int, start: datetime, span: timedelta) -> Iterator[dict[str, Any]]:
    rng = random.Random(SEED)
    step = span / count
    for n in range(count):
        call_type = rng.choice(_TYPES)
        funding, capability, paid = rng.choice(_CAPS)
        country, prefix, number_type = rng.choice(_DESTINATIONS)
        duration = rng.randint(5, 1800)
        begin = start + step * n
        other = f"{prefix}{rng.randint(1_000_000, 9_999_999)}"
        user = n % 500
        charge = paid * rng.randint(0, 500) * 10_000
        yield {
            "org_id": org_id,
            "call_id": f"call-{n:08d}",
            "call_type": call_type,
            "user_id": f"user-{user:04d}",
            "upn": f"user{user}@contoso.com",
            "display_name": f"User {user}",
            "user_location": "DE",
            "from_number": other if call_type.endswith("_in") else "+4930123456" + f"{user:03d}",
            "to_number": "+4930123456" + f"{user:03d}" if call_type.endswith("_in") else other,
            "conference_id": f"conf-{n % 97}" if call_type.startswith("conf") else None,
            "status": "ended",
            "decision": "allow",
            "funding": funding,
            "capability": capability,
            "external_country": country,
            "number_type": number_type,
            "domestic": country == "DE",
            "pool_minutes": 0 if paid else -(-duration // 60),
            "currency": "EUR",
            "charge_micros": charge,
            "connection_fee_micros": 15_000 if charge else 0,
            "start_time": begin,
            "end_time": begin + timedelta(seconds=duration),
            "duration_seconds": duration,
            "source": "cdr",
        }


_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


def _with_report_line(row: dict[str, Any]) -> dict[str, Any]:
    """The row with the report line its call is stored with when it ends."""
    values = {name: row.get(name) for name in _RECORD_FIELDS}
    values["charge"] = from_micros(row["charge_micros"])
    values["connection_fee_charged"] = from_micros(row["connection_fee_micros"])
    line = pstn_line(CallRecord(**values))
    assert line is not None
    return {**row, "report_line": line[0], "report_mask_at": line[1]}


def _fill(container: Any, org_id: str, count: int, say: Callable[..., Any]) -> None:
    """Insert ``count`` ended calls with the bare driver, in one transaction: values as the
    store writes them (times as naive UTC text, the columns' defaults filled in, the report
    line each call is stored with when it ends)."""
    start = datetime.fromisoformat(NOW) - timedelta(days=27)
    span = timedelta(days=27)
    columns = list(calls.c)
    defaults = {
        c.name: c.default.arg if c.default is not None and c.default.is_scalar else None
        for c in columns
    }
    names = [c.name for c in columns]
    sql = f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"

    def stored(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
        return int(value) if isinstance(value, bool) else value

    raw = container.store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")  # the store's connections leave transactions to the caller
        batch: list[tuple[Any, ...]] = []
        for plain in _rows(org_id, count, start, span):
            row = _with_report_line(plain)
            batch.append(tuple(stored(row.get(name, defaults[name])) for name in names))
            if len(batch) == BATCH:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()
    say(f"  {count:,} calls inserted")


def _drain(chunks: Iterator[bytes]) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
    return size


def _timed_export(reports: Reports, request: Any, fmt: str) -> tuple[float, int]:
    began = time.perf_counter()
    size = _drain(reports.export(request, fmt).chunks)
    return time.perf_counter() - began, size


def _peak(reports: Reports, request: Any, fmt: str) -> float:
    """Peak traced allocations (MB) above what was allocated before the export started."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        _drain(reports.export(request, fmt).chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / MB


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
        container = build(
            Settings(
                database_url=f"sqlite:///{folder / 'bench.db'}",
                clock="simulated",
                clock_start=NOW,
                sandbox_journal=None,
                mail_spool_dir=folder / "mail",
            )
        )
        try:
            org = container.orgs.create(NewOrganization("Bench", "DE", "EUR", "prepaid"))
            _fill(container, org.id, count, say)
            big = Reports(container.store, container.clock, container.calls)
            request = big.request("pstn", org.id, days=28)
            assert big.count(request) == count, "the range must hold every inserted call"

            say(f"  CSV export of {count:,} rows")
            seconds, size = _timed_export(big, request, "csv")
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
            small = big.request("pstn", org.id, from_=request.range.first_day, to=last.date())
            # Whole days: trim to exactly xlsx_count by counting what the range holds.
            xlsx_rows = big.count(small)
            say(f"  Excel export of {xlsx_rows:,} rows")
            seconds, size = _timed_export(big, small, "xlsx")
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

            tenth = big.request(
                "pstn",
                org.id,
                from_=request.range.first_day,
                to=request.range.first_day + timedelta(days=2),
            )
            for fmt, label in (("csv", "CSV"), ("xlsx", "Excel")):
                # Excel at its own (smaller) size: a million rows would take minutes here.
                whole, part = (small, tenth) if fmt == "xlsx" else (request, tenth)
                say(f"  peak memory of the {label} export (tracemalloc)")
                part_peak = _peak(big, part, fmt)
                whole_peak = _peak(big, whole, fmt)
                rows_whole = big.count(whole)
                rows_part = big.count(part)
                say(
                    f"    {rows_part:,} rows: {part_peak:.1f} MB;"
                    f" {rows_whole:,} rows: {whole_peak:.1f} MB"
                )
                figures.append(
                    Figure(
                        figure=f"report {label} export peak memory ({rows_whole:,} calls)",
                        value=whole_peak,
                        unit="MB",
                        baseline=part_peak,
                        target=f"< 200 MB, flat (<= 2x the {rows_part:,}-row peak + 16 MB)",
                        met=whole_peak < 200 and whole_peak <= 2 * part_peak + 16,
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
