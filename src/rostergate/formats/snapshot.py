"""What an upload changes against the last delivery, and when that is too much to deliver unattended.

Apple reads every upload as a full snapshot (asm.md §2.5): a class, course or person
missing from an upload is unlinked or deactivated, so a partial SIS export can wipe a
school. :func:`diff` compares two ASM ZIPs file by file, matching rows by each file's
key; :func:`reasons_to_hold` says why a change exceeds a flow's :class:`Thresholds`, or
why a delivery may not go unattended at all (no students, staff or rosters), the first
delivery of an account included (empty: it may go). Pure work on the files it is handed:
where the last delivery is kept, and what a held run does, is the pipeline's business
(``rostergate.safeguard``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import Positions, position_in, strings
from rostergate.formats.read.csvio import read_table_bytes
from rostergate.formats.schema.asm import ESCAPE, KEYS


class FileChanges(TypedDict):
    """Rows of one ASM file before and now, and what became of them."""

    before: int
    now: int
    added: int
    removed: int
    changed: int
    unchanged: int


class Changes(TypedDict):
    """:func:`diff`'s result: ``baseline`` is false on a first delivery (nothing to compare with);
    ``asm`` is false when the delivery holds none of Apple's six files (a flow with ``output =
    "same"`` forwarding OneRoster as it came), which the never-empty rule then leaves alone."""

    baseline: bool
    asm: bool
    files: dict[str, FileChanges]


@dataclass(frozen=True)
class Thresholds:
    """Hold a run when a file loses more than ``max_removed_percent`` of its previous rows.

    Files with fewer than ``min_previous_rows`` rows before are not judged by
    percentage (a small school losing 2 of 5 classes is ordinary), but a file
    that had rows and now has none is always held.
    """

    max_removed_percent: float = 10.0
    min_previous_rows: int = 20
    enabled: bool = True


def parse_thresholds(table: object, prefix: str) -> tuple[Thresholds, list[str]]:
    """``[flows.safeguards]`` → :class:`Thresholds` and a list of ``key: reason`` problems."""
    problems: list[str] = []
    if not isinstance(table, dict):
        return Thresholds(), [f"{prefix}: must be a table"]
    default = Thresholds()
    max_removed_percent, min_previous_rows = default.max_removed_percent, default.min_previous_rows
    enabled = default.enabled
    for key, value in table.items():
        if key == "enabled":
            if not isinstance(value, bool):
                problems.append(f"{prefix}.enabled: must be true or false")
            else:
                enabled = value
        elif key == "max_removed_percent":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:
                problems.append(f"{prefix}.max_removed_percent: must be a number from 0 to 100")
            else:
                max_removed_percent = float(value)
        elif key == "min_previous_rows":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{prefix}.min_previous_rows: must be a whole number >= 0")
            else:
                min_previous_rows = value
        else:
            problems.append(f"{prefix}.{key}: unknown key (enabled, max_removed_percent, min_previous_rows)")
    return Thresholds(max_removed_percent, min_previous_rows, enabled), problems


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


def _changed(now: pd.DataFrame, before: pd.DataFrame, kept: Positions, at: Positions) -> int:
    """How many kept rows differ in any column (every one of them when the columns changed)."""
    if list(now.columns) != list(before.columns):
        return len(kept)  # e.g. a new location_id_2 column: every kept row changed
    aligned = len(kept) == len(now) == len(before) and bool((at == kept).all())
    differs = np.zeros(len(kept), dtype=bool)
    for column in now.columns:
        a, b = strings(now[column]), strings(before[column])
        if not aligned:
            a, b = pc.take(a, pa.array(kept)), pc.take(b, pa.array(at[kept]))
        differs |= pc.not_equal(a, b).to_numpy(zero_copy_only=False)
    return int(differs.sum())


def diff(previous_zip: Path | None, current_zip: Path) -> Changes:
    """Per ASM file: rows before and now, and how many were added, removed, changed, unchanged.

    Rows are matched by the file's key (asm.md §1.2-1.7), which is unique in a file
    that was delivered (the output check enforces it), and compared column by column,
    all in Arrow: a 200,000-student district takes well under a second.
    """
    current = _tables(current_zip)
    previous = _tables(previous_zip) if previous_zip and previous_zip.exists() else {}
    files: dict[str, FileChanges] = {}
    for stem, key in KEYS.items():
        name = f"{stem}.csv"
        empty = pd.DataFrame({key: pd.Series(dtype="str")})
        now, before = (t if t is not None and key in t else empty for t in (current.get(name), previous.get(name)))
        now_ids, before_ids = strings(now[key]), strings(before[key])
        at = _matches(now_ids, before_ids)
        kept = np.flatnonzero(at >= 0)
        changed = _changed(now, before, kept, at) if len(kept) else 0
        files[name] = {
            "before": len(before_ids), "now": len(now_ids), "added": len(now_ids) - len(kept),
            "removed": len(before_ids) - len(kept), "changed": changed, "unchanged": len(kept) - changed,
        }
    return {"baseline": bool(previous), "asm": bool(current), "files": files}


#: Files that may never be delivered empty, first delivery or not: an upload without students, staff or
#: rosters tells Apple that every one of them left (asm.md §2.3: rosters need at least one student, §2.5).
NEVER_EMPTY = ("students.csv", "staff.csv", "rosters.csv")


def reasons_to_hold(summary: Changes, thresholds: Thresholds) -> list[str]:
    """Why the change is too big to deliver unattended (empty when it may go).

    With a baseline: a file that empties, or loses more than the flow allows. Always, the
    first delivery of an account included: a file of :data:`NEVER_EMPTY` with no rows
    (there is nothing to compare a first delivery with, but nothing is needed to see
    that an empty students.csv would deactivate every student). ``enabled = false`` is
    the operator's switch for all of it.
    """
    if not thresholds.enabled:
        return []
    reasons = []
    for name, counts in summary["files"].items():
        before, removed = counts["before"], counts["removed"]
        if before and counts["now"] == 0:
            reasons.append(f"{name} would go from {before} rows to none")
        elif name in NEVER_EMPTY and counts["now"] == 0 and summary.get("asm", True):
            first = "" if summary["baseline"] else " in the account's first delivery"
            reasons.append(f"{name} would be delivered with no rows{first}, which tells Apple that every "
                           f"{_WHO[name]} left")
        elif summary["baseline"] and before >= thresholds.min_previous_rows \
                and removed * 100 > thresholds.max_removed_percent * before:
            share = removed * 100 / before
            reasons.append(
                f"{name} would lose {removed} of {before} rows ({share:.1f}%, more than the "
                f"{thresholds.max_removed_percent:g}% allowed)"
            )
    return reasons


_WHO = {"students.csv": "student", "staff.csv": "staff member", "rosters.csv": "student's class membership"}


def render_diff(summary: Changes) -> str:
    """The changes as a table for people, one line per file."""
    lines = ["file            before      now    added  removed  changed"]
    for name, c in summary["files"].items():
        lines.append(f"{name:<14}{c['before']:>8} {c['now']:>8} {c['added']:>8} {c['removed']:>8} {c['changed']:>8}")
    if not summary["baseline"]:
        lines.append("(first delivery for this account: nothing to compare with)")
    return "\n".join(lines)
