"""OneRoster 1.1/1.2 (or ASM) CSV → the six Apple School Manager files.

:func:`convert_dir` reads a folder of CSVs and returns a :class:`Conversion`:
the six ASM tables, every dropped source row counted by reason, issues, and
per-row lineage (the source file and line behind each output row). It never
raises on bad data: impossible input (no users.csv, a missing structural column)
becomes an ``error`` issue and empty tables, so callers check ``conversion.ok``.

The field mapping is asm.md §3.3; role and filter decisions are documented in
docs/mapping.md. Every step is column-wise (masks, merges, groupby); the only
Python loops run over config rules, columns or distinct role values, never rows.

Accounting invariant, per source file: input rows == rows used in the output +
rows reported as dropped (``Conversion.counts[file].balanced``). For
enrollments.csv "used" means a rosters.csv row or an instructor slot; for
roles.csv (1.2) a location of an output person.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.asmwrite import write_tables_zip
from rostergate.formats.csvio import ASM_ESCAPE, load_table
from rostergate.formats.issues import Issue
from rostergate.formats.mapping import (
    ASM_HEADERS, ColumnRule, DateFormat, Lower, Mapping, RegexSub, Template, Trim, Upper,
)

SOURCE_FORMATS = ("oneroster-1.1", "oneroster-1.2", "asm")
MAX_INSTRUCTORS = 15  # asm.md §1.5: instructor_id + _2 … _15
MAX_LOCATIONS = 999  # asm.md §1.2: location_id + up to 998 more

#: Why a row was left out: reason → message (the report shows both).
REASONS: dict[str, str] = {
    "duplicate_id": "repeats a sourcedId already used in this file (the first row is kept)",
    "tobedeleted": "has status=tobedeleted",
    "disabled": "has enabledUser=false",
    "outside_dates": "is outside its beginDate/endDate on the run date (endDate exclusive)",
    "filter_school": "belongs to a school excluded by the mapping filters",
    "filter_role": "has a role excluded by the mapping filters",
    "filter_grade": "has a grade excluded by the mapping filters",
    "location_missing": "refers to no org that is in the output (missing, deleted or empty reference)",
    "no_role": "has no usable roles.csv row",
    "course_missing": "refers to a course that is not in the output",
    "class_missing": "refers to a class that is not in the output",
    "user_missing": "refers to a user who is not in the output",
    "user_not_student": "enrols as student a user who is not in students.csv",
    "user_not_staff": "enrols as instructor a user who is not in staff.csv",
    "enrollment_role": "has an enrolment role that is neither student nor one of the mapping's instructor_roles",
    "duplicate_pair": "repeats the same user in the same class (the first row is kept)",
    "instructor_limit": "would be instructor number 16 or more (ASM allows 15 per class)",
    "other_role": "is a role of the person in a different ASM file than their primary role",
    "duplicate_org": "repeats an org already given to this person",
    "unreferenced": "is not referenced by any person, course or class in the output",
}


def _role_reason(role: str) -> str:
    return f"role_{role}" if re.fullmatch(r"[A-Za-z]+", role or "") else "role_other"


# --- result types -----------------------------------------------------------

@dataclass(frozen=True)
class Drop:
    """``count`` rows of ``file`` left out for ``reason`` (a key of :data:`REASONS` or ``role_*``)."""

    file: str
    reason: str
    count: int
    message: str


@dataclass
class EntityCount:
    """Rows read from one source file, rows used, and rows dropped by reason."""

    input: int = 0
    output: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.input == self.output + sum(self.dropped.values())


@dataclass
class Conversion:
    """Result of :func:`convert_dir`.

    ``tables`` maps each of the six ASM file names to a frame of strings with the
    exact header; ``lineage`` maps the same names to frames (``source_file``,
    ``source_line``) aligned row by row with ``tables`` (line 1 is the header);
    ``dropped_rows`` lists every dropped row (``file``, ``line``, ``sourcedId``,
    ``reason``); ``counts`` is keyed by source file name.
    """

    source_format: str
    tables: dict[str, pd.DataFrame]
    drops: list[Drop] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, EntityCount] = field(default_factory=dict)
    lineage: dict[str, pd.DataFrame] = field(default_factory=dict)
    dropped_rows: pd.DataFrame = field(default_factory=lambda: _empty_dropped())

    @property
    def ok(self) -> bool:
        """False when an error made the conversion impossible (the tables are then empty)."""
        return not any(i.severity == "error" for i in self.issues)

    @property
    def output_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in sorted(self.tables.items())}


def _empty_dropped() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in ("file", "sourcedId", "reason")}
                        | {"line": pd.Series(dtype="int64")})[["file", "line", "sourcedId", "reason"]]


def _empty_tables() -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame({c: pd.Series(dtype="str") for c in header})
            for name, header in ASM_HEADERS.items()}


class _Fatal(Exception):
    """Input the converter cannot work with; carries the error issue."""

    def __init__(self, issue: Issue):
        super().__init__(issue.message)
        self.issue = issue


class _Ledger:
    """Counts input rows and records every dropped row with its reason."""

    def __init__(self) -> None:
        self.counts: dict[str, EntityCount] = {}
        self.parts: list[pd.DataFrame] = []
        self.issues: list[Issue] = []

    def take(self, file: str, frame: pd.DataFrame) -> None:
        self.counts[file] = EntityCount(input=len(frame))

    def drop(self, frame: pd.DataFrame, mask: pd.Series | np.ndarray, file: str, reason: str) -> pd.DataFrame:
        """Record ``frame[mask]`` as dropped for ``reason``; return the rest."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self._record(frame, mask, file, reason)
            return _select(frame, ~mask)
        return frame

    def drop_where(self, frame: pd.DataFrame, alive: np.ndarray, mask: pd.Series | np.ndarray, file: str,
                   reason: str) -> np.ndarray:
        """:meth:`drop` without copying ``frame``: rows stay, ``alive`` marks those not yet dropped.

        Records the rows that are alive and in ``mask``; returns the new ``alive``.
        For the biggest file, where filtering a wide frame once per reason costs more
        than the checks themselves.
        """
        hit = alive & np.asarray(mask, dtype=bool)
        if hit.any():
            self._record(frame, hit, file, reason)
            return alive & ~hit
        return alive

    def _record(self, frame: pd.DataFrame, mask: np.ndarray, file: str, reason: str) -> None:
        gone = _select(frame[["_line", "sourcedId"]], mask)
        self.parts.append(pd.DataFrame({
            "file": file, "line": gone["_line"].to_numpy(), "sourcedId": gone["sourcedId"].to_numpy(), "reason": reason,
        }))
        dropped = self.counts[file].dropped
        dropped[reason] = dropped.get(reason, 0) + int(mask.sum())

    def used(self, file: str, count: int) -> None:
        self.counts[file].output += count

    def dropped_rows(self) -> pd.DataFrame:
        if not self.parts:
            return _empty_dropped()
        frame = pd.concat(self.parts, ignore_index=True)
        frame["file"] = frame["file"].astype("str")
        frame["reason"] = frame["reason"].astype("str")
        frame["sourcedId"] = frame["sourcedId"].astype("str")
        return frame.sort_values(["file", "line"], kind="stable", ignore_index=True)

    def drops(self) -> list[Drop]:
        out = []
        for file in sorted(self.counts):
            for reason, count in sorted(self.counts[file].dropped.items()):
                out.append(Drop(file, reason, count, _reason_message(reason)))
        return out


def _reason_message(reason: str) -> str:
    if reason.startswith("role_"):
        role = reason[5:]
        return (f"has role {role}, which the mapping does not send to ASM" if role != "other"
                else "has a role the mapping does not send to ASM")
    return REASONS.get(reason, reason)


# --- public API -------------------------------------------------------------

def convert_dir(src_dir: Path, source_format: str, mapping: Mapping | None = None,
                as_of: dt.date | None = None) -> Conversion:
    """Convert the CSVs in ``src_dir`` (or its only subfolder) to the six ASM tables.

    ``source_format`` is ``"oneroster-1.1"``, ``"oneroster-1.2"`` or ``"asm"``
    (plain ``"oneroster"``: 1.2 when roles.csv is present, else 1.1);
    ``as_of`` (default: today) decides which enrolments/roles are current.
    ASM input is normalised (template column order, allowed extra columns) and
    re-emitted without filtering; the mapping does not apply to it.
    """
    src_dir = Path(src_dir)
    if source_format == "oneroster":
        source_format = _oneroster_version(src_dir)
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f"source_format must be one of {SOURCE_FORMATS}, got {source_format!r}")
    mapping = mapping or Mapping()
    as_of = as_of or dt.date.today()
    ledger = _Ledger()
    try:
        if source_format == "asm":
            tables, lineage = _convert_asm(src_dir, ledger)
        else:
            tables, lineage = _OneRoster(src_dir, source_format, mapping, as_of, ledger).run()
            tables = _apply_prefix(tables, mapping.id_prefix)
    except _Fatal as fatal:
        return Conversion(source_format=source_format, tables=_empty_tables(),
                          issues=[*ledger.issues, fatal.issue],
                          lineage={n: _lineage("", pd.Series(dtype="int64")) for n in ASM_HEADERS})
    conversion = Conversion(
        source_format=source_format, tables=tables, drops=ledger.drops(), counts=ledger.counts,
        lineage=lineage, dropped_rows=ledger.dropped_rows(),
    )
    conversion.issues = ledger.issues + _drop_issues(conversion.drops, conversion.dropped_rows)
    return conversion


def _drop_issues(drops: list[Drop], rows: pd.DataFrame) -> list[Issue]:
    """One warning per (file, reason), located at its first dropped row."""
    first = rows.drop_duplicates(["file", "reason"]).set_index(["file", "reason"])
    issues = []
    for d in drops:
        line, sourced_id = first.loc[(d.file, d.reason), ["line", "sourcedId"]]
        more = f"; {d.count - 1} more row(s) for the same reason" if d.count > 1 else ""
        issues.append(Issue("warning", f"convert.dropped.{d.reason}", f"left out: {d.message}{more}",
                            file=d.file, line=int(line), column="sourcedId", value=str(sourced_id)))
    return issues


def write_asm_zip(conversion: Conversion, out_path: Path) -> None:
    """Write the six tables as one deterministic ZIP (see formats/asmwrite.py)."""
    if not conversion.ok:
        raise ValueError("refusing to write a failed conversion: " +
                         "; ".join(i.message for i in conversion.issues if i.severity == "error"))
    write_tables_zip(conversion.tables, out_path)


def conversion_summary(conversion: Conversion) -> str:
    """Human text for the tenant's report: counts per file and every drop reason."""
    lines = [f"Conversion from {conversion.source_format} to Apple School Manager"]
    errors = [i for i in conversion.issues if i.severity == "error"]
    for issue in errors:
        lines.append(f"  ERROR {issue.to_text()}")
    if errors:
        return "\n".join(lines) + "\n"
    lines.append("Output rows:")
    for name, count in conversion.output_counts.items():
        lines.append(f"  {name:<15} {count:>9}")
    lines.append("Source rows (read = used + left out):")
    first = conversion.dropped_rows.groupby(["file", "reason"], sort=False).head(3)  # lines to look at
    examples = {key: [str(v) for v in group["line"]] for key, group in first.groupby(["file", "reason"])}
    for file, c in sorted(conversion.counts.items()):
        lines.append(f"  {file:<20} {c.input:>9} = {c.output:>9} + {sum(c.dropped.values()):>9}")
        for reason, count in sorted(c.dropped.items()):
            at = examples.get((file, reason), [])
            where = f" ({'line' if count == 1 else 'lines'} {', '.join(at)}{', …' if count > 3 else ''})" if at else ""
            lines.append(f"      {count:>9}  {reason}: {_reason_message(reason)}{where}")
    others = [i for i in conversion.issues if not i.code.startswith("convert.dropped.")]
    if others:
        lines.append("Notes:")
        lines.extend(f"  {i.severity}: {i.to_text()}" for i in others)
    return "\n".join(lines) + "\n"


def render_preview(src_dir: Path, source_format: str, mapping: Mapping | None, n: int,
                   as_of: dt.date | None = None) -> str:
    """The first ``n`` records of each output file beside their source rows, as plain text.

    For every record: each ASM column, the rule that fills it, and the mapped
    value, after the source ``file:line`` and its values (SchoolMint's
    "mapped value" preview, peers.md §1).
    """
    src_dir = Path(src_dir)
    conversion = convert_dir(src_dir, source_format, mapping, as_of)
    mapping = mapping or Mapping()
    if not conversion.ok:
        return conversion_summary(conversion)
    sources: dict[str, tuple[pd.DataFrame, pd.Series]] = {}
    out: list[str] = []
    for name in sorted(conversion.tables):
        table, lineage = conversion.tables[name], conversion.lineage[name]
        out.append(f"== {name}: {len(table)} row(s), showing {min(n, len(table))}")
        rules = _describe_rules(name, source_format, mapping, list(table.columns))
        for pos in range(min(n, len(table))):
            src_file = lineage["source_file"].iat[pos]
            src_line = int(lineage["source_line"].iat[pos])
            if src_file not in sources:
                sources[src_file] = _read_source(src_dir, src_file)
            source, positions = sources[src_file]
            row = source.iloc[int(positions[src_line])] if src_line in positions.index else None
            out.append(f"-- record {pos + 1} <- {src_file}:{src_line}")
            if row is not None:
                shown = [f"{k}={v!r}" for k, v in row.items() if v != "" and not str(k).startswith("_")]
                out.append("   source: " + ", ".join(shown))
            width = max(len(c) for c in table.columns)
            for column in table.columns:
                out.append(f"   {column:<{width}}  {rules.get(column, ''):<40}  {table[column].iat[pos]!r}")
        out.append("")
    out.append(conversion_summary(conversion))
    return "\n".join(out)


# --- helpers ------------------------------------------------------------------

def _find(src_dir: Path, name: str) -> Path | None:
    """``name`` in ``src_dir`` (case-insensitively), else in its single subfolder."""
    candidates = [src_dir]
    subdirs = [p for p in sorted(src_dir.iterdir()) if p.is_dir() and not p.name.startswith(("__MACOSX", "."))] \
        if src_dir.is_dir() else []
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for folder in candidates:
        exact = folder / name
        if exact.is_file():
            return exact
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.name.lower() == name.lower():
                    return path
    return None


def _oneroster_version(src_dir: Path) -> str:
    return "oneroster-1.2" if _find(src_dir, "roles.csv") is not None else "oneroster-1.1"


def _read_lines(path: Path, name: str, escape_char: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A file's frame (all strings) and the file line of each row (header = line 1).

    Lines come from csvio's loader, which knows when quoted values span lines; the
    issues it finds (encoding, bad rows) are the validator's to report, not ours.
    """
    loaded = load_table(path, name, escape_char=escape_char)
    if loaded.frame is None:
        reasons = "; ".join(i.message for i in loaded.issues if i.severity == "error") or "unreadable"
        raise _Fatal(Issue("error", "convert.unreadable", f"cannot read {name}: {reasons}", file=name))
    frame = loaded.frame.astype("str")
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = loaded.lines if loaded.lines is not None else np.arange(2, len(frame) + 2)
    return frame, np.asarray(lines, dtype="int64")


def _read_source(src_dir: Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """A source file and a line → row position index (for the preview)."""
    path = _find(src_dir, name)
    if path is None:
        return pd.DataFrame(), pd.Series(dtype="int64")
    frame, lines = _read_lines(path, name)
    return frame, pd.Series(np.arange(len(frame)), index=lines)


def _load(src_dir: Path, name: str, required: tuple[str, ...], ledger: _Ledger,
          optional_file: bool = False) -> pd.DataFrame | None:
    """Read ``name`` with a ``_line`` column; a missing file/column is fatal unless optional."""
    path = _find(src_dir, name)
    if path is None:
        if optional_file:
            ledger.issues.append(Issue("warning", "convert.missing_file",
                                       f"{name} is not in the upload; its ASM file stays empty", file=name))
            return None
        raise _Fatal(Issue("error", "convert.missing_file",
                           f"{name} is required for the conversion; add it to the ZIP", file=name))
    frame, lines = _read_lines(path, name)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _Fatal(Issue("error", "convert.missing_column",
                           f"{name} has no {missing[0]} column, which the conversion needs",
                           file=name, line=1, column=missing[0]))
    frame["_line"] = lines
    ledger.take(name, frame)
    return frame


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as strings, or all-empty when the file lacks it."""
    if name in frame.columns:
        return frame[name]
    return pd.Series("", index=frame.index, dtype="str")


def _select(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]`` (index kept) through Arrow's filter kernel.

    pandas' boolean indexing of Arrow-backed string columns goes through a generic
    take that is several times slower than ``pyarrow.compute.filter``; on the
    enrolments file that difference is most of the conversion time.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask)
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):  # one block: a zero-copy slice
        return frame.iloc[int(rows[0]): int(rows[-1]) + 1]
    keep = pa.array(mask)
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
            columns[name] = pd.Series(pc.filter(pa.array(column), keep), dtype=column.dtype, copy=False)
        else:
            columns[name] = pd.Series(column.to_numpy()[mask], dtype=column.dtype, copy=False)
    selected = pd.DataFrame(columns, copy=False)
    selected.index = frame.index[mask]
    return selected


def _lineage(file: str, lines: pd.Series) -> pd.DataFrame:
    """(source_file, source_line) per output row; the constant file name costs one category."""
    return pd.DataFrame({
        "source_file": pd.Categorical.from_codes(np.zeros(len(lines), dtype=np.int8), categories=[file]),
        "source_line": np.asarray(lines, dtype="int64"),
    })


def _arrow(values) -> pa.Array | pa.ChunkedArray:
    """Strings as an Arrow array (zero-copy for pandas' pyarrow-backed ``str`` columns)."""
    if isinstance(values, (pd.Series, pd.Index)):
        return pa.array(pd.Series(values, copy=False).astype("str"))
    return pa.array(sorted(values), type=pa.large_string())


def _isin(values: pd.Series, pool) -> pd.Series:
    """``values.isin(pool)`` through Arrow's hash kernel.

    pandas 3's Arrow-string ``isin`` turns the pool into a Python list first,
    which costs seconds for a million-id pool.
    """
    array, pool_array = _arrow(values), _arrow(pool)
    if len(pool_array) == 0:
        return pd.Series(False, index=values.index)
    mask = pc.is_in(array, value_set=pool_array.cast(array.type))
    return pd.Series(mask.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def _position(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """Each value's position in ``pool`` (int64), -1 where it is not there."""
    if len(pool) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    where = pc.index_in(_arrow(values), value_set=_arrow(pool).cast(pa.large_string()))
    return pc.fill_null(where, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Dense integer codes of a string column (Arrow dictionary encoding) and their count."""
    array = _arrow(values)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _duplicated(*columns: pd.Series) -> np.ndarray:
    """``duplicated(keep="first")`` over one or more aligned string columns.

    One column: Arrow's stable sort plus an adjacent comparison (faster than
    hashing a million unique ids; the first of each run of equal keys is the
    first in file order). Several columns: their dictionary codes combined into
    one int64 key, which pandas hashes quickly.
    """
    n = len(columns[0])
    if n < 2:
        return np.zeros(n, dtype=bool)
    if len(columns) > 1:
        key = np.zeros(n, dtype=np.int64)
        for column in columns:
            codes, size = _codes(column)
            key = key * max(size, 1) + codes  # two columns of < 3e9 distinct values fit in int64
        return pd.Series(key).duplicated(keep="first").to_numpy()
    key = _arrow(columns[0])
    if _strictly_increasing(key):  # common for SIS exports; saves the sort
        return np.zeros(n, dtype=bool)
    order = pc.sort_indices(key)
    ordered = pc.take(key, order)
    same = pc.equal(ordered.slice(1), ordered.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype=bool)
    out[order.to_numpy()[1:][same]] = True
    return out


def _repeated_pairs(alive: np.ndarray, first: np.ndarray, second: np.ndarray, width: int) -> np.ndarray:
    """Rows (among ``alive``) whose (first, second) code pair appeared on an earlier alive row.

    Codes are non-negative ints, ``second`` below ``width``. Exports come in long
    sorted runs (by user, then by class for the teachers, say): a strictly
    increasing key has no repeats at all, and a key made of few runs sorts in
    near-linear time (timsort merges runs), which beats hashing a million pairs;
    a shuffled key is hashed.
    """
    rows = np.flatnonzero(alive)
    out = np.zeros(len(alive), dtype=bool)
    if len(rows) < 2:
        return out
    key = first[rows] * width + second[rows]
    steps = np.diff(key)
    if bool((steps > 0).all()):
        return out
    if np.count_nonzero(steps < 0) < len(key) // 64:
        order = np.argsort(key, kind="stable")  # stable: the first of equal keys is the earliest row
        ordered = key[order]
        out[rows[order[1:][ordered[1:] == ordered[:-1]]]] = True
    else:
        out[rows[pd.Series(key).duplicated(keep="first").to_numpy()]] = True
    return out


def _attach(frame: pd.DataFrame, key: str, wide: pd.DataFrame) -> pd.DataFrame:
    """``frame.merge(wide, left_on=key, right_index=True, how="left")`` for a unique string index."""
    if wide.empty and not len(wide.columns):
        return frame
    pos = _position(frame[key], pd.Series(wide.index, dtype="str"))
    take = pa.array(pos, mask=pos < 0)
    columns = {c: pd.Series(pc.take(_arrow(wide[c]), take), index=frame.index, dtype="str") for c in wide.columns}
    return frame.assign(**columns)


def _strictly_increasing(key: pa.Array | pa.ChunkedArray) -> bool:
    """True when every value is greater than the one before (so sorted and unique)."""
    if len(key) < 2:
        return True
    return bool(pc.all(pc.less(key.slice(0, len(key) - 1), key.slice(1))).as_py())


def _split_first(values: pd.Series) -> pd.Series:
    """First item of a OneRoster comma list, trimmed (``"09, 10"`` → ``"09"``)."""
    parts = pc.split_pattern(_arrow(values), ",", max_splits=1)
    first = pc.utf8_trim_whitespace(pc.list_element(parts, 0))
    return pd.Series(first, index=values.index, dtype="str")


def _explode_list(frame: pd.DataFrame, id_column: str, list_column: str) -> pd.DataFrame:
    """(id, item) rows of a comma-list column in list order, items trimmed, empties removed."""
    parts = pc.split_pattern(_arrow(frame[list_column]), ",")
    items = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parents = pc.list_parent_indices(parts)
    ids = pc.take(_arrow(frame[id_column]), parents)
    keep = pc.not_equal(items, "")
    return pd.DataFrame({
        "id": pd.Series(pc.filter(ids, keep), dtype="str"),
        "item": pd.Series(pc.filter(items, keep), dtype="str"),
    })


def _allowed(values: pd.Series, include: frozenset[str], exclude: frozenset[str]) -> pd.Series:
    mask = pd.Series(True, index=values.index)
    if include:
        mask &= _isin(values, include)
    if exclude:
        mask &= ~_isin(values, exclude)
    return mask


def _wide(pairs: pd.DataFrame, key: str, value: str, base: str, limit: int) -> pd.DataFrame:
    """Pivot ordered (key, value) pairs to ``base``, ``base_2`` … columns, indexed by key.

    The n-th pair of a key (in the pairs' order) fills column n; pairs past ``limit``
    are ignored (callers count them).
    """
    position = pairs.groupby(key, sort=False).cumcount()
    if len(pairs) and int(position.max()) == 0:  # one value per key: no pivot needed
        keys, values = pairs[key].astype("str"), pairs[value].astype("str")
        if not _strictly_increasing(_arrow(keys)):
            order = pc.sort_indices(_arrow(keys)).to_numpy()  # stable, like pivot's sorted index
            keys, values = keys.iloc[order], values.iloc[order]
        index = pd.Index(keys.array, name=key)
        return pd.DataFrame({base: pd.Series(values.array, index=index)})
    pairs = pairs.assign(_pos=position)
    pairs = pairs[pairs["_pos"] < limit]
    wide = pairs.pivot(index=key, columns="_pos", values=value)
    wide.columns = [base if p == 0 else f"{base}_{p + 1}" for p in wide.columns]
    return wide.fillna("").astype("str")


# --- column rules -------------------------------------------------------------

def _base_values(src: pd.DataFrame, rule: ColumnRule, issues: list[Issue], file: str) -> pd.Series:
    if rule.template is not None:
        return _render_template(src, rule.template, issues, file)
    result: pd.Series | None = None
    for source in rule.sources:
        if source not in src.columns:
            _warn_missing_column(issues, file, source)
        values = _col(src, source)
        result = values if result is None else result.where(result != "", values)
    return result if result is not None else pd.Series("", index=src.index, dtype="str")


def _render_template(src: pd.DataFrame, template: Template, issues: list[Issue], file: str) -> pd.Series:
    out = pd.Series("", index=src.index, dtype="str")
    for literal, name in template.parts:
        if literal:
            out = out + literal
        if name is not None:
            if name not in src.columns:
                _warn_missing_column(issues, file, name)
            out = out + _col(src, name)
    return out


def _warn_missing_column(issues: list[Issue], file: str, column: str) -> None:
    issue = Issue("warning", "convert.mapping.missing_column",
                  f"the mapping reads {column}, which {file} does not have; the value stays empty",
                  file=file, column=column)
    if issue not in issues:
        issues.append(issue)


def _apply_steps(values: pd.Series, rule: ColumnRule) -> pd.Series:
    for step in rule.steps:
        if isinstance(step, Lower):
            values = values.str.lower()
        elif isinstance(step, Upper):
            values = values.str.upper()
        elif isinstance(step, Trim):
            values = values.str.strip()
        elif isinstance(step, RegexSub):
            # Python re semantics (the config was checked with re), not pyarrow's RE2.
            values = values.astype(object).str.replace(step.pattern, step.replace, regex=True).astype("str")
        elif isinstance(step, DateFormat):
            parsed = pd.to_datetime(values, format=step.source, errors="coerce")
            formatted = parsed.dt.strftime(step.target)
            values = formatted.where(parsed.notna(), values).astype("str")
    if rule.values is not None:
        mapped = values.map(dict(rule.values))
        values = mapped.fillna(values if rule.default is None else rule.default).astype("str")
    return values


def _fill(src: pd.DataFrame, defaults: dict[str, ColumnRule], overrides: dict[str, ColumnRule],
          optional: dict[str, ColumnRule], issues: list[Issue], file: str) -> dict[str, pd.Series]:
    """Compute every mapped (non-id) column of one ASM file from its aligned source frame."""
    columns: dict[str, pd.Series] = {}
    for column, default in {**defaults, **{k: v for k, v in optional.items() if k in overrides}}.items():
        rule = overrides.get(column)
        if rule is not None and rule.skip:
            columns[column] = pd.Series("", index=src.index, dtype="str")
            continue
        base_rule = rule if rule is not None and (rule.sources or rule.template) else default
        values = _base_values(src, base_rule, issues, file)
        columns[column] = _apply_steps(values, rule) if rule is not None else values
    return columns


def _d(*sources: str) -> ColumnRule:
    return ColumnRule(sources=sources)


#: Default (non-id) column sources, asm.md §3.3. ``_grade`` and ``_password_policy``
#: are derived columns the converter adds to the users frame.
PERSON_DEFAULTS = {
    "person_number": _d("identifier"), "first_name": _d("givenName"), "middle_name": _d("middleName"),
    "last_name": _d("familyName"), "grade_level": _d("_grade"), "email_address": _d("email"),
    "sis_username": _d("username"), "password_policy": _d("_password_policy"),
}
COURSE_DEFAULTS = {"course_number": _d("courseCode"), "course_name": _d("title")}
CLASS_DEFAULTS = {"class_number": _d("classCode")}
CLASS_OPTIONAL = {"class_display_name": _d("title")}  # asm.md §3.3 [Decision/Unverified]: opt-in
LOCATION_DEFAULTS = {"location_name": _d("name")}


def _describe_rules(name: str, source_format: str, mapping: Mapping, columns: list[str]) -> dict[str, str]:
    kind = name[:-4]
    if source_format == "asm":
        return {c: "as uploaded" for c in columns}
    defaults = {"students": PERSON_DEFAULTS, "staff": PERSON_DEFAULTS, "courses": COURSE_DEFAULTS,
                "classes": {**CLASS_DEFAULTS, **CLASS_OPTIONAL}, "locations": LOCATION_DEFAULTS}.get(kind, {})
    overrides = mapping.rules_for(kind)
    structural = {
        "person_id": "sourcedId", "location_id": "org (first)", "course_id": "sourcedId",
        "class_id": "sourcedId", "roster_id": "enrollment sourcedId", "student_id": "userSourcedId",
        "instructor_id": "teacher enrolment 1 (primary first)",
    }
    if kind in ("students", "staff"):
        structural["location_id"] = ("roles.csv org 1 (primaryOrgSourcedId, then roleType=primary)"
                                     if source_format == "oneroster-1.2" else "orgSourcedIds (first)")
    elif kind == "courses":
        structural["location_id"] = "orgSourcedId"
    elif kind == "classes":
        structural["location_id"] = "schoolSourcedId"
        structural["course_id"] = "courseSourcedId"
    elif kind == "rosters":
        structural["class_id"] = "classSourcedId"
    elif kind == "locations":
        structural["location_id"] = "sourcedId"
    special = {"_grade": "grades (first)", "_password_policy": "password_policy rules"}

    def label(rule: ColumnRule) -> str:
        return special.get(rule.sources[0], rule.describe()) if len(rule.sources) == 1 else rule.describe()

    out = {}
    for column in columns:
        base = re.sub(r"_\d+$", "", column)
        if column in overrides:
            rule = overrides[column]
            text = rule.describe()
            if not (rule.sources or rule.template or rule.skip) and column in defaults:
                text = f"{label(defaults[column])} | {text}"
        elif column in defaults:
            text = label(defaults[column])
        elif base != column and base in ("location_id", "instructor_id"):
            number = column.rsplit("_", 1)[1]
            text = f"org {number} of the person" if base == "location_id" else f"teacher enrolment {number}"
        else:
            text = structural.get(column, "")
        if mapping.id_prefix and base in {"person_id", "location_id", "course_id", "class_id",
                                          "roster_id", "student_id", "instructor_id"}:
            text = f"{mapping.id_prefix!r} + {text}"
        out[column] = text
    return out


_ID_COLUMN = re.compile(r"(person_id|location_id|course_id|class_id|instructor_id|roster_id|student_id)(_\d+)?")


def _apply_prefix(tables: dict[str, pd.DataFrame], prefix: str) -> dict[str, pd.DataFrame]:
    """Prefix every non-empty id and reference, in every file, the same way."""
    if not prefix:
        return tables
    out = {}
    for name, frame in tables.items():
        frame = frame.copy()
        for column in frame.columns:
            if _ID_COLUMN.fullmatch(column):
                values = frame[column]
                frame[column] = values.where(values == "", prefix + values)
        out[name] = frame
    return out


# --- OneRoster ----------------------------------------------------------------

_ENROLLMENT_COLUMNS = frozenset({
    "sourcedId", "status", "classSourcedId", "userSourcedId", "role", "primary", "beginDate", "endDate", "_line",
})


class _OneRoster:
    """One OneRoster conversion run (state shared by the steps, all column-wise)."""

    def __init__(self, src_dir: Path, source_format: str, mapping: Mapping, as_of: dt.date,
                 ledger: _Ledger) -> None:
        self.src_dir = src_dir
        self.v12 = source_format == "oneroster-1.2"
        self.mapping = mapping
        self.today = as_of.isoformat()
        self.ledger = ledger
        self.filters = mapping.filters

    # small shared steps
    def _common(self, frame: pd.DataFrame, file: str) -> pd.DataFrame:
        drop = self.ledger.drop
        frame = drop(frame, _duplicated(frame["sourcedId"]), file, "duplicate_id")
        return drop(frame, _col(frame, "status").str.strip().str.lower() == "tobedeleted", file, "tobedeleted")

    def _outside_dates(self, frame: pd.DataFrame) -> pd.Series:
        begin, end = _col(frame, "beginDate").str.strip(), _col(frame, "endDate").str.strip()
        # ISO dates compare correctly as strings; the validator rejects other formats.
        return ((begin != "") & (begin > self.today)) | ((end != "") & (end <= self.today))

    def run(self) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
        ledger = self.ledger
        orgs = _load(self.src_dir, "orgs.csv", ("sourcedId", "name"), ledger)
        user_cols = ("sourcedId",) if self.v12 else ("sourcedId", "orgSourcedIds")
        users = _load(self.src_dir, "users.csv", user_cols, ledger)
        roles = _load(self.src_dir, "roles.csv", ("sourcedId", "userSourcedId", "role", "orgSourcedId"),
                      ledger) if self.v12 else None
        courses = _load(self.src_dir, "courses.csv", ("sourcedId", "orgSourcedId"), ledger, optional_file=True)
        classes = _load(self.src_dir, "classes.csv", ("sourcedId", "courseSourcedId", "schoolSourcedId"),
                        ledger, optional_file=True)
        enrollments = _load(self.src_dir, "enrollments.csv",
                            ("sourcedId", "classSourcedId", "userSourcedId", "role"), ledger, optional_file=True)
        if enrollments is not None:  # the biggest file: carry only what the conversion reads
            enrollments = enrollments[[c for c in enrollments.columns if c in _ENROLLMENT_COLUMNS]]

        orgs = self._common(orgs, "orgs.csv")
        orgs = ledger.drop(orgs, ~_allowed(orgs["sourcedId"], self.filters.include_schools,
                                           self.filters.exclude_schools), "orgs.csv", "filter_school")
        self.available = pd.Index(orgs["sourcedId"])

        people, pairs = self._people_v12(users, roles) if self.v12 else self._people_v11(users)
        students, staff = self._person_tables(people, pairs)
        course_out = self._courses(courses)
        class_src = self._classes(classes, course_out)
        rosters, instructors = self._enrollments(enrollments, class_src, students, staff)
        class_out = self._class_table(class_src, instructors)
        locations = self._locations(orgs, students, staff, course_out, class_out)

        tables, lineage = {}, {}
        for name, (frame, file) in {
            "students.csv": (students, "users.csv"), "staff.csv": (staff, "users.csv"),
            "courses.csv": (course_out, "courses.csv"), "classes.csv": (class_out, "classes.csv"),
            "rosters.csv": (rosters, "enrollments.csv"), "locations.csv": (locations, "orgs.csv"),
        }.items():
            key = frame.columns[0]
            if not _strictly_increasing(_arrow(frame[key])):
                frame = frame.sort_values(key, kind="stable", ignore_index=True)
            else:
                frame = frame.reset_index(drop=True)
            lineage[name] = _lineage(file, frame["_line"])
            tables[name] = frame.drop(columns="_line")
        return tables, lineage

    # people -------------------------------------------------------------------
    def _people_v11(self, users: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Users with ``_role``/``_category``; (id, item=org) pairs in location order."""
        file, drop = "users.csv", self.ledger.drop
        users = self._common(users, file)
        users = drop(users, _col(users, "enabledUser").str.strip().str.lower() == "false", file, "disabled")
        role = _col(users, "role").str.strip()
        users = users.assign(_role=role.where(role != "", "student"))  # Apple A15: blank ⇒ student
        users = self._categorise(users)
        pairs = _explode_list(users, "sourcedId", "orgSourcedIds")
        users, pairs = self._resolve_orgs(users, pairs, file)
        return users, pairs

    def _people_v12(self, users: pd.DataFrame, roles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """1.2: each person's role and orgs come from roles.csv (oneroster.md §9)."""
        ufile, rfile, drop, f = "users.csv", "roles.csv", self.ledger.drop, self.filters
        users = self._common(users, ufile)
        users = drop(users, _col(users, "enabledUser").str.strip().str.lower() == "false", ufile, "disabled")
        roles = self._common(roles, rfile)
        roles = drop(roles, self._outside_dates(roles), rfile, "outside_dates")
        roles = drop(roles, ~_isin(roles["userSourcedId"], users["sourcedId"]), rfile, "user_missing")
        with_roles = _isin(users["sourcedId"], roles["userSourcedId"])
        roles = drop(roles, ~_allowed(roles["orgSourcedId"], f.include_schools, f.exclude_schools),
                     rfile, "filter_school")
        after_filter = _isin(users["sourcedId"], roles["userSourcedId"])
        roles = drop(roles, ~_isin(roles["orgSourcedId"], self.available), rfile, "location_missing")
        remaining = _isin(users["sourcedId"], roles["userSourcedId"])
        # a user left without a role row: the school filter explains it before a missing org does
        users = drop(users, ~remaining & with_roles & ~after_filter, ufile, "filter_school")
        users = drop(users, ~with_roles[users.index], ufile, "no_role")
        users = drop(users, ~remaining[users.index], ufile, "location_missing")
        users = users.reset_index(drop=True)

        # The person's role: a role that goes to ASM first, then one at the user's
        # primaryOrgSourcedId, then roleType=primary, then the lowest roles.csv sourcedId.
        position = _position(roles["userSourcedId"], users["sourcedId"])
        primary_org = _col(users, "primaryOrgSourcedId").to_numpy()[position]
        role = roles["role"].str.strip()
        roles = roles.assign(
            _role=role, _org=roles["orgSourcedId"], _user_pos=position,
            _category=role.map(dict(self.mapping.roles)).fillna("drop").astype("str"),
        )
        roles["_rank"] = (
            (roles["_category"] == "drop").to_numpy(dtype=np.int8) * 4
            + (roles["_org"].to_numpy() != primary_org).astype(np.int8) * 2
            + (_col(roles, "roleType").str.strip() != "primary").to_numpy(dtype=np.int8)
        )
        roles = roles.sort_values(["_user_pos", "_rank", "sourcedId"], kind="stable")
        chosen = roles.drop_duplicates("_user_pos")
        users["_role"] = pd.Series(chosen["_role"].to_numpy(), index=chosen["_user_pos"].to_numpy(), dtype="str")
        users["_category"] = pd.Series(chosen["_category"].to_numpy(), index=chosen["_user_pos"].to_numpy(),
                                       dtype="str")
        users = self._categorise(users, categorised=True)

        # Role rows feed locations only when they are in the person's ASM file.
        category = pd.Series(users["_category"].to_numpy(), index=users.index)  # by position in the full list
        person = category.reindex(roles["_user_pos"].to_numpy()).to_numpy()
        roles = drop(roles, pd.isna(person), rfile, "user_missing")
        person = category.reindex(roles["_user_pos"].to_numpy()).to_numpy()
        roles = drop(roles, roles["_category"].to_numpy() != person, rfile, "other_role")
        roles = drop(roles, _duplicated(roles["userSourcedId"], roles["_org"]), rfile, "duplicate_org")
        self.ledger.used(rfile, len(roles))
        pairs = pd.DataFrame({"id": roles["userSourcedId"].to_numpy(), "item": roles["_org"].to_numpy()})
        return users, pairs

    def _categorise(self, users: pd.DataFrame, categorised: bool = False) -> pd.DataFrame:
        """Drop people by role (mapping.roles), role filter and grade filter; add ``_grade``."""
        file, drop, f = "users.csv", self.ledger.drop, self.filters
        if not categorised:
            users = users.assign(_category=users["_role"].map(dict(self.mapping.roles)).fillna("drop").astype("str"))
        out = users["_category"] == "drop"
        for role in sorted(users.loc[out, "_role"].unique()):  # distinct roles, not rows
            users = drop(users, (users["_category"] == "drop") & (users["_role"] == role), file, _role_reason(role))
        users = drop(users, ~_allowed(users["_role"], f.include_roles, f.exclude_roles), file, "filter_role")
        users = users.assign(_grade=_split_first(_col(users, "grades")))
        grade_ok = _allowed(users["_grade"], f.include_grades, f.exclude_grades)
        users = drop(users, (users["_category"] == "student") & ~grade_ok, file, "filter_grade")
        return users

    def _resolve_orgs(self, users: pd.DataFrame, pairs: pd.DataFrame, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Keep (user, org) pairs whose org is in the output; drop users left with none."""
        f = self.filters
        pairs = _select(pairs, ~_duplicated(pairs["id"], pairs["item"]))
        allowed = _allowed(pairs["item"], f.include_schools, f.exclude_schools)
        ok = allowed & _isin(pairs["item"], self.available)
        kept = _isin(users["sourcedId"], pairs.loc[ok, "id"])
        filtered = (_isin(users["sourcedId"], pairs.loc[~allowed, "id"]) if not allowed.all()
                    else pd.Series(False, index=users.index))
        # a user left without an org: the school filter explains it before a missing org does
        users = self.ledger.drop(users, ~kept & filtered, file, "filter_school")
        users = self.ledger.drop(users, ~kept[users.index], file, "location_missing")
        lost = pairs[~ok & allowed & _isin(pairs["id"], users["sourcedId"])] if not ok.all() else pairs.iloc[:0]
        if len(lost):
            first_id, first_org = lost["id"].iat[0], lost["item"].iat[0]
            line = int(users["_line"].to_numpy()[_position(pd.Series([first_id], dtype="str"), users["sourcedId"])[0]])
            self.ledger.issues.append(Issue(
                "warning", "convert.dropped.location_reference",
                f"names an org that is not in the output (unknown or deleted); the person keeps their other "
                f"locations ({len(lost)} such reference(s) in all)",
                file=file, line=line, column="orgSourcedIds", value=first_org))
        return users, _select(pairs, ok.to_numpy()).reset_index(drop=True)

    def _person_tables(self, people: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        wide = _wide(pairs, "id", "item", "location_id", MAX_LOCATIONS)
        people = _attach(people, "sourcedId", wide)
        people["_password_policy"] = self._password_policy(people)
        tables = []
        for category, name in (("student", "students"), ("staff", "staff")):
            src = _select(people, (people["_category"] == category).to_numpy()).reset_index(drop=True)
            header = ASM_HEADERS[f"{name}.csv"]
            defaults = {c: PERSON_DEFAULTS[c] for c in header if c in PERSON_DEFAULTS}
            values = _fill(src, defaults, self.mapping.rules_for(name), {}, self.ledger.issues, "users.csv")
            frame = pd.DataFrame({"person_id": src["sourcedId"], **values}, index=src.index)
            # location_id always; location_id_2 … only as far as someone in this file uses them
            for column in wide.columns:
                if column == "location_id" or src[column].fillna("").ne("").any():
                    frame[column] = src[column].fillna("").astype("str")
            if "location_id" not in frame:
                frame["location_id"] = pd.Series("", index=src.index, dtype="str")
            frame = frame[[*header, *[c for c in frame.columns if c not in header]]]
            frame["_line"] = src["_line"].to_numpy()
            self.ledger.used("users.csv", len(frame))
            tables.append(frame.astype({c: "str" for c in frame.columns if c != "_line"}))
        return tables[0], tables[1]

    def _password_policy(self, people: pd.DataFrame) -> pd.Series:
        """First matching [[password_policy]] rule by primary location and first grade code."""
        policy = pd.Series("", index=people.index, dtype="str")
        done = pd.Series(False, index=people.index)
        location = people["location_id"].fillna("") if "location_id" in people else policy
        for rule in self.mapping.password_policy:
            match = ~done
            if rule.locations:
                match &= _isin(location, rule.locations)
            if rule.grades:
                match &= _isin(people["_grade"], rule.grades)
            policy = policy.mask(match, rule.policy)
            done |= match
        return policy.where(people["_category"] == "student", "")

    # courses and classes -------------------------------------------------------
    def _courses(self, courses: pd.DataFrame | None) -> pd.DataFrame:
        file, f = "courses.csv", self.filters
        header = ASM_HEADERS[file]
        if courses is None:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in header} | {"_line": pd.Series(dtype="int64")})
        courses = self._common(courses, file)
        org = courses["orgSourcedId"]
        courses = self.ledger.drop(courses, ~_allowed(org, f.include_schools, f.exclude_schools), file, "filter_school")
        courses = self.ledger.drop(courses, ~_isin(courses["orgSourcedId"], self.available),
                                   file, "location_missing")
        courses = courses.reset_index(drop=True)
        values = _fill(courses, COURSE_DEFAULTS, self.mapping.rules_for("courses"), {}, self.ledger.issues, file)
        frame = pd.DataFrame({"course_id": courses["sourcedId"], **values,
                              "location_id": courses["orgSourcedId"]})
        frame["_line"] = courses["_line"]
        self.ledger.used(file, len(frame))
        return frame

    def _classes(self, classes: pd.DataFrame | None, courses: pd.DataFrame) -> pd.DataFrame | None:
        file, f = "classes.csv", self.filters
        if classes is None:
            return None
        classes = self._common(classes, file)
        school = classes["schoolSourcedId"]
        classes = self.ledger.drop(classes, ~_allowed(school, f.include_schools, f.exclude_schools),
                                   file, "filter_school")
        classes = self.ledger.drop(classes, ~_isin(classes["schoolSourcedId"], self.available),
                                   file, "location_missing")
        classes = self.ledger.drop(classes, ~_isin(classes["courseSourcedId"], courses["course_id"]),
                                   file, "course_missing")
        return classes.reset_index(drop=True)

    def _class_table(self, classes: pd.DataFrame | None, instructors: pd.DataFrame) -> pd.DataFrame:
        file = "classes.csv"
        header = list(ASM_HEADERS[file])
        if classes is None:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in header} | {"_line": pd.Series(dtype="int64")})
        overrides = self.mapping.rules_for("classes")
        values = _fill(classes, CLASS_DEFAULTS, overrides, CLASS_OPTIONAL, self.ledger.issues, file)
        frame = pd.DataFrame({"class_id": classes["sourcedId"], "class_number": values.pop("class_number"),
                              "course_id": classes["courseSourcedId"]})
        wide = _wide(instructors, "class", "user", "instructor_id", MAX_INSTRUCTORS)
        slots = _attach(frame[["class_id"]], "class_id", wide)
        extra = [f"instructor_id_{i}" for i in range(4, MAX_INSTRUCTORS + 1) if f"instructor_id_{i}" in wide]
        for column in ["instructor_id", "instructor_id_2", "instructor_id_3", *extra]:
            frame[column] = slots[column].fillna("").astype("str").to_numpy() if column in slots else ""
        frame["location_id"] = classes["schoolSourcedId"]
        # Extra columns go after the template's columns so its header stays a prefix (asm.md §1.5:
        # header-matched, either position works).
        frame = frame[[*header, *extra]]
        for column, series in values.items():
            frame[column] = series
        frame["_line"] = classes["_line"]
        self.ledger.used(file, len(frame))
        return frame.astype({c: "str" for c in frame.columns if c != "_line"})

    # enrollments ---------------------------------------------------------------
    def _enrollments(self, enrollments: pd.DataFrame | None, classes: pd.DataFrame | None,
                     students: pd.DataFrame, staff: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        file = "enrollments.csv"
        roster_empty = pd.DataFrame({c: pd.Series(dtype="str") for c in ASM_HEADERS["rosters.csv"]}
                                    | {"_line": pd.Series(dtype="int64")})
        no_instructors = pd.DataFrame({"class": pd.Series(dtype="str"), "user": pd.Series(dtype="str")})
        if enrollments is None:
            return roster_empty, no_instructors
        # One pass over the full file: every check is a mask over the same rows and the
        # ledger only narrows ``alive``; the frame is filtered once, at the end.
        e, drop = enrollments, self.ledger.drop_where
        alive = np.ones(len(e), dtype=bool)
        alive = drop(e, alive, _duplicated(e["sourcedId"]), file, "duplicate_id")
        alive = drop(e, alive, _col(e, "status").str.strip().str.lower() == "tobedeleted", file, "tobedeleted")
        alive = drop(e, alive, self._outside_dates(e), file, "outside_dates")
        role = e["role"].str.strip()
        is_student = (role == "student").to_numpy(dtype=bool)
        is_instructor = _isin(role, self.mapping.instructor_roles).to_numpy()
        alive = drop(e, alive, ~(is_student | is_instructor), file, "enrollment_role")
        # Positions in the class list and in students+staff (one hash probe each) say
        # whether the references resolve, which file the user is in, and give the
        # dense codes that find repeated (class, user) pairs without hashing strings.
        class_ids = classes["sourcedId"] if classes is not None else pd.Series(dtype="str")
        people = pd.concat([students["person_id"], staff["person_id"]], ignore_index=True)
        class_pos = _position(e["classSourcedId"], class_ids)
        user_pos = _position(e["userSourcedId"], people)
        alive = drop(e, alive, class_pos < 0, file, "class_missing")
        alive = drop(e, alive, user_pos < 0, file, "user_missing")
        in_students = user_pos < len(students)
        alive = drop(e, alive, is_student & ~in_students, file, "user_not_student")
        alive = drop(e, alive, ~is_student & in_students, file, "user_not_staff")
        alive = drop(e, alive, _repeated_pairs(alive, user_pos, class_pos, max(len(class_ids), 1)),
                     file, "duplicate_pair")

        teaching = alive & ~is_student
        teach = _select(e[["sourcedId", "classSourcedId", "userSourcedId"]].assign(primary=_col(e, "primary")),
                        teaching)
        # ASM instructor order (asm.md §3.3): primary teacher first, then by enrolment sourcedId.
        teach["_secondary"] = teach.pop("primary").str.strip().str.lower() != "true"
        teach = teach.sort_values(["classSourcedId", "_secondary", "sourcedId"], kind="stable")
        over = (teach.groupby("classSourcedId", sort=False).cumcount() >= MAX_INSTRUCTORS).to_numpy()
        over_rows = np.zeros(len(e), dtype=bool)
        over_rows[teach.index.to_numpy()[over]] = True
        alive = drop(e, alive, over_rows, file, "instructor_limit")
        teach = teach[~over]

        frame = _select(e[["sourcedId", "classSourcedId", "userSourcedId", "_line"]], alive & is_student)
        frame.columns = ["roster_id", "class_id", "student_id", "_line"]
        self.ledger.used(file, len(frame) + len(teach))
        return (frame.reset_index(drop=True),
                pd.DataFrame({"class": teach["classSourcedId"].to_numpy(), "user": teach["userSourcedId"].to_numpy()}))

    # locations -----------------------------------------------------------------
    def _locations(self, orgs: pd.DataFrame, *tables: pd.DataFrame) -> pd.DataFrame:
        file = "orgs.csv"
        used = pd.Index([])
        for table in tables:
            for column in table.columns:
                if column == "location_id" or column.startswith("location_id_"):
                    used = used.union(pd.Index(table[column].unique()))
        orgs = self.ledger.drop(orgs, ~_isin(orgs["sourcedId"], used), file, "unreferenced")
        orgs = orgs.reset_index(drop=True)
        values = _fill(orgs, LOCATION_DEFAULTS, self.mapping.rules_for("locations"), {}, self.ledger.issues, file)
        frame = pd.DataFrame({"location_id": orgs["sourcedId"], **values})
        frame["_line"] = orgs["_line"]
        self.ledger.used(file, len(frame))
        return frame


# --- ASM input ----------------------------------------------------------------

_ASM_EXTRA = {
    "students.csv": re.compile(r"location_id_\d+"),
    "staff.csv": re.compile(r"location_id_\d+"),
    "classes.csv": re.compile(r"instructor_id_\d+|class_display_name"),
}


def _convert_asm(src_dir: Path, ledger: _Ledger) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Re-emit ASM files: template columns in order, allowed extras after, unknown columns dropped."""
    tables, lineage = {}, {}
    for name, header in ASM_HEADERS.items():
        path = _find(src_dir, name)
        if path is None:
            raise _Fatal(Issue("error", "convert.missing_file",
                               f"{name} is missing; ASM needs all six files every time (asm.md §1.1)", file=name))
        frame, lines = _read_lines(path, name, escape_char=ASM_ESCAPE)
        ledger.counts[name] = EntityCount(input=len(frame), output=len(frame))
        extra_rule = _ASM_EXTRA.get(name)
        extras = [c for c in frame.columns if c not in header and extra_rule and extra_rule.fullmatch(c)]
        extras.sort(key=lambda c: (c.rstrip("0123456789"), int(re.sub(r"\D", "", c) or 0)))
        for column in frame.columns:
            if column not in header and column not in extras:
                ledger.issues.append(Issue("warning", "convert.asm.unknown_column",
                                           f"column {column} is not an ASM column and is left out",
                                           file=name, line=1, column=column))
        for column in header:
            if column not in frame.columns:
                ledger.issues.append(Issue("warning", "convert.asm.missing_column",
                                           f"column {column} is missing; written empty", file=name, line=1,
                                           column=column))
                frame[column] = ""
        tables[name] = frame[[*header, *extras]].reset_index(drop=True)
        lineage[name] = _lineage(name, pd.Series(lines))
    return tables, lineage
