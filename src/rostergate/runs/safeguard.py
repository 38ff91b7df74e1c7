"""Roster safety on the pipeline side: the last delivered snapshot of each account.

Before delivery the pipeline compares the converted ASM files with the last ZIP
delivered for the same account (:func:`rostergate.formats.snapshot.diff`) and holds
a run whose removals exceed the flow's thresholds until an operator approves or
rejects it (``rostergate runs approve|reject``). This module keeps that baseline:
where it lives (:func:`snapshot_path`) and how a delivery becomes the new one
(:func:`remember_delivery`); and says, record by record, what a run changes
against it (:func:`run_changes`, ``rostergate runs diff``).

Retention (:mod:`rostergate.runs.retention`) never touches ``snapshots/``: the
baseline is a copy of the last delivery, kept apart from the run's spool folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from rostergate.errors import RunError

# The diff and the hold rules are pure data work and live in formats/; the pipeline
# reaches them through this module as before.
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.snapshot import diff, diff_records
from rostergate.history import History, Run
from rostergate.runs.stages import OUTPUT_NAME, spooled_run_dir
from rostergate.runstatus import RunStatus

__all__ = ["SNAPSHOT_DIR", "Thresholds", "diff", "reasons_to_hold", "remember_delivery", "run_changes",
           "snapshot_path"]

SNAPSHOT_DIR = "snapshots"


def snapshot_path(data_dir: Path, account: str) -> Path:
    return Path(data_dir) / SNAPSHOT_DIR / account / "last-delivered.zip"


def remember_delivery(data_dir: Path, account: str, delivered_zip: Path) -> None:
    """Keep a copy of what was delivered as the account's baseline (owner-only, atomic)."""
    target = snapshot_path(data_dir, account)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_suffix(".partial")
    shutil.copyfile(delivered_zip, partial)
    partial.chmod(0o600)
    os.replace(partial, target)



def run_changes(data_dir: Path, history: History, run: Run, show_values: bool = False) -> dict[str, object]:
    """What ``run`` changes against the account's last delivery: counts, records by id, totals per kind.

    A run not delivered (held, above all) is compared with the account's current
    baseline; a delivered run with the delivery before it (its spool folder, while
    retention keeps it). Where a ZIP is gone, the counts the safeguard stored are
    given, ``records`` and ``totals`` are None, and ``note`` says why. Raises
    :class:`RunError` for a run that never reached the safeguard step.
    """
    if not run.diff_json:
        raise RunError(f"run {run.id} has no diff: it did not reach the safeguard step ({run.status})")
    stored = json.loads(run.diff_json)
    data: dict[str, object] = {"run_id": run.id, "account": run.account, "status": run.status.value}
    current = _output(data_dir, run)
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
        where = f"removed by retention at {missing.purged_at}" if missing.purged_at else "not in its spool folder"
        return {**data, **stored, "records": None, "totals": None,
                "note": f"the output ZIP of run {missing.id} is {where}: only the counts stored when "
                        f"run {run.id} was checked are shown"}
    return {**data, **diff_records(baseline, current, show_values), "note": None}


def _output(data_dir: Path, run: Run) -> Path | None:
    """The ZIP the run delivered (or would deliver), while its spool folder holds it."""
    try:
        folder = spooled_run_dir(data_dir, run.id, run.spool_path)
    except ValueError:
        return None
    output = folder / OUTPUT_NAME
    return output if output.is_file() else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
