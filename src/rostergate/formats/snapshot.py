"""What an upload changes against the last delivery.

Apple reads every upload as a full snapshot (asm.md §2.5): a class, course or person
missing from an upload is unlinked or deactivated, so a partial SIS export can wipe a
school. The diff matches the rows of each ASM file by the file's key (asm.md §1.2-1.7)
and returns :class:`~rostergate.formats.holdrules.Changes`; whether that is too much to
deliver unattended is :mod:`rostergate.formats.holdrules`.

A delivery is remembered as a :class:`RowSnapshot`: per ASM file its columns, each
row's key and a 64-bit hash of the row's other values
(:func:`~rostergate.formats.arrowops.string_hashes`), made from the frames the run has
in memory (:func:`snapshot_of_tables`) and kept in a small Arrow file
(:func:`save_snapshot`, :func:`load_snapshot`): the next run compares with it
(:func:`compare`) without reading the last delivered ZIP again. :func:`diff` compares
two ZIPs (each read into a snapshot first): the same counts. :func:`diff_records` says
which records (by id) were added, removed and changed, in which columns and (on request)
from what to what, for an operator deciding on a held run (``rostergate runs diff``): it
reads both ZIPs, since a snapshot keeps no values. Pure work on what it is handed: where
the last delivery is kept, and what a held run does, is the pipeline's business
(``rostergate.runs.safeguard``).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from rostergate.formats.arrowops import Positions, fold64, mix64, position_in, string_hashes, strings
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



# Written into each snapshot file; a file of another version is not read (the ZIP beside it is).
SNAPSHOT_VERSION = 1
_EMPTY_KEYS = pa.chunked_array([], type=pa.large_string())


@dataclass(frozen=True)
class FileRows:
    """One ASM file of a delivery: its columns, and per row the key and a hash of the other values."""

    columns: tuple[str, ...]
    keys: pa.ChunkedArray
    hashes: npt.NDArray[np.uint64]


@dataclass(frozen=True)
class RowSnapshot:
    """The ASM files of a delivery (by name, e.g. ``students.csv``) as :class:`FileRows`.

    A file without its key column is there with no rows (as the diff has always read it);
    a delivery without any ASM file (an upload forwarded as it came) has no files.
    """

    files: dict[str, FileRows]


def _file_rows(frame: pd.DataFrame, key: str) -> FileRows:
    if key not in frame:
        return FileRows((key,), _EMPTY_KEYS, np.zeros(0, dtype=np.uint64))
    acc = np.zeros(len(frame), dtype=np.uint64)
    for column in frame.columns:
        if column != key:  # rows are matched by key: the key of a matched row is equal
            acc = fold64(acc, string_hashes(strings(frame[column])))
    return FileRows(tuple(str(c) for c in frame.columns), strings(frame[key]), mix64(acc))


def snapshot_of_tables(tables: Mapping[str, pd.DataFrame]) -> RowSnapshot:
    """The snapshot of a delivery's ASM files (file name → frame of strings; other names are ignored)."""
    return RowSnapshot({f"{stem}.csv": _file_rows(tables[f"{stem}.csv"], key)
                        for stem, key in KEYS.items() if f"{stem}.csv" in tables})


def _tables(zip_path: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        files = [f"{stem}.csv" for stem in KEYS]
        return {name: read_table_bytes(archive.read(name), name, escape_char=ESCAPE) for name in files if name in names}


def snapshot_of_zip(zip_path: Path) -> RowSnapshot:
    """The snapshot of a delivered ZIP (its ASM files are read and parsed)."""
    return snapshot_of_tables(_tables(zip_path))


def save_snapshot(snapshot: RowSnapshot, path: Path) -> None:
    """Write ``snapshot`` to ``path``: an owner-only Arrow file (LZ4), replaced atomically."""
    names = list(snapshot.files)
    rows = [snapshot.files[name] for name in names]
    keys = pa.chunked_array([chunk for r in rows for chunk in r.keys.cast(pa.large_string()).chunks],
                            type=pa.large_string())
    table = pa.table({"key": keys, "hash": np.concatenate([r.hashes for r in rows] or [np.zeros(0, np.uint64)])})
    files = [{"name": name, "columns": list(r.columns), "rows": len(r.hashes)} for name, r in zip(names, rows)]
    meta = {"version": SNAPSHOT_VERSION, "files": files}
    table = table.replace_schema_metadata({"rostergate": json.dumps(meta)})
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, ipc.new_file(out, table.schema,
                                                 options=ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    os.replace(partial, path)


def load_snapshot(path: Path) -> RowSnapshot | None:
    """The snapshot saved at ``path``; None when it is not one this version reads (a newer format).

    OS errors (a missing file) are the caller's.
    """
    with pa.OSFile(str(path), "rb") as source:
        table = ipc.open_file(source).read_all()
    meta = json.loads((table.schema.metadata or {}).get(b"rostergate", b"{}"))
    if meta.get("version") != SNAPSHOT_VERSION:
        return None
    keys, hashes = table.column("key"), table.column("hash").to_numpy()
    files, at = {}, 0
    for entry in meta["files"]:
        n = entry["rows"]
        files[entry["name"]] = FileRows(tuple(entry["columns"]), keys.slice(at, n), hashes[at:at + n])
        at += n
    return RowSnapshot(files)


def _matches(now_ids: pa.ChunkedArray, before_ids: pa.ChunkedArray) -> Positions:
    """For each current key, the row of the same key before (-1: added)."""
    if len(now_ids) == len(before_ids) and (not len(now_ids) or pc.all(pc.equal(now_ids, before_ids)).as_py()):
        return np.arange(len(now_ids))  # the same keys in the same order: a repeat, or no joiners or leavers
    return position_in(now_ids, before_ids) if len(before_ids) else np.full(len(now_ids), -1)


def _counts(before: int, now: int, kept: int, changed: int) -> FileChanges:
    """One file's counts: rows before and now, and of them added, removed, changed, unchanged."""
    return {"before": before, "now": now, "added": now - kept, "removed": before - kept, "changed": changed,
            "unchanged": kept - changed}


def compare(previous: RowSnapshot | None, current: RowSnapshot) -> Changes:
    """Per ASM file: rows before and now, and how many were added, removed, changed, unchanged.

    Rows are matched by the file's key (asm.md §1.2-1.7), which is unique in a file
    that was delivered (the output check enforces it). A kept row changed when any of
    its values did: its hash differs, or the file's columns did (then every kept row
    changed: e.g. a new location_id_2 column).
    """
    files: dict[str, FileChanges] = {}
    for stem, key in KEYS.items():
        name = f"{stem}.csv"
        empty = FileRows((key,), _EMPTY_KEYS, np.zeros(0, dtype=np.uint64))
        now = current.files.get(name, empty)
        before = previous.files.get(name, empty) if previous is not None else empty
        now_ids, before_ids = now.keys, before.keys
        if now_ids.type != before_ids.type:
            now_ids, before_ids = now_ids.cast(pa.large_string()), before_ids.cast(pa.large_string())
        at = _matches(now_ids, before_ids)
        kept = np.flatnonzero(at >= 0)
        if not len(kept):
            changed = 0
        elif now.columns != before.columns:
            changed = len(kept)
        else:
            changed = int(np.count_nonzero(now.hashes[kept] != before.hashes[at[kept]]))
        files[name] = _counts(len(before_ids), len(now_ids), len(kept), changed)
    return {"baseline": bool(previous is not None and previous.files), "asm": bool(current.files), "files": files}


def diff(previous_zip: Path | None, current_zip: Path) -> Changes:
    """:func:`compare` of two delivered ZIPs (``previous_zip`` None or missing: a first delivery)."""
    previous = snapshot_of_zip(previous_zip) if previous_zip and previous_zip.exists() else None
    return compare(previous, snapshot_of_zip(current_zip))


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
        return _counts(len(self.before_ids), len(self.now_ids), len(self.kept), int(self.changed_rows().sum()))


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
