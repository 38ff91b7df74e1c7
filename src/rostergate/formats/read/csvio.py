"""Reading CSV tables: every value a string, nothing inferred.

Reading goes through pyarrow's CSV reader with every column typed as string so
that ids such as ``007`` keep their leading zeros and empty cells stay ``""``
(never NaN); the frame's columns are pyarrow-backed strings, which keeps a
district-sized roster compact in memory. Decoding is disclosed (see
:mod:`rostergate.formats.read.text`): :func:`load_bytes` returns the issues found
together with the frame; :func:`read_table` keeps the simple signature and
raises only when nothing readable is left.

One reader serves both dialects: RFC 4180 (OneRoster) and, with
``escape_char=schema.asm.ESCAPE``, Apple's backslash escapes (asm.md §1.1).
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue
from rostergate.formats.read.text import DELIMITER_NAMES, EncodingPolicy, decode, sniff_delimiter

_MAX_LOCATED_BAD_ROWS = 20
_HEADER_BYTES = 65536  # the longest header row looked for
_BLANK = re.compile(rb"\s*\Z")


@dataclass
class LoadedTable:
    """One CSV file as read: the frame (``None`` if unreadable) and what was found.

    ``header`` is the header row as written (before duplicate names were made
    unique); ``lines`` maps row positions to file lines when values span lines,
    else ``None`` (then line = position + 2).
    """

    name: str
    frame: pd.DataFrame | None
    header: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    lines: np.ndarray | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    #: issues found but not materialised (code -> count), e.g. the 20,001st bad row
    hidden: dict[str, int] = field(default_factory=dict)


@dataclass
class ReadTable(LoadedTable):
    """A :class:`LoadedTable` whose frame is there: what the validators check."""

    frame: pd.DataFrame

    @classmethod
    def of(cls, loaded: LoadedTable) -> ReadTable | None:
        """``loaded`` as a :class:`ReadTable` (sharing its frame), or ``None`` when it was unreadable."""
        if loaded.frame is None:
            return None
        return cls(loaded.name, loaded.frame, loaded.header, loaded.issues, loaded.lines, loaded.delimiter,
                   loaded.encoding, loaded.hidden)


def read_table(path: Path) -> pd.DataFrame:
    """Read one CSV file (UTF-8, or converted from UTF-16/Windows-1252) into a DataFrame of strings.

    Columns keep the header's names and order; empty cells are ``""``.
    Raises :class:`ValueError` with a readable message when the file cannot be
    parsed as CSV at all. Rows with the wrong number of values are dropped;
    use :func:`read_table_with_issues` to hear about them.
    """
    return _frame_or_raise(load_table(Path(path)))


def read_table_bytes(data: bytes, name: str = "table.csv", *, escape_char: str | None = None) -> pd.DataFrame:
    """Like :func:`read_table` for bytes already in memory (``escape_char`` as for :func:`load_table`)."""
    return _frame_or_raise(load_bytes(data, name, escape_char=escape_char))


def read_table_with_issues(
    path: Path, name: str | None = None, *, encoding_policy: EncodingPolicy = "convert"
) -> tuple[pd.DataFrame, list[Issue]]:
    """Read ``path`` and return the frame (empty when unreadable) and the issues found."""
    loaded = load_table(Path(path), name, encoding_policy=encoding_policy)
    frame = loaded.frame if loaded.frame is not None else pd.DataFrame()
    return frame, loaded.issues


# While set (see :func:`sharing_loaded_tables`), parsed tables are reused instead of re-read:
# key -> the table, as a future so that a second reader waits for the first one's parse.
_ShareKey = tuple[str, str | None, str, tuple[str, ...], str | None, int, int]
_shared: dict[_ShareKey, Future[LoadedTable]] | None = None
_shared_lock = threading.Lock()


@contextmanager
def sharing_loaded_tables() -> Iterator[None]:
    """Within this block, loading the same unchanged file with the same options parses it once.

    A run validates its upload and converts it, side by side: both read the same files,
    from different threads. Whoever asks first parses; a concurrent reader of the same
    file waits for that parse instead of starting its own. Callers must treat a
    :class:`LoadedTable`'s frame as read-only (validators only read; the converter
    copies before it changes anything).
    """
    global _shared
    previous, _shared = _shared, {}
    try:
        yield
    finally:
        _shared = previous


def load_table(
    path: Path,
    name: str | None = None,
    *,
    encoding_policy: EncodingPolicy = "convert",
    allowed_delimiters: tuple[str, ...] = (",",),
    escape_char: str | None = None,
) -> LoadedTable:
    """Read and decode one file; never raises for bad content (only for I/O errors).

    ``escape_char="\\"`` reads Apple's dialect (asm.md §1.1: ``\\"`` inside quotes);
    RFC 4180 quote doubling is accepted as well.
    """
    path = Path(path)

    def load() -> LoadedTable:
        return load_bytes(path.read_bytes(), name or path.name, encoding_policy=encoding_policy,
                          allowed_delimiters=allowed_delimiters, escape_char=escape_char)

    shared = _shared
    if shared is None:
        return load()
    stat = path.stat()
    key = (str(path), name, encoding_policy, allowed_delimiters, escape_char, stat.st_size, stat.st_mtime_ns)
    with _shared_lock:
        pending = shared.get(key)
        first = pending is None
        if pending is None:
            pending = shared[key] = Future()
    if not first:
        return pending.result()
    try:
        loaded = load()
    except BaseException as exc:
        pending.set_exception(exc)
        raise
    pending.set_result(loaded)
    return loaded


def load_bytes(
    raw: bytes,
    name: str,
    *,
    encoding_policy: EncodingPolicy = "convert",
    allowed_delimiters: tuple[str, ...] = (",",),
    escape_char: str | None = None,
) -> LoadedTable:
    """Decode, sniff and parse CSV bytes into a :class:`LoadedTable`."""
    if _BLANK.match(raw):
        return LoadedTable(name, None, issues=[issue("csv.empty_file", file=name)])
    decoded = decode(raw, name, encoding_policy)
    issues = list(decoded.issues)
    data = decoded.data
    if data is None:
        return LoadedTable(name, None, issues=issues, encoding=decoded.encoding)
    if _BLANK.match(data):
        issues.append(issue("csv.empty_file", file=name))
        return LoadedTable(name, None, issues=issues, encoding=decoded.encoding)
    delimiter = sniff_delimiter(data)
    if delimiter not in allowed_delimiters:
        issues.append(issue("text.delimiter", file=name, line=1, value=DELIMITER_NAMES[delimiter]))
    header, names, header_end = _parse_header(data, delimiter, name, issues)
    if len(data) - header_end < 65536 and not data[header_end:].strip():
        frame = pd.DataFrame({n: pd.Series([], dtype=pd.StringDtype("pyarrow", na_value=np.nan)) for n in names})
        frame.columns = names
        return LoadedTable(name, frame, header, issues, None, delimiter, decoded.encoding)
    bad_rows: list[tuple[int, int, str]] = []  # the first few, to locate and show
    bad_count = [0]

    def on_bad_row(row: pacsv.InvalidRow) -> str:
        bad_count[0] += 1
        if len(bad_rows) < _MAX_LOCATED_BAD_ROWS:
            bad_rows.append((row.expected_columns, row.actual_columns, row.text or ""))
        return "skip"

    # Allowing line breaks in values makes pyarrow chunk serially (slower). Parse the fast
    # way first and re-parse only when the rows do not account for every line end.
    physical = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        table = _parse(data, names, delimiter, False, on_bad_row, escape_char)
        if table.num_rows + bad_count[0] + 1 != physical:
            bad_rows.clear()
            bad_count[0] = 0
            table = _parse(data, names, delimiter, True, on_bad_row, escape_char)
    except MemoryError:
        raise  # the worker's memory limit, not the file's fault (pyarrow.ArrowMemoryError is one)
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        issues.append(issue("csv.parse_error", file=name, reason=_short(str(exc))))
        return LoadedTable(name, None, header, issues, None, delimiter, decoded.encoding)
    frame = table.to_pandas(types_mapper=_string_mapper)
    frame.columns = names
    del table
    bad_lines = _report_bad_rows(data, bad_rows, name, issues) if bad_rows else []
    hidden = {}
    if bad_count[0] > len(bad_rows):
        hidden["csv.row_width_mismatch"] = bad_count[0] - len(bad_rows)
    lines, broken, broken_total = _line_breaks(data, physical, frame)
    if broken_total > len(broken):
        hidden["csv.line_break_in_field"] = broken_total - len(broken)
    if bad_lines and len(bad_lines) == bad_count[0]:
        # dropped rows shift the lines of every later row; all of them were located, so undo that
        lines = 2 + np.arange(len(frame), dtype=np.int64) if lines is None else lines
        for bad in sorted(bad_lines):
            lines[lines >= bad] += 1
    for col, pos, value in broken:
        line = int(lines[pos]) if lines is not None else pos + 2
        issues.append(issue("csv.line_break_in_field", file=name, line=line, column=col, value=value))
    return LoadedTable(name, frame, header, issues, lines, delimiter, decoded.encoding, hidden)


def read_header(path: Path) -> list[str]:
    """The header row of a CSV file, each name trimmed, from its first 64 KiB.

    For recognising a file, not for checking it: decoding problems are not reported
    (undecodable bytes become U+FFFD) and nothing raises; an unreadable file has no header.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
    except OSError:
        return []
    data = decode(head, path.name).data or head
    header, _, _ = _parse_header(data, sniff_delimiter(data), path.name, [])
    return [name.strip() for name in header]


def _parse(data: bytes, names: list[str], delimiter: str, newlines_in_values: bool,
           on_bad_row: Callable[[pacsv.InvalidRow], str], escape_char: str | None = None) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=newlines_in_values, invalid_row_handler=on_bad_row,
            escape_char=escape_char or False,
        ),
        convert_options=pacsv.ConvertOptions(
            # large_string is what pandas' Arrow strings hold: parsing straight into it saves a
            # cast (a copy of every value) when the table becomes a frame
            column_types={n: pa.large_string() for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _string_mapper(dtype: pa.DataType) -> pd.StringDtype[Literal["pyarrow"]] | None:
    return pd.StringDtype("pyarrow", na_value=np.nan) if dtype in (pa.string(), pa.large_string()) else None


def _parse_header(data: bytes, delimiter: str, name: str, issues: list[Issue]) -> tuple[list[str], list[str], int]:
    ends = [e for e in (data.find(b"\n", 0, _HEADER_BYTES), data.find(b"\r", 0, _HEADER_BYTES)) if e >= 0]
    end = min(ends) if ends else len(data)
    line = data[:end].decode("utf-8", "replace")
    try:
        header = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        header = line.split(delimiter)
    if not header:
        header = [""]
    names: list[str] = []
    seen: dict[str, int] = {}
    for position, col in enumerate(header, start=1):
        if col == "":
            issues.append(issue("csv.header.empty_column", file=name, line=1, position=position))
            col = f"Unnamed: {position - 1}"
        if col in seen:
            if seen[col] == 1:
                issues.append(issue("csv.header.duplicate_column", file=name, line=1, column=col, value=col))
            seen[col] += 1
            col = f"{col}.{seen[col] - 1}"
        else:
            seen[col] = 1
        names.append(col)
    return header, names, end


def _report_bad_rows(data: bytes, bad_rows: list[tuple[int, int, str]], name: str, issues: list[Issue]) -> list[int]:
    """Report rows with the wrong number of values (the first few); returns the lines located.

    pyarrow may hand rows over out of file order, so each is searched from the start
    (at most a few whole-file scans, and only for broken files).
    """
    used: set[int] = set()
    found: list[tuple[int | None, int, int]] = []
    for expected, actual, text in bad_rows:
        needle = text.encode("utf-8", "replace")
        offset = data.find(needle) if needle else -1
        while offset in used:
            offset = data.find(needle, offset + 1)
        line = None
        if offset >= 0:
            used.add(offset)
            line = data.count(b"\n", 0, offset) + 1
        found.append((line, expected, actual))
    found.sort(key=lambda f: (f[0] is None, f[0] or 0))
    for line, expected, actual in found:
        issues.append(issue("csv.row_width_mismatch", file=name, line=line, expected=expected, actual=actual))
    return [line for line, _, _ in found if line is not None]


def _line_breaks(
    data: bytes, physical: int, frame: pd.DataFrame
) -> tuple[np.ndarray | None, list[tuple[str, int, str]], int]:
    """Find values holding line breaks: a row→line map (when rows span lines), the first
    few such cells and how many there are in all.

    ``physical`` is the number of lines of ``data``; when it equals header + rows and
    there is no bare carriage return, no value can hold a line break.
    """
    bare_cr = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")  # `in` is a memchr: no CR, no count
    last_row_broken = len(frame) > 0 and any("\n" in str(v) for v in frame.iloc[-1].tolist())
    if physical <= len(frame) + 1 and not bare_cr and not last_row_broken:
        return None, [], 0
    extra = np.zeros(len(frame), dtype=np.int64)
    found: list[tuple[str, int, str]] = []
    total = 0
    for col in frame.columns:
        s = frame[col]
        has = s.str.contains("\n", regex=False) | s.str.contains("\r", regex=False)
        if not has.any():
            continue
        extra += s.str.count("\n").to_numpy(dtype=np.int64, na_value=0)
        total += int(has.sum())
        for pos in np.flatnonzero(has.to_numpy(dtype=bool, na_value=False))[:_MAX_LOCATED_BAD_ROWS].tolist():
            found.append((col, pos, str(s.iat[pos])))
    found.sort(key=lambda f: f[1])
    found = found[:_MAX_LOCATED_BAD_ROWS]
    lines = None
    if extra.any():
        lines = 2 + np.arange(len(frame), dtype=np.int64) + np.concatenate(([0], np.cumsum(extra)[:-1]))
    return lines, found, total


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _frame_or_raise(loaded: LoadedTable) -> pd.DataFrame:
    if loaded.frame is None:
        reasons = "; ".join(i.message for i in loaded.issues if i.severity == "error") or "unreadable"
        raise ValueError(f"{loaded.name}: {reasons}")
    return loaded.frame

