"""What an upload changes against the last delivery, and when that is too much to deliver unattended.

Apple reads every upload as a full snapshot (asm.md §2.5): a class, course or person
missing from an upload is unlinked or deactivated, so a partial SIS export can wipe a
school. :func:`diff` compares two ASM ZIPs file by file, matching rows by each file's
key, and returns :class:`~rostergate.formats.holdrules.Changes`; :func:`diff_records`
says which records (by id) were added, removed and changed, in which columns and (on
request) from what to what, for an operator deciding on a held run (``rostergate runs
diff``). Whether a change is too much to deliver unattended is
:mod:`rostergate.formats.holdrules`. Pure work on the files it is handed: where the last
delivery is kept, and what a held run does, is the pipeline's business
(``rostergate.runs.safeguard``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import Positions, position_in, strings
from rostergate.formats.holdrules import Changes, FileChanges
from rostergate.formats.read.csvio import read_table_bytes
from rostergate.formats.schema.asm import ESCAPE, KEYS


class RecordChange(TypedDict):
    """A record kept by id whose values changed: which columns, and (on request) ``[before, now]`` of each."""

    id: str
    columns: list[str]
    values: NotRequired[dict[str, list[str | None]]]


class FileRecords(TypedDict):
    """The ids of one file's records added, removed and changed."""

    added: list[str]
    removed: list[str]
    changed: list[RecordChange]


class Tally(TypedDict):
    added: int
    removed: int
    changed: int


class RecordChanges(Changes):
    """:func:`diff_records`'s result: the counts of :func:`diff`, the records, and totals per kind."""

    records: dict[str, FileRecords]
    totals: dict[str, Tally]


#: What the records of each ASM file are, for the totals of :func:`diff_records`
#: (a person is in students.csv or staff.csv; a roster row enrols a student in a class).
KINDS: dict[str, str] = {"students": "people", "staff": "people", "classes": "classes", "courses": "courses",
                         "rosters": "enrollments", "locations": "locations"}


def _tables(zip_path: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        files = [f"{stem}.csv" for stem in KEYS]
        return {name: read_table_bytes(archive.read(name), name, escape_char=ESCAPE) for name in files if name in names}


def _matches(now_ids: pa.ChunkedArray, before_ids: pa.ChunkedArray) -> Positions:
    """For each current key, the row of the same key before (-1: added)."""
    if len(now_ids) == len(before_ids) and (not len(now_ids) or pc.all(pc.equal(now_ids, before_ids)).as_py()):
        return np.arange(len(now_ids))  # the same keys in the same order: a repeat, or no joiners or leavers
    return position_in(now_ids, before_ids) if len(before_ids) else np.full(len(now_ids), -1)


@dataclass(frozen=True)
class _Compared:
    """One ASM file before and now, its rows matched by key.

    ``at``: for each current row, its row before (-1: added); ``kept``: the current rows
    that were there before; ``differs``: per column of either side, which kept rows
    (aligned with ``kept``) differ in it. A column on one side only differs in every
    kept row (a new ``location_id_2`` column changes every record Apple reads).
    """

    now: pd.DataFrame
    before: pd.DataFrame
    now_ids: pa.ChunkedArray
    before_ids: pa.ChunkedArray
    at: Positions
    kept: Positions
    differs: dict[str, npt.NDArray[np.bool_]]

    def changed_rows(self) -> npt.NDArray[np.bool_]:
        """Which kept rows differ in any column."""
        changed = np.zeros(len(self.kept), dtype=bool)
        for mask in self.differs.values():
            changed |= mask
        return changed

    def counts(self) -> FileChanges:
        changed = int(self.changed_rows().sum())
        return {"before": len(self.before_ids), "now": len(self.now_ids), "added": len(self.now_ids) - len(self.kept),
                "removed": len(self.before_ids) - len(self.kept), "changed": changed,
                "unchanged": len(self.kept) - changed}


def _compare(now: pd.DataFrame, before: pd.DataFrame, key: str) -> _Compared:
    now_ids, before_ids = strings(now[key]), strings(before[key])
    at = _matches(now_ids, before_ids)
    kept = np.flatnonzero(at >= 0)
    aligned = len(kept) == len(now) == len(before) and bool((at == kept).all())
    differs: dict[str, npt.NDArray[np.bool_]] = {}
    if len(kept):
        columns = list(now.columns) + [c for c in before.columns if c not in now.columns]
        for column in columns:
            if column not in now.columns or column not in before.columns:
                differs[column] = np.ones(len(kept), dtype=bool)
                continue
            a, b = strings(now[column]), strings(before[column])
            if not aligned:
                a, b = pc.take(a, pa.array(kept)), pc.take(b, pa.array(at[kept]))
            differs[column] = pc.not_equal(a, b).to_numpy(zero_copy_only=False)
    return _Compared(now, before, now_ids, before_ids, at, kept, differs)


def _compared_files(previous_zip: Path | None, current_zip: Path) -> tuple[bool, bool, dict[str, _Compared]]:
    """Whether there was a previous delivery, whether this one holds any ASM file, and each compared."""
    current = _tables(current_zip)
    previous = _tables(previous_zip) if previous_zip and previous_zip.exists() else {}
    compared = {}
    for stem, key in KEYS.items():
        name = f"{stem}.csv"
        empty = pd.DataFrame({key: pd.Series(dtype="str")})
        now, before = (t if t is not None and key in t else empty for t in (current.get(name), previous.get(name)))
        compared[name] = _compare(now, before, key)
    return bool(previous), bool(current), compared


def diff(previous_zip: Path | None, current_zip: Path) -> Changes:
    """Per ASM file: rows before and now, and how many were added, removed, changed, unchanged.

    Rows are matched by the file's key (asm.md §1.2-1.7), which is unique in a file
    that was delivered (the output check enforces it), and compared column by column,
    all in Arrow: a 200,000-student district takes well under a second.
    """
    baseline, asm, compared = _compared_files(previous_zip, current_zip)
    return {"baseline": baseline, "asm": asm, "files": {name: c.counts() for name, c in compared.items()}}


def diff_records(previous_zip: Path | None, current_zip: Path, show_values: bool = False) -> RecordChanges:
    """:func:`diff`, plus the ids of the records added, removed and changed in each file, and totals per kind.

    A changed record names the columns that changed; with ``show_values`` also each
    one's ``[before, now]`` (``None`` for a column that side does not have). Values
    are roster data: they go to the operator who asks, never to a log. The
    comparison is :func:`diff`'s, column-wise in Arrow; only the records listed cost
    Python work.
    """
    baseline, asm, compared = _compared_files(previous_zip, current_zip)
    records = {name: _records(c, show_values) for name, c in compared.items()}
    totals: dict[str, Tally] = {}
    for name, found in records.items():
        tally = totals.setdefault(KINDS[name.removesuffix(".csv")], {"added": 0, "removed": 0, "changed": 0})
        for what in ("added", "removed", "changed"):
            tally[what] += len(found[what])
    return {"baseline": baseline, "asm": asm, "files": {name: c.counts() for name, c in compared.items()},
            "records": records, "totals": totals}


def _records(c: _Compared, show_values: bool) -> FileRecords:
    added = pc.take(c.now_ids, pa.array(np.flatnonzero(c.at < 0))).to_pylist()
    gone = np.ones(len(c.before_ids), dtype=bool)
    gone[c.at[c.kept]] = False
    removed = pc.take(c.before_ids, pa.array(np.flatnonzero(gone))).to_pylist()
    columns = list(c.differs)
    if not columns:
        return {"added": added, "removed": removed, "changed": []}
    matrix = np.column_stack([c.differs[column] for column in columns])
    rows = np.flatnonzero(matrix.any(axis=1))  # positions in kept
    now_rows = c.kept[rows]
    ids = pc.take(c.now_ids, pa.array(now_rows)).to_pylist()
    which_row, which_column = np.nonzero(matrix[rows])  # row-major: grouped by changed row, in order
    names = np.array(columns, dtype=object)[which_column]
    groups = np.split(names, np.flatnonzero(np.diff(which_row)) + 1) if len(rows) else []
    changed: list[RecordChange] = [{"id": i, "columns": g.tolist()} for i, g in zip(ids, groups)]
    if show_values:
        for entry in changed:
            entry["values"] = {}
        before_rows = c.at[now_rows]
        for j, column in enumerate(columns):
            hit = np.flatnonzero(matrix[rows, j])
            if not len(hit):
                continue
            was = _values(c.before, column, before_rows[hit])
            now = _values(c.now, column, now_rows[hit])
            for k, before_value, now_value in zip(hit.tolist(), was, now):
                changed[k]["values"][column] = [before_value, now_value]
    return {"added": added, "removed": removed, "changed": changed}


def _values(frame: pd.DataFrame, column: str, rows: Positions) -> list[str | None]:
    """``frame[column]`` at ``rows``; ``None`` for each when ``frame`` has no such column."""
    if column not in frame.columns:
        return [None] * len(rows)
    values: list[str | None] = pc.take(strings(frame[column]), pa.array(rows)).to_pylist()
    return values


def render_records(changes: RecordChanges, limit: int = 20) -> str:
    """The totals per kind, then per file the ids added, removed and changed (at most ``limit`` of each)."""
    lines = ["totals: " + "; ".join(
        f"{kind} +{t['added']} -{t['removed']} ~{t['changed']}" for kind, t in changes["totals"].items())]
    for name, found in changes["records"].items():
        if not (found["added"] or found["removed"] or found["changed"]):
            continue
        lines += ["", f"{name}: {len(found['added'])} added, {len(found['removed'])} removed, "
                      f"{len(found['changed'])} changed"]
        for what in ("added", "removed"):
            ids: list[str] = found[what]
            if ids:
                lines.append(f"  {what + ':':<9} {', '.join(ids[:limit])}{_more(len(ids), limit)}")
        for entry in found["changed"][:limit]:
            lines.append(f"  changed:  {entry['id']} ({', '.join(entry['columns'])})")
            for column, (before, now) in entry.get("values", {}).items():
                lines.append(f"            {column}: {_shown(before)} -> {_shown(now)}")
        if len(found["changed"]) > limit:
            lines.append(f"  changed:  {_more(len(found['changed']), limit).strip()}")
    return "\n".join(lines)


def _more(count: int, limit: int) -> str:
    return f" ... and {count - limit} more (--json lists all)" if count > limit else ""


def _shown(value: str | None) -> str:
    return "(no such column)" if value is None else repr(value)
