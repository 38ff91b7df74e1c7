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

:func:`rostergate.runs.changes.run_changes` says, record by record, what a run changes against
it (``rostergate runs diff``); it reads the ZIPs, since ids and values are not in the row snapshot.
Retention (:mod:`rostergate.runs.retention`) never touches ``snapshots/``: the baseline is a
copy of the last delivery, kept apart from the run's spool folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

# The diff and the hold rules are pure data work and live in formats/; the pipeline
# reaches them through this module as before.
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.snapshot import RowSnapshot, diff, load_snapshot, snapshot_of_zip

__all__ = ["SNAPSHOT_DIR", "Thresholds", "diff", "load_baseline", "reasons_to_hold",
           "remember_delivery", "rows_path", "snapshot_path"]

SNAPSHOT_DIR = "snapshots"


def snapshot_path(data_dir: Path, account: str) -> Path:
    return Path(data_dir) / SNAPSHOT_DIR / account / "last-delivered.zip"


def remember_delivery(data_dir: Path, account: str, delivered_zip: Path, rows: Path | None = None) -> None:
    """Keep a copy of what was delivered, and its row snapshot ``rows`` when there is one, as the
    account's baseline (owner-only, atomic).

    The old row snapshot goes first: whatever is interrupted, a row snapshot never stands
    beside a ZIP it was not made from (without one, the ZIP is read).
    """
    target = snapshot_path(data_dir, account)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows_path(target).unlink(missing_ok=True)
    _keep(delivered_zip, target)
    if rows is not None:
        _keep(rows, rows_path(target))


def _keep(source: Path, kept: Path) -> None:
    """``kept`` becomes an owner-only copy of ``source``, whole or not at all (a ``.partial`` renamed)."""
    partial = kept.with_name(kept.name + ".partial")
    shutil.copyfile(source, partial)
    partial.chmod(0o600)
    os.replace(partial, kept)


def rows_path(zip_path: Path) -> Path:
    """The row snapshot kept beside the baseline ZIP ``zip_path``."""
    return zip_path.with_suffix(".rows")


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
