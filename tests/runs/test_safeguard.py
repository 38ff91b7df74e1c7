"""Safeguard on the pipeline side: where an account's last delivery is kept, and how it is replaced.

The diff and the hold rules are tested with formats/ (tests/formats/test_snapshot.py, test_holdrules.py).
"""

from __future__ import annotations

import stat
from pathlib import Path

from rostergate.formats import holdrules, snapshot
from rostergate.runs import safeguard
from rostergate.runs.safeguard import remember_delivery, snapshot_path


def test_the_pipeline_reaches_the_diff_through_safeguard() -> None:
    assert (safeguard.diff, safeguard.Thresholds, safeguard.reasons_to_hold) == (
        snapshot.diff, holdrules.Thresholds, holdrules.reasons_to_hold)


def test_a_delivery_becomes_the_owner_only_baseline_of_its_account(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    first.write_bytes(b"first delivery")
    second.write_bytes(b"second delivery")
    remember_delivery(data_dir, "district-a", first)
    kept = snapshot_path(data_dir, "district-a")
    assert kept == data_dir / "snapshots" / "district-a" / "last-delivered.zip"
    assert kept.read_bytes() == b"first delivery"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) & 0o077 == 0
    remember_delivery(data_dir, "district-a", second)
    assert kept.read_bytes() == b"second delivery"
    assert sorted(p.name for p in kept.parent.iterdir()) == ["last-delivered.zip"]  # no partial copy left
    assert not snapshot_path(data_dir, "district-b").exists()  # accounts do not share a baseline
