"""The streaming .xlsx writer behind the report exports (R-52): what a spreadsheet reads back."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcredits.services.xlsx_stream import (
    SHEET_ROWS,
    XlsxColumn,
    column_letter,
    escape_text,
    excel_serial,
    workbook_chunks,
)

COLUMNS = [
    XlsxColumn("Name"),
    XlsxColumn("Seconds", "number", width=10),
    XlsxColumn("Charge", "number", "0.00####", width=12),
    XlsxColumn("Start", "time", "yyyy-mm-dd hh:mm:ss", width=20),
]


def _book(
    rows: Sequence[Sequence[Any]],
    columns: Sequence[XlsxColumn] = COLUMNS,
    *,
    sheet_rows: int = SHEET_ROWS,
    batch: int = 3,
) -> openpyxl.Workbook:
    batches = [rows[n : n + batch] for n in range(0, len(rows), batch)]
    body = b"".join(workbook_chunks("Usage", columns, batches, sheet_rows=sheet_rows))
    assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    return openpyxl.load_workbook(io.BytesIO(body))


def _excel_text(value: str) -> str:
    """What Excel shows for a cell's stored text: ``_xHHHH_`` is the character HHHH."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def test_cells_are_typed_numbers_as_numbers_and_times_as_dates() -> None:
    sheet = _book(
        [
            ("Ann", 125, "0.08", "2026-01-14T09:30:00Z"),
            ("Bob", 0, "12345.678901", datetime(2026, 1, 14, 23, 59, 59, tzinfo=UTC)),
        ]
    ).worksheets[0]
    assert [c.value for c in sheet[1]] == ["Name", "Seconds", "Charge", "Start"]
    assert all(c.font.b for c in sheet[1])
    assert [c.value for c in sheet[2]] == ["Ann", 125, 0.08, datetime(2026, 1, 14, 9, 30)]
    assert [c.value for c in sheet[3]] == [
        "Bob",
        0,
        12345.678901,
        datetime(2026, 1, 14, 23, 59, 59),
    ]
    assert isinstance(sheet["B2"].value, int)
    assert sheet["C2"].data_type == "n"
    assert sheet["C2"].number_format == "0.00####"
    assert sheet["D2"].is_date
    assert sheet["D2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["A2"].data_type == "s"


def test_the_header_row_is_frozen_and_filtered_and_columns_have_their_widths() -> None:
    book = _book([("Ann", 1, "1.00", "2026-01-14T09:30:00Z")] * 5)
    sheet = book.worksheets[0]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:D6"
    assert [sheet.column_dimensions[letter].width for letter in "ABCD"] == [18, 10, 12, 20]
    assert book.sheetnames == ["Usage"]


def test_a_reader_streaming_the_sheet_sees_its_extent() -> None:
    rows = [("Ann", n, "1.00", "2026-01-14T09:30:00Z") for n in range(7)]
    body = b"".join(workbook_chunks("Usage", COLUMNS, [rows]))
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    assert (sheet.max_row, sheet.max_column) == (8, 4)
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == list(range(7))


def test_empty_values_are_blank_cells() -> None:
    sheet = _book([(None, None, "", None), ("", 3, None, "")]).worksheets[0]
    assert [c.value for c in sheet[2]] == [None, None, None, None]
    assert [c.value for c in sheet[3]] == [None, 3, None, None]


def test_rows_beyond_a_sheet_continue_on_the_next_with_their_own_header() -> None:
    rows = [(f"row {n}", n, "0.10", "2026-01-14T08:00:00Z") for n in range(8)]
    book = _book(rows, sheet_rows=4)
    assert book.sheetnames == ["Usage", "Usage (2)", "Usage (3)"]
    seen = []
    for sheet in book.worksheets:
        assert [c.value for c in sheet[1]] == ["Name", "Seconds", "Charge", "Start"]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:D{sheet.max_row}"
        seen += [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert seen == list(range(8))
    assert [sheet.max_row for sheet in book.worksheets] == [4, 4, 3]


def test_markup_control_characters_and_escape_lookalikes_survive_as_excel_reads_them() -> None:
    awkward = [
        'Doe, "Ann" & <Co>',
        "tab\there, line\nbreak, carriage\rreturn",
        "bell\x07 nul\x00 unit\x1f",
        "_x0041_ is not an A",
        "  padded  ",
        "Zoë Ünal 山田 🙂",
        "noncharacter \ufffe",
        "a | b",
    ]
    sheet = _book([(text, 1, "1", "2026-01-14T08:00:00Z") for text in awkward]).worksheets[0]
    read = [_excel_text(row[0]) for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert read == awkward


def test_numbers_take_ints_decimals_floats_and_decimal_strings_only() -> None:
    sheet = _book([("a", 7, Decimal("-0.015"), None), ("b", 2.5, "-12.50", None)]).worksheets[0]
    assert [sheet["B2"].value, sheet["C2"].value] == [7, -0.015]
    assert [sheet["B3"].value, sheet["C3"].value] == [2.5, -12.5]
    for bad in ("12,50", "1e5", "NaN", True, float("inf"), Decimal("NaN")):
        with pytest.raises((ValueError, TypeError)):
            _book([("a", bad, None, None)])


def test_a_row_of_the_wrong_length_and_a_bad_sheet_name_are_refused() -> None:
    with pytest.raises(ValueError, match="4 values"):
        _book([("a", 1)])
    for name in ("", "a" * 32, "a/b", "x[1]", "'quoted"):
        with pytest.raises(ValueError, match="sheet name"):
            list(workbook_chunks(name, COLUMNS, []))


def test_an_empty_report_is_a_header_and_a_filter() -> None:
    sheet = _book([]).worksheets[0]
    assert [c.value for c in sheet[1]] == ["Name", "Seconds", "Charge", "Start"]
    assert sheet.max_row == 1
    assert sheet.auto_filter.ref == "A1:D2"


def test_helpers() -> None:
    assert [column_letter(n) for n in (0, 25, 26, 51, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AZ",
        "ZZ",
        "AAA",
    ]
    assert escape_text("<a&b>") == "&lt;a&amp;b&gt;"
    assert escape_text("\r") == "_x000D_"
    assert escape_text("_x00e9_") == "_x005F_x00e9_"
    assert excel_serial("1900-03-01T12:00:00Z") == 61.5
    assert excel_serial(datetime(2026, 1, 14, 9, 30, tzinfo=UTC)) == excel_serial(
        "2026-01-14T09:30:00Z"
    )


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_ROWS = st.lists(
    st.tuples(
        _TEXT,
        st.integers(min_value=-(2**53), max_value=2**53),
        st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False),
        st.datetimes(
            min_value=datetime(1900, 3, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
        ).map(lambda d: d.replace(microsecond=0, tzinfo=UTC)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(_ROWS, st.integers(min_value=2, max_value=6))
def test_any_rows_round_trip(
    rows: list[tuple[str, int, Decimal, datetime]], per_sheet: int
) -> None:
    book = _book(rows, sheet_rows=per_sheet, batch=5)
    read = [
        row for sheet in book.worksheets for row in sheet.iter_rows(min_row=2, values_only=True)
    ]
    assert len(read) == len(rows)
    for (text, whole, amount, at), (got_text, got_whole, got_amount, got_at) in zip(
        rows, read, strict=True
    ):
        assert (_excel_text(got_text) if got_text is not None else "") == text
        assert got_whole == whole
        assert got_amount == float(amount)
        assert got_at == at.replace(tzinfo=None)
