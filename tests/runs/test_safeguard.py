"""Safeguard on the pipeline side: where an account's last delivery is kept, and how it is replaced.

The diff and the hold rules are tested with formats/ (tests/formats/test_snapshot.py, test_holdrules.py).
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

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


def test_a_row_snapshot_stands_beside_the_zip_it_was_made_from_or_not_at_all(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    delivered, rows = tmp_path / "deliver.zip", tmp_path / "deliver.rows"
    delivered.write_bytes(b"zip")
    rows.write_bytes(b"rows")
    remember_delivery(data_dir, "district-a", delivered, rows)
    kept = snapshot_path(data_dir, "district-a")
    assert safeguard.rows_path(kept).read_bytes() == b"rows"
    assert stat.S_IMODE(safeguard.rows_path(kept).stat().st_mode) == 0o600
    remember_delivery(data_dir, "district-a", delivered)  # delivered with safeguards off: no row snapshot
    assert sorted(p.name for p in kept.parent.iterdir()) == ["last-delivered.zip"]


def _asm_zip(path: Path, students: int) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", "person_id,first_name\n" + "".join(f"s{i},Ann\n" for i in range(students)))
    return path


def test_the_baseline_is_read_from_the_row_snapshot_and_from_the_zip_only_without_one(tmp_path, monkeypatch):
    data_dir = tmp_path / "var"
    delivered = _asm_zip(tmp_path / "deliver.zip", 7)
    kept = snapshot_path(data_dir, "district-a")
    assert safeguard.load_baseline(kept) is None  # before the first delivery
    remember_delivery(data_dir, "district-a", delivered)
    assert len(safeguard.load_baseline(kept).files["students.csv"].hashes) == 7  # read from the ZIP
    snapshot.save_snapshot(snapshot.snapshot_of_zip(_asm_zip(tmp_path / "other.zip", 3)), tmp_path / "r")
    remember_delivery(data_dir, "district-a", delivered, tmp_path / "r")
    monkeypatch.setattr(safeguard, "snapshot_of_zip", lambda path: pytest.fail("the ZIP was read"))
    assert len(safeguard.load_baseline(kept).files["students.csv"].hashes) == 3  # the row snapshot
    safeguard.rows_path(kept).write_bytes(b"damaged")
    monkeypatch.undo()
    assert len(safeguard.load_baseline(kept).files["students.csv"].hashes) == 7  # unreadable: the ZIP again
