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
import functools
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rostergate.formats.arrowops import Positions
from rostergate.formats.catalogue import issue
from rostergate.formats.issues import Issue
from rostergate.formats.read.structure import Structure, field_at, line_of, scan
from rostergate.formats.read.text import DELIMITER_NAMES, EncodingPolicy, decode, sniff_delimiter

_MAX_LOCATED_BAD_ROWS = 20
_HEADER_BLOCK = 65536  # read_header reads this much at a time ...
_HEADER_MAX = 16 << 20  # ... until the header row ends, or this much has been read
_BLANK = re.compile(rb"\s*\Z")


@dataclass(frozen=True)
class Dialect:
    """Which CSV dialect a file is read in, and so which advice its problems get.

    OneRoster files are RFC 4180 (oneroster.md §2 G1, G2); Apple's files escape quotes and
    line breaks with a backslash and end lines with LF (asm.md §1.1).
    """

    empty: str
    quote: str
    line_ends: str

    @staticmethod
    def of(escape_char: str | None) -> Dialect:
        return _APPLE if escape_char else _RFC4180


_RFC4180 = Dialect(
    empty="write the header row; a OneRoster file without data is left out and marked 'absent' in manifest.csv",
    quote='enclose the value in double quotes and double each quote inside it: "O""Brien" (RFC 4180, '
          'oneroster.md §2 G2)',
    line_ends="save the file with LF or CRLF line ends",
)
_APPLE = Dialect(
    empty="write the header row of Apple's template: every upload holds all six files, each with its header "
          "(asm.md §1.1)",
    quote='enclose the value in double quotes and escape each quote inside it with a backslash: "O\\"Brien" '
          "(asm.md §1.1)",
    line_ends="save the file with UNIX (LF) line ends (asm.md §1.1)",
)


def _no_lines() -> Positions:
    return np.zeros(0, dtype=np.int64)


@dataclass
class LoadedTable:
    """One CSV file as read: the frame (``None`` if unreadable) and what was found.

    ``header`` is the header row as written; a name it repeats is read from its first
    column only and listed in ``repeated`` (rules leave such a column alone: which copy
    is meant is the district's to say). ``lines`` maps row positions to file lines when
    they differ from position + 2 (values spanning lines, blank lines, malformed rows left
    out), else ``None``. ``malformed`` holds the line of every data row that is not in the
    frame because it could not be read as a row (wrong number of values, a quote left open).
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
    malformed: Positions = field(default_factory=_no_lines)
    repeated: frozenset[str] = frozenset()


@dataclass
class ReadTable(LoadedTable):
    """A :class:`LoadedTable` whose frame is there: what the validators check."""

    frame: pd.DataFrame

    @classmethod
    def of(cls, loaded: LoadedTable) -> ReadTable | None:
        """``loaded`` as a :class:`ReadTable` (sharing its frame), or ``None`` when it was unreadable."""
        if loaded.frame is None:
            return None
        return cls(**{f.name: getattr(loaded, f.name) for f in fields(LoadedTable)})


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


@dataclass
class _Shared:
    tables: dict[_ShareKey, Future[LoadedTable]] = field(default_factory=dict)
    last_readers: bool = False  # set by hand_over_loaded_tables()


_shared: _Shared | None = None
_shared_lock = threading.Lock()


@contextmanager
def sharing_loaded_tables() -> Iterator[None]:
    """Within this block, loading the same unchanged file with the same options parses it once.

    A run validates its upload and converts it: both read the same files (validation
    from several threads). Whoever asks first parses; a concurrent reader of the same
    file waits for that parse instead of starting its own. Callers must treat a
    :class:`LoadedTable`'s frame as read-only (validators only read; the converter
    copies before it changes anything).
    """
    global _shared
    previous, _shared = _shared, _Shared()
    try:
        yield
    finally:
        _shared = previous


def hand_over_loaded_tables() -> None:
    """From now on in this :func:`sharing_loaded_tables` block, whoever loads a table already
    parsed takes it: the block forgets it. For the last reader (the converter), so that
    the columns and tables it does not keep are freed as soon as it lets go of them,
    not only when the block ends. A table loaded again after that is parsed again.
    """
    if _shared is not None:
        _shared.last_readers = True


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
        if shared.last_readers:
            taken = shared.tables.pop(key, None)
            if taken is None:
                return load()
            pending, first = taken, False
        else:
            found = shared.tables.get(key)
            first = found is None
            pending = shared.tables[key] = Future() if found is None else found
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
    dialect = Dialect.of(escape_char)
    if _BLANK.match(raw):
        return LoadedTable(name, None, issues=[issue("csv.empty_file", file=name, advice=dialect.empty)])
    decoded = decode(raw, name, encoding_policy)
    issues = list(decoded.issues)
    data = decoded.data
    if data is None:
        return LoadedTable(name, None, issues=issues, encoding=decoded.encoding)
    if _BLANK.match(data):
        issues.append(issue("csv.empty_file", file=name, advice=dialect.empty))
        return LoadedTable(name, None, issues=issues, encoding=decoded.encoding)
    delimiter = sniff_delimiter(data)
    if delimiter not in allowed_delimiters:
        issues.append(issue("text.delimiter", file=name, line=1, value=DELIMITER_NAMES[delimiter]))
    header, header_end = _parse_header(data, delimiter)
    names, repeated = _column_names(header)
    if len(data) - header_end < 65536 and not data[header_end:].strip():
        _header_issues(header, name, len(header), issues)
        keep = _first_copies(header, names)
        frame = pd.DataFrame({n: pd.Series([], dtype=pd.StringDtype("pyarrow", na_value=np.nan)) for n in keep})
        frame.columns = keep
        return LoadedTable(name, frame, header, issues, None, delimiter, decoded.encoding,
                           repeated=frozenset(repeated))
    try:
        rows = _Rows(data, header, names, delimiter, escape_char, header_end).read()
    except MemoryError:
        raise  # the worker's memory limit, not the file's fault (pyarrow.ArrowMemoryError is one)
    except (pa.ArrowException, ValueError, OverflowError) as exc:
        issues.append(issue("csv.parse_error", file=name, reason=_short(str(exc))))
        return LoadedTable(name, None, header, issues, None, delimiter, decoded.encoding)
    _header_issues(header, name, rows.width, issues)
    hidden: dict[str, int] = {}
    rows.report(name, dialect, issues, hidden)
    frame = rows.frame()
    broken, broken_total = _line_breaks(frame) if rows.values_hold_line_ends else ([], 0)
    if broken_total > len(broken):
        hidden["csv.line_break_in_field"] = broken_total - len(broken)
    lines = rows.lines
    for col, pos, value in broken:
        line = int(lines[pos]) if lines is not None else pos + 2
        issues.append(issue("csv.line_break_in_field", file=name, line=line, column=col, value=value))
    return LoadedTable(name, frame, header, issues, lines, delimiter, decoded.encoding, hidden,
                       rows.malformed, frozenset(repeated))


def read_header(path: Path) -> list[str]:
    """The header row of a CSV file, each name trimmed (read up to its line end, at most 16 MiB).

    For recognising a file, not for checking it: decoding problems are not reported
    (undecodable bytes become U+FFFD) and nothing raises; an unreadable file has no header.
    """
    head = b""
    try:
        with open(path, "rb") as fh:
            while len(head) < _HEADER_MAX:
                block = fh.read(_HEADER_BLOCK)
                head += block
                if not block or b"\n" in block or b"\r" in block:
                    break
    except OSError:
        return []
    data = decode(head, path.name).data or head
    header, _ = _parse_header(data, sniff_delimiter(data))
    return [name.strip() for name in header]


@dataclass
class _Refused:
    """The rows pyarrow refused in one parse (wrong number of values)."""

    count: int = 0
    widths: set[int] = field(default_factory=set)
    #: record numbers (the header is record 1; blank lines do not count), known when parsed single-threaded
    numbers: list[int] = field(default_factory=list)
    #: (record number, values expected, values found) of the first few
    shown: list[tuple[int | None, int, int]] = field(default_factory=list)

    def __call__(self, row: pacsv.InvalidRow) -> str:
        self.count += 1
        self.widths.add(row.actual_columns)
        if row.number is not None:
            self.numbers.append(row.number)
        if len(self.shown) < _MAX_LOCATED_BAD_ROWS:
            self.shown.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"


class _Rows:
    """The data rows of one file: pyarrow's parse, checked against the bytes' structure.

    The fast path is one multi-threaded parse. Only when the bytes hold a quote after the
    header, a carriage return alone, or rows that do not map one to one onto lines (blank
    lines, values spanning lines, refused rows) does :func:`~.structure.scan` judge the
    quotes and find where each record starts; refused rows are then numbered by a second,
    single-threaded parse (only pyarrow's serial reader numbers them).
    """

    def __init__(self, data: bytes, header: list[str], names: list[str], delimiter: str,
                 escape_char: str | None, header_end: int) -> None:
        self.data, self.header, self.names = data, header, names
        self.delimiter, self.escape_char, self.header_end = delimiter, escape_char, header_end
        self.width = len(names)  # the header's columns, less trailing separators when every row lacks them
        self.skipped = set(names) - set(_first_copies(header, names))  # second copies of repeated names
        self.table: pa.Table | None = None
        self.refused = _Refused()
        self.structure: Structure | None = None
        self.lines: Positions | None = None
        self.malformed: Positions = _no_lines()
        self.values_hold_line_ends = False
        self.swallowed: int | None = None  # the record (0-based, header 0) a quote left open swallowed
        self.swallowed_refused = False  # ... and pyarrow refused it
        self.width_fix: tuple[str, int] | None = None  # (code, separators) when a width problem was read around
        self.all_refused: tuple[int, int] | None = None  # (expected, actual) when nothing explained it

    def parse(self, names: list[str], newlines_in_values: bool, threads: bool) -> tuple[pa.Table, _Refused]:
        refused = _Refused()
        keep = [n for n in names if n not in self.skipped]
        table = pacsv.read_csv(
            pa.BufferReader(self.data),  # zero-copy blocks (a Python file object would copy each one)
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=threads),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter, newlines_in_values=newlines_in_values, invalid_row_handler=refused,
                escape_char=self.escape_char or False,
            ),
            convert_options=pacsv.ConvertOptions(
                # large_string is what pandas' Arrow strings hold: parsing straight into it saves a
                # cast (every offset rewritten) when the table becomes a frame
                column_types={n: pa.large_string() for n in keep},
                include_columns=keep if len(keep) < len(names) else None,  # (choosing columns costs a little)
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        return table, refused

    def read(self) -> _Rows:
        data = self.data
        physical = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        table, refused = self.parse(self.names, False, True)
        quoted = data.find(b'"', self.header_end) >= 0
        cr_alone = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")
        if not (quoted or cr_alone or refused.count or table.num_rows + 1 != physical):
            self.table = table  # the usual file: one record per line, nothing to judge
            return self
        st = self.structure = scan(data, self.delimiter, self.escape_char, records=True)
        assert st.record_lines is not None
        records = len(st.record_lines)
        self.values_hold_line_ends = st.inner_line_ends > 0
        multiline = self.values_hold_line_ends or table.num_rows + refused.count + 1 != records
        if multiline:  # values span lines: pyarrow must not cut records at line ends
            table, refused = self.parse(self.names, True, True)
        if refused.count:
            table, refused = self.parse(self.names, multiline, False)
            if table.num_rows == 0 and len(refused.widths) == 1 and st.unclosed_quote is None:
                table, refused = self._fix_width(table, refused, multiline)
        self.table, self.refused = table, refused
        self._locate(records)
        return self

    def _fix_width(self, table: pa.Table, refused: _Refused, multiline: bool) -> tuple[pa.Table, _Refused]:
        """Every row was refused, all with one width: the header or every row has separators too many.

        A header ending in separators names empty columns the rows do not have
        (``a,b,`` over ``1,2``); rows ending in separators have empty values the header
        has no column for (``manifest.version,1.0,``). Either is read without them and
        reported once; any other disagreement is one ``csv.header.width_mismatch``.
        """
        (actual,) = refused.widths
        expected = len(self.names)
        if actual < expected and not any(self.header[actual:]):
            fixed, again = self.parse(self.names[:actual], multiline, False)
            if not again.count:
                self.width, self.names = actual, self.names[:actual]
                self.width_fix = ("csv.header.trailing_separator", expected - actual)
                return fixed, again
        elif actual > expected:
            extra = [f"\x00extra{k}" for k in range(actual - expected)]
            fixed, again = self.parse([*self.names, *extra], multiline, False)
            if not again.count and all(not pc.any(pc.not_equal(fixed[e], "")).as_py() for e in extra):
                self.width_fix = ("csv.trailing_separator", actual - expected)
                return fixed.drop_columns(extra), again
        self.all_refused = (expected, actual)
        return table, refused

    def _locate(self, records: int) -> None:
        """The line of every row kept and of every row refused, from the records the scan found."""
        st, table = self.structure, self.table
        assert st is not None and st.record_lines is not None and table is not None
        numbers = np.asarray(self.refused.numbers, dtype=np.int64) - 1  # 0-based records, the header is 0
        kept = np.setdiff1d(np.arange(1, records, dtype=np.int64), numbers, assume_unique=True)
        if len(kept) != table.num_rows or (len(numbers) and int(numbers.max()) >= records):
            # pyarrow and the scan disagree on where records are (not seen in practice): rows keep
            # position + 2, refused rows their record number
            self.malformed = numbers + 1
            return
        lines = st.record_lines[kept]
        if st.unclosed_quote is not None and records > 1:
            self.swallowed = records - 1
            self.swallowed_refused = bool(len(numbers)) and int(numbers.max()) == records - 1
            if len(kept) and kept[-1] == records - 1:  # pyarrow kept it, holding the rest of the file
                self.table = table.slice(0, table.num_rows - 1)
                lines = lines[:-1]
                numbers = np.append(numbers, records - 1)
        self.malformed = np.sort(st.record_lines[numbers]) if len(numbers) else _no_lines()
        if not np.array_equal(lines, np.arange(2, len(lines) + 2)):
            self.lines = lines

    def _line(self, number: int | None) -> int | None:
        """The line on which record ``number`` (pyarrow's: the header is 1) starts."""
        st = self.structure
        if number is None or st is None or st.record_lines is None or not 0 < number <= len(st.record_lines):
            return None
        return int(st.record_lines[number - 1])

    def report(self, name: str, dialect: Dialect, issues: list[Issue], hidden: dict[str, int]) -> None:
        """Add what the rows and the scan found: refused rows, quotes, line ends."""
        st, data, refused = self.structure, self.data, self.refused
        if self.width_fix is not None:
            code, count = self.width_fix
            line = 1 if code == "csv.header.trailing_separator" else self._line(2)
            issues.append(issue(code, file=name, line=line, count=count))
        elif self.all_refused is not None:
            expected, actual = self.all_refused
            issues.append(issue("csv.header.width_mismatch", file=name, line=1, expected=expected, actual=actual))
        elif refused.count:
            located = sorted(((self._line(number), expected, actual) for number, expected, actual in refused.shown
                              if number is None or number - 1 != self.swallowed),
                             key=lambda r: (r[0] is None, r[0] or 0))
            for line, expected, actual in located:
                issues.append(issue("csv.row_width_mismatch", file=name, line=line, expected=expected,
                                    actual=actual))
            unshown_swallowed = self.swallowed_refused and len(located) == len(refused.shown)
            rest = refused.count - len(refused.shown) - int(unshown_swallowed)
            if rest > 0:
                hidden["csv.row_width_mismatch"] = rest
        if st is None:
            return
        for offset in st.bare_quotes[:_MAX_LOCATED_BAD_ROWS]:
            column, value = self._field(offset)
            issues.append(issue("csv.bare_quote", file=name, line=line_of(data, offset), column=column, value=value,
                                advice=dialect.quote))
        if st.bare_quote_count > _MAX_LOCATED_BAD_ROWS:
            hidden["csv.bare_quote"] = st.bare_quote_count - _MAX_LOCATED_BAD_ROWS
        if st.unclosed_quote is not None:
            at = line_of(data, st.unclosed_quote)
            last = line_of(data, len(data)) - (1 if data.endswith((b"\n", b"\r")) else 0)
            column, value = self._field(st.unclosed_quote)
            issues.append(issue("csv.unterminated_quote", file=name, line=at, column=column, value=value,
                                lines=last - at + 1, advice=dialect.quote))
        if st.cr_line_ends:
            issues.append(issue("csv.cr_line_ends", file=name, count=st.cr_line_ends, advice=dialect.line_ends))

    def _field(self, offset: int) -> tuple[str | None, str]:
        """The column and raw text of the field holding byte ``offset``."""
        position, raw = field_at(self.data, offset, self.delimiter)
        return (self.header[position] if position < len(self.header) else None), raw

    def frame(self) -> pd.DataFrame:
        """The rows as a frame of pandas Arrow strings; the parsed table is let go.

        A blank column of a big file becomes slices of one shared array (:func:`_empty_strings`).
        """
        assert self.table is not None
        columns, names = list(self.table.columns), self.table.column_names
        self.table = None
        for i, column in enumerate(columns):
            if _all_empty(column):
                columns[i] = _empty_strings(len(column))
        frame: pd.DataFrame = pa.table(columns, names=names).to_pandas(types_mapper=_string_mapper)
        frame.columns = names
        return frame


_EMPTY_CHUNK = 1 << 20


@functools.cache
def _empty_chunk() -> pa.Array:
    """``_EMPTY_CHUNK`` empty strings (large_string, offsets all zero), shared by every blank column."""
    zeros = pa.py_buffer(np.zeros(_EMPTY_CHUNK + 1, dtype=np.int64))
    return pa.Array.from_buffers(pa.large_string(), _EMPTY_CHUNK, [None, zeros, pa.py_buffer(b"")])


def _empty_strings(n: int) -> pa.ChunkedArray:
    """``n`` empty strings as slices of :func:`_empty_chunk`.

    Bulk files leave whole columns blank (status, dates, phone, ...); parsed, each still
    holds 8 bytes of offsets per row (about 56 MiB for a 7-million-row enrolments column),
    all zero. Slices of one shared array say the same for no memory at all.
    """
    chunk = _empty_chunk()
    return pa.chunked_array([chunk.slice(0, min(_EMPTY_CHUNK, n - start)) for start in range(0, n, _EMPTY_CHUNK)]
                            or [chunk.slice(0, 0)], type=pa.large_string())


def _all_empty(column: pa.ChunkedArray) -> bool:
    """Whether a parsed large_string column holds only empty strings (and no nulls)."""
    if column.type != pa.large_string() or column.null_count or len(column) < _EMPTY_CHUNK // 16:
        return False
    for chunk in column.chunks:
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
        if offsets[chunk.offset] != offsets[chunk.offset + len(chunk)]:
            return False
    return True


def _string_mapper(dtype: pa.DataType) -> pd.StringDtype[Literal["pyarrow"]] | None:
    return pd.StringDtype("pyarrow", na_value=np.nan) if dtype in (pa.string(), pa.large_string()) else None


def _parse_header(data: bytes, delimiter: str) -> tuple[list[str], int]:
    """The header row's names as written, and the offset of its line end (however long the row)."""
    ends = [e for e in (data.find(b"\n"), data.find(b"\r")) if e >= 0]
    end = min(ends) if ends else len(data)
    line = data[:end].decode("utf-8", "replace")
    try:
        header = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        header = line.split(delimiter)
    return header or [""], end


def _column_names(header: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """Unique names to parse with (``Unnamed: N`` for an empty name, ``name.N`` for a repeat)
    and the repeated names with their positions (1-based)."""
    names: list[str] = []
    seen: dict[str, list[int]] = {}
    for position, col in enumerate(header, start=1):
        if col == "":
            names.append(f"Unnamed: {position - 1}")
            continue
        at = seen.setdefault(col, [])
        at.append(position)
        names.append(col if len(at) == 1 else f"{col}.{len(at) - 1}")
    return names, {col: at for col, at in seen.items() if len(at) > 1}


def _first_copies(header: list[str], names: list[str]) -> list[str]:
    """The names to read: every column except the second and later copies of a repeated name."""
    seen: set[str] = set()
    keep = []
    for col, unique in zip(header, names):
        if col != "" and col in seen:
            continue
        seen.add(col)
        keep.append(unique)
    return keep


def _header_issues(header: list[str], name: str, width: int, issues: list[Issue]) -> None:
    """Empty and repeated names among the first ``width`` (the rest were trailing separators)."""
    for position, col in enumerate(header[:width], start=1):
        if col == "":
            issues.append(issue("csv.header.empty_column", file=name, line=1, position=position))
    for col, at in _column_names(header[:width])[1].items():
        issues.append(issue("csv.header.duplicate_column", file=name, line=1, column=col, value=col, count=len(at),
                            positions=", ".join(map(str, at))))


def _line_breaks(frame: pd.DataFrame) -> tuple[list[tuple[str, int, str]], int]:
    """The first few cells holding a line break (column, row position, value) and how many in all."""
    found: list[tuple[str, int, str]] = []
    total = 0
    for col in frame.columns:
        s = frame[col]
        has = s.str.contains("\n", regex=False) | s.str.contains("\r", regex=False)
        if not has.any():
            continue
        total += int(has.sum())
        for pos in np.flatnonzero(has.to_numpy(dtype=bool, na_value=False))[:_MAX_LOCATED_BAD_ROWS].tolist():
            found.append((col, pos, str(s.iat[pos])))
    found.sort(key=lambda f: f[1])
    return found[:_MAX_LOCATED_BAD_ROWS], total


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _frame_or_raise(loaded: LoadedTable) -> pd.DataFrame:
    if loaded.frame is None:
        reasons = "; ".join(i.message for i in loaded.issues if i.severity == "error") or "unreadable"
        raise ValueError(f"{loaded.name}: {reasons}")
    return loaded.frame

