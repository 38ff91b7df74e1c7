"""Safeguard on the pipeline side: where an account's last delivery is kept, and how it is replaced.

The diff and the hold rules are tested with formats/ (tests/formats/test_snapshot.py, test_holdrules.py).
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from rostergate.cli import main
from rostergate.errors import RunError
from rostergate.formats import holdrules, snapshot
from rostergate.runs import safeguard
from rostergate.runs.changes import run_changes
from rostergate.runs.safeguard import remember_delivery, snapshot_path
from rostergate.runstatus import RunStatus


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


# -- runs diff: what a run changes, record by record ---------------------------------------------
def _changed_upload(bench, given_name: str) -> str:
    """The valid upload with usr-s1's givenName changed, received as a run of the bench's account."""
    import shutil

    from tests.conftest import ONEROSTER_11_VALID, zip_folder

    folder = bench.root / f"changed-{given_name}"
    shutil.copytree(ONEROSTER_11_VALID, folder)
    users = folder / "users.csv"
    users.write_text(users.read_text().replace(",Sam,Adams,", f",{given_name},Adams,"))
    run_id = bench.intake.accept("district-a", zip_folder(folder, bench.root / f"{folder.name}.zip"))
    assert run_id is not None
    return run_id


def test_a_held_run_names_the_people_and_enrollments_it_would_remove(bench):
    bench.configure(safeguards={"max_removed_percent": 10, "min_previous_rows": 0})
    first = bench.receive()
    bench.step()
    held = bench.receive(keep_students=1)
    assert bench.step().status is RunStatus.HELD
    changes = run_changes(bench.data_dir, bench.history, bench.history.get(held))
    assert changes["compared_with"] == {"run_id": first, "what": "the account's last delivery"}
    assert changes["records"]["students.csv"] == {"added": [], "removed": ["usr-s2", "usr-s3"], "changed": []}
    assert sorted(changes["records"]["rosters.csv"]["removed"]) == ["enr-4", "enr-6"]  # usr-s2's, usr-s3's
    assert changes["totals"]["people"] == {"added": 0, "removed": 2, "changed": 0}
    assert changes["files"] == json.loads(bench.history.get(held).diff_json)["files"]  # what the safeguard saw
    assert changes["note"] is None and changes["status"] == "held"


def test_a_changed_upload_names_the_record_and_column_and_the_value_only_on_request(bench):
    bench.receive()
    bench.step()
    changed = _changed_upload(bench, "Samuel")
    bench.configure(safeguards={"enabled": False})
    assert bench.step().status is RunStatus.DELIVERED
    run = bench.history.get(changed)
    plain = run_changes(bench.data_dir, bench.history, run)
    assert plain["compared_with"]["what"] == "the delivery before this run"
    assert plain["records"]["students.csv"]["changed"] == [{"id": "usr-s1", "columns": ["first_name"]}]
    assert plain["totals"]["people"] == {"added": 0, "removed": 0, "changed": 1}
    shown = run_changes(bench.data_dir, bench.history, run, show_values=True)
    assert shown["records"]["students.csv"]["changed"][0]["values"] == {"first_name": ["Sam", "Samuel"]}
    assert "Sam" not in json.dumps(plain)


def test_when_a_zip_was_purged_the_stored_counts_are_given_with_a_note(bench):
    bench.receive()
    bench.step()
    second = _changed_upload(bench, "Samuel")
    bench.step()
    earlier = bench.history.delivered_before("district-a", bench.history.get(second))
    assert bench.history.mark_purged(earlier.id)
    import shutil

    shutil.rmtree(bench.data_dir / "spool" / earlier.id)
    changes = run_changes(bench.data_dir, bench.history, bench.history.get(second))
    assert changes["records"] is None and changes["totals"] is None
    assert f"the output ZIP of run {earlier.id} is removed by retention" in changes["note"]
    assert changes["files"]["students.csv"]["changed"] == 1


def test_a_run_that_never_reached_the_safeguard_has_no_diff(bench):
    run_id = bench.receive()
    with pytest.raises(RunError, match="did not reach the safeguard step"):
        run_changes(bench.data_dir, bench.history, bench.history.get(run_id))


def test_runs_diff_prints_the_records_for_people(bench):
    config = bench.root / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{bench.data_dir}"\n')
    bench.receive()
    bench.step()
    run_id = _changed_upload(bench, "Samuel")
    bench.step()
    runner = CliRunner()
    try:
        text = runner.invoke(main, ["--config", str(config), "runs", "diff", run_id])
        values = runner.invoke(main, ["--config", str(config), "runs", "diff", run_id, "--show-values", "--json"])
    finally:
        structlog.reset_defaults()
    assert text.exit_code == 0, text.output
    assert "against the delivery before this run" in text.output
    assert "changed:  usr-s1 (first_name)" in text.output and "Samuel" not in text.output
    assert json.loads(values.output)["records"]["students.csv"]["changed"][0]["values"]["first_name"] == [
        "Sam", "Samuel"]


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
