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
two ZIPs (each read into a snapshot first): the same counts. Pure work on what it is
handed: where the last delivery is kept, and what a held run does, is the pipeline's
business (``rostergate.runs.safeguard``).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
        files[name] = {
            "before": len(before_ids), "now": len(now_ids), "added": len(now_ids) - len(kept),
            "removed": len(before_ids) - len(kept), "changed": changed, "unchanged": len(kept) - changed,
        }
    return {"baseline": bool(previous is not None and previous.files), "files": files}


def diff(previous_zip: Path | None, current_zip: Path) -> Changes:
    """:func:`compare` of two delivered ZIPs (``previous_zip`` None or missing: a first delivery)."""
    previous = snapshot_of_zip(previous_zip) if previous_zip and previous_zip.exists() else None
    return compare(previous, snapshot_of_zip(current_zip))
