"""Roster safety on the pipeline side: the last delivered snapshot of each account.

Before delivery the pipeline compares the converted ASM files with the last ZIP
delivered for the same account (:func:`rostergate.formats.snapshot.diff`) and holds
a run whose removals exceed the flow's thresholds until an operator approves or
rejects it (``rostergate runs approve|reject``). This module keeps that baseline:
where it lives (:func:`snapshot_path`) and how a delivery becomes the new one
(:func:`remember_delivery`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The diff and the hold rules are pure data work and live in formats/; the pipeline
# reaches them through this module as before.
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.snapshot import diff

__all__ = ["SNAPSHOT_DIR", "Thresholds", "diff", "reasons_to_hold", "remember_delivery", "snapshot_path"]

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

