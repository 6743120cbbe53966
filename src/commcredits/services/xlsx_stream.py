"""A streaming .xlsx writer: rows in, a workbook out, in constant memory.

An .xlsx is a zip of a few XML parts. The sheets are the only large ones; each row becomes
its XML as it comes (text as inline strings, numbers as numbers, times as serial dates with
a date format) and is written to a temporary file, so memory holds one batch at a time
whatever the number of rows. Once every row is written, the zip is produced chunk by chunk
from those files. A sheet holds Excel's 1,048,576 rows (its header included); more rows
continue on the next sheet, each with its header, a frozen header row and an autofilter.

Text is escaped for XML (``&``, ``<``, ``>``) and, as Excel reads it, for the characters XML
cannot hold: control characters (and CR, which XML parsers turn into LF) are written as
``_xHHHH_``, and text that already looks like such an escape has its underscore escaped
(``_x005F_``). Excel turns them back into the characters. Cells with no value (``None`` or
an empty string) are left blank.

Written with the standard library only: xlsxwriter's per-cell Python made it the slowest
part of an export, and a report needs none of its features beyond these.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any, Final, Literal

CellKind = Literal["text", "number", "time"]

SHEET_ROWS: Final = 1_048_576
"""Excel's rows per sheet, the header row included."""

MAX_COLUMNS: Final = 16_384
COMPRESS_LEVEL: Final = 1
"""zlib level of the zip entries: the sheet XML is repetitive enough that level 1 comes
within a few percent of level 6 in size, at a fraction of its time."""

_EXCEL_EPOCH: Final = date(1899, 12, 30).toordinal()
_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_SHEET_NAME_FORBIDDEN: Final = re.compile(r"[\[\]:*?/\\]")
_NUMBER: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")

_SPECIAL_BYTES: Final = bytes(range(0x20)) + b"&<>"
"""Bytes whose text needs escaping (markup, control characters) or a closer look (tab, LF)."""


def _plain(texts: list[str]) -> bool:
    """Whether a row's texts can be written as they are: nothing to escape, no whitespace
    to keep at either end (``xml:space``). A few scans of the texts joined, not a regex per
    cell: this runs for every row."""
    joined = "|".join(texts)
    data = joined.encode()
    if len(data.translate(None, _SPECIAL_BYTES)) != len(data) or "_x" in joined:
        return False
    if " |" in joined or "| " in joined or joined[0] == " " or joined[-1] == " ":
        return False  # (or a "|" beside a space inside a text: only a closer look)
    return joined.isascii() or ("\ufffe" not in joined and "\uffff" not in joined)


_XML_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")


@dataclass(frozen=True, slots=True)
class XlsxColumn:
    """One column: its header, how its cells are written, and how they look.

    ``text`` cells take strings. ``number`` cells take ints, floats, Decimals or decimal
    strings (``"-12.50"``). ``time`` cells take datetimes or UTC ISO 8601 strings
    (``2026-01-15T08:00:00Z``) and are written as Excel serial dates (UTC, no time zone)."""

    title: str
    kind: CellKind = "text"
    number_format: str | None = None
    width: float = 18


def column_letter(index: int) -> str:
    """``0`` -> ``A``, ``25`` -> ``Z``, ``26`` -> ``AA``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def escape_text(value: str) -> str:
    """``value`` as the text of an inline string element."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return _XML_UNSAFE.sub(_escape_character, value)


def _escape_character(match: re.Match[str]) -> str:
    character = match.group(0)
    return "_x005F_" if character == "_" else f"_x{ord(character):04X}_"


def excel_serial(value: datetime | str) -> float:
    """A UTC instant as an Excel serial date (days since 1899-12-30, the time a fraction)."""
    if isinstance(value, str):
        # 2026-01-15T08:00:00Z, the form the reports write.
        day = _ordinal(value[:10])
        seconds = int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
    else:
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        day = value.toordinal()
        seconds = value.hour * 3600 + value.minute * 60 + value.second
        seconds += value.microsecond / 1_000_000  # type: ignore[assignment]
    return day - _EXCEL_EPOCH + seconds / 86_400


@lru_cache(maxsize=4096)
def _ordinal(day: str) -> int:
    return date.fromisoformat(day).toordinal()


def _number_text(value: Any) -> str:
    if isinstance(value, str):
        if _NUMBER.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, bool):
        raise TypeError("a number cell takes a number, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a number Excel can hold")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a number Excel can hold")
        return format(value, "f")
    raise ValueError(f"{value!r} is not a number")


def check_sheet_name(name: str) -> str:
    if not 1 <= len(name) <= 31 or _SHEET_NAME_FORBIDDEN.search(name) or name[0] == "'":
        raise ValueError(f"{name!r} is not an Excel sheet name")
    return name


class _Sheet:
    """One worksheet: its rows' XML written to a file as they come; the XML before and after
    them (which names the sheet's extent) once the last row is known."""

    def __init__(self, file: IO[bytes], name: str, columns: Sequence[XlsxColumn], header: str):
        self.file = file
        self.name = name
        self.rows = 0
        self._pending: list[str] = []
        self._widths = "".join(
            f'<col min="{n}" max="{n}" width="{column.width:g}" customWidth="1"/>'
            for n, column in enumerate(columns, start=1)
        )
        self.add(header)

    def add(self, row_xml: str) -> None:
        self.rows += 1
        self._pending.append(row_xml)
        if len(self._pending) >= 512:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.file.write("".join(self._pending).encode())
            self._pending.clear()

    def close(self, last_column: str) -> tuple[str, bytes, bytes]:
        """Ends the rows; returns the autofilter range (``A1:V123``) and the XML before and
        after the rows."""
        self.flush()
        self.file.close()
        ref = f"A1:{last_column}{max(self.rows, 2)}"
        head = (
            f'{_XML_DECLARATION}<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
            f'<dimension ref="A1:{last_column}{self.rows}"/>'
            '<sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
            "</sheetView></sheetViews>"
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{self._widths}</cols><sheetData>'
        )
        tail = (
            f'</sheetData><autoFilter ref="{ref}"/>'
            '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75"'
            ' header="0.3" footer="0.3"/></worksheet>'
        )
        return ref, head.encode(), tail.encode()


class _RowWriter:
    """Turns rows of values into ``<row>`` XML for the given columns."""

    def __init__(self, columns: Sequence[XlsxColumn], styles: dict[str | None, int]):
        self.columns = columns
        self.cells = []
        for index, column in enumerate(columns):
            letter = column_letter(index)
            style = styles[column.number_format]
            attribute = f' s="{style}"' if style else ""
            self.cells.append((letter, column.kind, attribute))

    def header(self) -> str:
        cells = "".join(
            f'<c r="{letter}1" t="inlineStr" s="1"><is><t>{escape_text(column.title)}</t></is></c>'
            for (letter, _, _), column in zip(self.cells, self.columns, strict=True)
        )
        return f'<row r="1">{cells}</row>'

    def row(self, number: int, values: Sequence[Any]) -> str:
        if len(values) != len(self.cells):
            raise ValueError(f"a row has {len(self.cells)} values, not {len(values)}")
        parts = [f'<row r="{number}">']
        add = parts.append
        texts: list[str] = []
        for (letter, kind, style), value in zip(self.cells, values, strict=True):
            if value is None or value == "":
                continue
            if kind == "text":
                text = value if isinstance(value, str) else str(value)
                texts.append(text)
                add(f'<c r="{letter}{number}" t="inlineStr"{style}><is><t>{text}</t></is></c>')
            elif kind == "number":
                add(f'<c r="{letter}{number}"{style}><v>{_number_text(value)}</v></c>')
            else:
                add(f'<c r="{letter}{number}"{style}><v>{excel_serial(value)!r}</v></c>')
        add("</row>")
        # One scan of the row's texts; a row with anything to escape is written again.
        if texts and not _plain(texts):
            return self._escaped_row(number, values)
        return "".join(parts)

    def _escaped_row(self, number: int, values: Sequence[Any]) -> str:
        parts = [f'<row r="{number}">']
        for (letter, kind, style), value in zip(self.cells, values, strict=True):
            if value is None or value == "":
                continue
            if kind == "text":
                text = value if isinstance(value, str) else str(value)
                space = ' xml:space="preserve"' if text != text.strip(" \t\n") else ""
                parts.append(
                    f'<c r="{letter}{number}" t="inlineStr"{style}><is>'
                    f"<t{space}>{escape_text(text)}</t></is></c>"
                )
            elif kind == "number":
                parts.append(f'<c r="{letter}{number}"{style}><v>{_number_text(value)}</v></c>')
            else:
                parts.append(f'<c r="{letter}{number}"{style}><v>{excel_serial(value)!r}</v></c>')
        parts.append("</row>")
        return "".join(parts)


def _styles(columns: Sequence[XlsxColumn]) -> tuple[str, dict[str | None, int]]:
    """styles.xml, and the cell format index of each number format (0: none, 1: header)."""
    formats = list(dict.fromkeys(c.number_format for c in columns if c.number_format))
    index: dict[str | None, int] = {None: 0}
    num_fmts = []
    xfs = [
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>',
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>',
    ]
    for n, number_format in enumerate(formats):
        fmt_id = 164 + n
        num_fmts.append(f'<numFmt numFmtId="{fmt_id}" formatCode="{_attribute(number_format)}"/>')
        index[number_format] = len(xfs)
        xfs.append(
            f'<xf numFmtId="{fmt_id}" fontId="0" fillId="0" borderId="0" xfId="0"'
            ' applyNumberFormat="1"/>'
        )
    num_fmts_xml = (
        f'<numFmts count="{len(num_fmts)}">{"".join(num_fmts)}</numFmts>' if num_fmts else ""
    )
    xml = (
        f'{_XML_DECLARATION}<styleSheet xmlns="{_MAIN_NS}">{num_fmts_xml}'
        '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
        "</borders>"
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        f'<cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )
    return xml, index


def _attribute(value: str) -> str:
    return escape_text(value).replace('"', "&quot;")


def _quoted_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _workbook(sheets: Sequence[tuple[str, str]]) -> str:
    entries = "".join(
        f'<sheet name="{_attribute(name)}" sheetId="{n}" r:id="rId{n}"/>'
        for n, (name, _) in enumerate(sheets, start=1)
    )
    names = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n}" hidden="1">'
        f"{escape_text(_quoted_sheet(name))}!{_absolute(ref)}</definedName>"
        for n, (name, ref) in enumerate(sheets)
    )
    return (
        f'{_XML_DECLARATION}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        '<bookViews><workbookView activeTab="0"/></bookViews>'
        f"<sheets>{entries}</sheets><definedNames>{names}</definedNames></workbook>"
    )


def _absolute(ref: str) -> str:
    first, last = ref.split(":")
    return ":".join(re.sub(r"([A-Z]+)([0-9]+)", r"$\1$\2", cell) for cell in (first, last))


def _content_types(sheet_count: int) -> str:
    sheets = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for n in range(1, sheet_count + 1)
    )
    return (
        f"{_XML_DECLARATION}<Types "
        'xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        f"{sheets}"
        '<Override PartName="/xl/styles.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        '<Override PartName="/docProps/app.xml" ContentType='
        '"application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
        "</Types>"
    )


_ROOT_RELS: Final = (
    f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL_NS}">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
    'relationships/metadata/core-properties" Target="docProps/core.xml"/>'
    '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/extended-properties" Target="docProps/app.xml"/>'
    "</Relationships>"
)

_APP: Final = (
    f"{_XML_DECLARATION}<Properties "
    'xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
    "<Application>Microsoft Excel</Application></Properties>"
)


def _core(created: datetime) -> str:
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{_XML_DECLARATION}<cp:coreProperties "
        'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
        "</cp:coreProperties>"
    )


def _workbook_rels(sheet_count: int) -> str:
    sheets = "".join(
        f'<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/'
        f'2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheet_count + 1)
    )
    styles = (
        f'<Relationship Id="rId{sheet_count + 1}" Type="http://schemas.openxmlformats.org/'
        'officeDocument/2006/relationships/styles" Target="styles.xml"/>'
    )
    return (
        f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL_NS}">{sheets}{styles}</Relationships>'
    )


class _Sink:
    """A write-only stream that hands its bytes out as they come (``zipfile`` writes data
    descriptors to it, as it cannot seek back)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def workbook_chunks(
    title: str,
    columns: Sequence[XlsxColumn],
    batches: Iterable[Sequence[Sequence[Any]]],
    *,
    sheet_rows: int = SHEET_ROWS,
    created: datetime | None = None,
    read_size: int = 1 << 20,
    compress_level: int = COMPRESS_LEVEL,
) -> Iterator[bytes]:
    """The workbook of ``batches`` of rows, as chunks of bytes.

    The first sheet is named ``title``, the next ``title (2)``, and so on; each holds
    ``sheet_rows`` rows, its header included."""
    check_sheet_name(title)
    if not 1 <= len(columns) <= MAX_COLUMNS:
        raise ValueError(f"a sheet has 1 to {MAX_COLUMNS} columns")
    if not 2 <= sheet_rows <= SHEET_ROWS:
        raise ValueError(f"a sheet holds 2 to {SHEET_ROWS} rows")
    styles_xml, styles = _styles(columns)
    writer = _RowWriter(columns, styles)
    header = writer.header()
    last_column = column_letter(len(columns) - 1)
    stamp = created or datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="commcredits-xlsx-") as folder:
        finished: list[tuple[str, str, str, bytes, bytes]] = []  # name, filter, rows, XML

        def close(sheet: _Sheet) -> None:
            ref, head, tail = sheet.close(last_column)
            finished.append((sheet.name, ref, sheet.file.name, head, tail))

        def open_sheet() -> _Sheet:
            number = len(finished) + 1
            suffix = f" ({number})"
            name = title if number == 1 else f"{title[: 31 - len(suffix)]}{suffix}"
            path = os.path.join(folder, f"sheet{number}.xml")
            return _Sheet(open(path, "wb"), name, columns, header)

        sheet = open_sheet()
        try:
            line = 1
            for batch in batches:
                for values in batch:
                    if line == sheet_rows:
                        close(sheet)
                        sheet = open_sheet()
                        line = 1
                    line += 1
                    sheet.add(writer.row(line, values))
            close(sheet)
        finally:
            sheet.file.close()

        sink = _Sink()
        stamp_tuple = stamp.astimezone(UTC).timetuple()[:6]
        with zipfile.ZipFile(
            sink,
            "w",
            compression=zipfile.ZIP_DEFLATED,
            compresslevel=compress_level,
        ) as archive:
            small = [
                ("[Content_Types].xml", _content_types(len(finished))),
                ("_rels/.rels", _ROOT_RELS),
                ("docProps/app.xml", _APP),
                ("docProps/core.xml", _core(stamp)),
                ("xl/workbook.xml", _workbook([(name, ref) for name, ref, *_ in finished])),
                ("xl/_rels/workbook.xml.rels", _workbook_rels(len(finished))),
                ("xl/styles.xml", styles_xml),
            ]
            for name, text in small:
                info = zipfile.ZipInfo(name, stamp_tuple)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)
            yield sink.take()
            for number, (_, _, path, head, tail) in enumerate(finished, start=1):
                info = zipfile.ZipInfo(f"xl/worksheets/sheet{number}.xml", stamp_tuple)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = len(head) + os.path.getsize(path) + len(tail)
                with open(path, "rb") as source, archive.open(info, "w") as entry:
                    entry.write(head)
                    while data := source.read(read_size):
                        entry.write(data)
                        if chunk := sink.take():
                            yield chunk
                    entry.write(tail)
                os.remove(path)
        yield sink.take()
