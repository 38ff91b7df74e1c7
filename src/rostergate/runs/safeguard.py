"""Roster safety on the pipeline side: the last delivered snapshot of each account.

Before delivery the pipeline compares the converted ASM files with the last delivery
of the same account (:func:`rostergate.formats.snapshot.compare`, made in the worker by
:func:`rostergate.runs.stages.prepare`) and holds a run whose removals exceed the flow's
thresholds until an operator approves or rejects it (``rostergate runs approve|reject``).
This module keeps that baseline: where it lives (:func:`snapshot_path`), how a delivery
becomes the new one (:func:`remember_delivery`) and how it is read (:func:`load_baseline`).

The baseline is the delivered ZIP (``last-delivered.zip``) and, beside it, its row snapshot
(``last-delivered.rows``: keys and row hashes, :class:`~rostergate.formats.snapshot.RowSnapshot`),
which is what a run compares with. A delivery made while the flow's safeguards were off has
no row snapshot: the next run with safeguards on reads the ZIP once instead.

:func:`run_changes` says, record by record, what a run changes against it (``rostergate
runs diff``); it reads the ZIPs, since ids and values are not in the row snapshot.
Retention (:mod:`rostergate.runs.retention`) never touches ``snapshots/``: the baseline is a
copy of the last delivery, kept apart from the run's spool folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa

from rostergate.errors import RunError

# The diff and the hold rules are pure data work and live in formats/; the pipeline
# reaches them through this module as before.
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.snapshot import RowSnapshot, diff, diff_records, load_snapshot, snapshot_of_zip
from rostergate.history import History, Run
from rostergate.runs import stages  # a module, not its names: stages imports this module too
from rostergate.runstatus import RunStatus

__all__ = ["ROWS_NAME", "SNAPSHOT_DIR", "Thresholds", "diff", "load_baseline", "reasons_to_hold",
           "remember_delivery", "rows_path", "run_changes", "snapshot_path"]

SNAPSHOT_DIR = "snapshots"
ROWS_NAME = "deliver.rows"  # a prepared run's row snapshot, beside its deliver.zip


def snapshot_path(data_dir: Path, account: str) -> Path:
    return Path(data_dir) / SNAPSHOT_DIR / account / "last-delivered.zip"


def rows_path(zip_path: Path) -> Path:
    """The row snapshot kept beside the baseline ZIP ``zip_path``."""
    return zip_path.with_suffix(".rows")


def remember_delivery(data_dir: Path, account: str, delivered_zip: Path, rows: Path | None = None) -> None:
    """Keep a copy of what was delivered, and its row snapshot ``rows`` when there is one, as the
    account's baseline (owner-only, atomic).

    The old row snapshot goes first: whatever is interrupted, a row snapshot never stands
    beside a ZIP it was not made from (without one, the ZIP is read).
    """
    target = snapshot_path(data_dir, account)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows_path(target).unlink(missing_ok=True)
    for source, kept in ((delivered_zip, target), *(((rows, rows_path(target)),) if rows is not None else ())):
        partial = kept.with_name(kept.name + ".partial")
        shutil.copyfile(source, partial)
        partial.chmod(0o600)
        os.replace(partial, kept)


def load_baseline(zip_path: Path) -> RowSnapshot | None:
    """The account's last delivery as a row snapshot (``zip_path``: :func:`snapshot_path`); None before
    the first delivery. The ZIP is read when no usable row snapshot stands beside it."""
    try:
        snapshot = load_snapshot(rows_path(zip_path))
        if snapshot is not None:
            return snapshot
    except (OSError, pa.ArrowException, ValueError, KeyError):
        pass  # none (a delivery with safeguards off, or made before row snapshots), or unreadable
    return snapshot_of_zip(zip_path) if zip_path.exists() else None


def run_changes(data_dir: Path, history: History, run: Run, show_values: bool = False) -> dict[str, object]:
    """What ``run`` changes against the account's last delivery: counts, records by id, totals per kind.

    A run not delivered (held, above all) is compared with the account's current
    baseline; a delivered run with the delivery before it (its spool folder, while
    retention keeps it). Where a ZIP is gone, the counts the safeguard stored are
    given, ``records`` and ``totals`` are None, and ``note`` says why. Raises
    :class:`RunError` for a run that never reached the safeguard step.
    """
    stored = json.loads(run.diff_json) if run.diff_json else None
    current = _output(data_dir, run)
    if current is None and stored is None:
        raise RunError(f"run {run.id} has no diff: it did not reach the safeguard step ({run.status})")
    data: dict[str, object] = {"run_id": run.id, "account": run.account, "status": run.status.value}
    baseline: Path | None
    if run.status is RunStatus.DELIVERED:
        earlier = history.delivered_before(run.account, run)
        baseline = _output(data_dir, earlier) if earlier else None
        compared_with = {"run_id": earlier.id if earlier else None, "what": "the delivery before this run"}
        gone = earlier is not None and baseline is None
    else:
        path = snapshot_path(data_dir, run.account)
        baseline = path if path.exists() else None
        earlier = history.delivered_with(run.account, _sha256(baseline)) if baseline else None
        compared_with = {"run_id": earlier.id if earlier else None, "what": "the account's last delivery"}
        gone = False
    data["compared_with"] = compared_with
    if current is None or gone:
        missing = run if current is None else earlier
        assert missing is not None
        if stored is None:  # safeguards were off: no counts were kept when the run was checked
            raise RunError(f"run {run.id}: the output ZIP of run {missing.id} is gone and its flow's safeguards "
                           "were off, so nothing was kept to compare")
        where = f"removed by retention at {missing.purged_at}" if missing.purged_at else "not in its spool folder"
        return {**data, **stored, "records": None, "totals": None,
                "note": f"the output ZIP of run {missing.id} is {where}: only the counts stored when "
                        f"run {run.id} was checked are shown"}
    return {**data, **diff_records(baseline, current, show_values), "note": None}


def _output(data_dir: Path, run: Run) -> Path | None:
    """The ZIP the run delivered (or would deliver), while its spool folder holds it."""
    try:
        folder = stages.spooled_run_dir(data_dir, run.id, run.spool_path)
    except ValueError:
        return None
    output = folder / stages.OUTPUT_NAME
    return output if output.is_file() else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
