"""``rostergate runs diff``: what a run changes against the account's last delivery, record by record.

Apart from :mod:`rostergate.runs.safeguard` (which :mod:`rostergate.runs.stages` imports) because
it finds a run's output ZIP through the stages' spool layout.
"""

from __future__ import annotations

import json
from pathlib import Path

from rostergate.errors import RunError
from rostergate.formats.snapshot import diff_records
from rostergate.history import History, Run
from rostergate.intake import sha256_of
from rostergate.runs.safeguard import snapshot_path
from rostergate.runs.stages import OUTPUT_NAME, spooled_run_dir
from rostergate.runstatus import RunStatus


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
        earlier = history.delivered_with(run.account, sha256_of(baseline)) if baseline else None
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
        folder = spooled_run_dir(data_dir, run.id, run.spool_path)
    except ValueError:
        return None
    output = folder / OUTPUT_NAME
    return output if output.is_file() else None
