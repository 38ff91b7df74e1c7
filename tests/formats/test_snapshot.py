"""Snapshot: diffs between ASM ZIPs and row snapshots (formats/snapshot.py), and the hold rules applied to them
(formats/holdrules.py)."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from rostergate.formats import snapshot
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.read.csvio import read_table_bytes
from rostergate.formats.snapshot import compare, diff, load_snapshot, save_snapshot, snapshot_of_tables, snapshot_of_zip

HEADERS = {
    "students.csv": "person_id,first_name,last_name,location_id",
    "staff.csv": "person_id,first_name,last_name,location_id",
    "courses.csv": "course_id,course_name,location_id",
    "classes.csv": "class_id,course_id,location_id",
    "rosters.csv": "roster_id,class_id,student_id",
    "locations.csv": "location_id,location_name",
}


def asm_zip(path, students: int, renamed: int = 0, rosters: int = 1):
    rows = {name: [] for name in HEADERS}
    rows["students.csv"] = [f"s{i},{'New' if i < renamed else 'Ann'},Lee,l1" for i in range(students)]
    rows["locations.csv"] = ["l1,School"]
    rows["rosters.csv"] = [f"r{i},c1,s{i}" for i in range(rosters)]
    with zipfile.ZipFile(path, "w") as archive:
        for name, header in HEADERS.items():
            archive.writestr(name, "\n".join([header, *rows[name]]) + "\n")
    return path


def test_first_delivery_has_no_baseline_and_is_never_held(tmp_path):
    summary = diff(None, asm_zip(tmp_path / "a.zip", 5))
    assert summary["baseline"] is False and summary["files"]["students.csv"]["added"] == 5
    assert reasons_to_hold(summary, Thresholds(min_previous_rows=0)) == []


def test_counts_added_removed_changed_unchanged(tmp_path):
    before = asm_zip(tmp_path / "before.zip", 100)
    now = asm_zip(tmp_path / "now.zip", 95, renamed=3)
    counts = diff(before, now)["files"]["students.csv"]
    assert counts == {"before": 100, "now": 95, "added": 0, "removed": 5, "changed": 3, "unchanged": 92}


def test_holds_over_threshold_and_when_a_file_empties(tmp_path):
    before = asm_zip(tmp_path / "before.zip", 100, rosters=3)
    small_loss = diff(before, asm_zip(tmp_path / "a.zip", 95, rosters=3))
    assert reasons_to_hold(small_loss, Thresholds(max_removed_percent=10)) == []
    big_loss = diff(before, asm_zip(tmp_path / "b.zip", 50, rosters=3))
    assert reasons_to_hold(big_loss, Thresholds(max_removed_percent=10)) == [
        "students.csv would lose 50 of 100 rows (50.0%, more than the 10% allowed)"]
    emptied = diff(before, asm_zip(tmp_path / "c.zip", 100, rosters=0))
    assert reasons_to_hold(emptied, Thresholds()) == ["rosters.csv would go from 3 rows to none"]
    assert reasons_to_hold(emptied, Thresholds(enabled=False)) == []


def test_small_files_are_not_judged_by_percentage(tmp_path):
    summary = diff(asm_zip(tmp_path / "a.zip", 5), asm_zip(tmp_path / "b.zip", 2))
    assert reasons_to_hold(summary, Thresholds(min_previous_rows=20)) == []


def _students_zip(path, rows: list[str], header: str = HEADERS["students.csv"]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, columns in HEADERS.items():
            body = rows if name == "students.csv" else []
            archive.writestr(name, "\n".join([header if name == "students.csv" else columns, *body]) + "\n")
    return path


@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_are_matched_by_key_whatever_their_order(tmp_path, shuffle):
    before = [f"s{i},Ann,Lee,l1" for i in range(100)]
    now = [f"s{i},{'New' if i < 3 else 'Ann'},Lee,l1" for i in range(100)] + ["s100,Bo,Li,l1"]
    if shuffle:
        now = now[::-1]
    counts = diff(_students_zip(tmp_path / "b.zip", before), _students_zip(tmp_path / "n.zip", now))
    assert counts["files"]["students.csv"] == {
        "before": 100, "now": 101, "added": 1, "removed": 0, "changed": 3, "unchanged": 97}


def test_same_keys_same_order_compares_every_column(tmp_path):
    before = [f"s{i},Ann,Lee,l1" for i in range(50)]
    now = [f"s{i},Ann,{'Lee' if i else 'Li'},{'l2' if i == 7 else 'l1'}" for i in range(50)]
    counts = diff(_students_zip(tmp_path / "b.zip", before), _students_zip(tmp_path / "n.zip", now))
    assert counts["files"]["students.csv"]["changed"] == 2
    assert counts["files"]["students.csv"]["unchanged"] == 48


def test_apple_escapes_are_read_as_apple_writes_them(tmp_path):
    """A quote escaped with a backslash (asm.md §1.1) is one value, not a broken row."""
    before = ['s1,"Jo \\"JJ\\" Park",Lee,l1', "s2,Ann,Lee,l1"]
    now = ['s1,"Jo \\"JJ\\" Park",Lee,l1', "s2,Ann,Lee,l1"]
    counts = diff(_students_zip(tmp_path / "b.zip", before), _students_zip(tmp_path / "n.zip", now))
    assert counts["files"]["students.csv"] == {
        "before": 2, "now": 2, "added": 0, "removed": 0, "changed": 0, "unchanged": 2}


def test_a_new_column_counts_every_kept_row_as_changed(tmp_path):
    before = [f"s{i},Ann,Lee,l1" for i in range(10)]
    now = [f"s{i},Ann,Lee,l1," for i in range(10)]
    counts = diff(_students_zip(tmp_path / "b.zip", before),
                  _students_zip(tmp_path / "n.zip", now, HEADERS["students.csv"] + ",location_id_2"))
    assert counts["files"]["students.csv"]["changed"] == 10


# -- row snapshots: what a delivery leaves for the next run to compare with ------------------
def _reference(before: pd.DataFrame, now: pd.DataFrame, key: str) -> dict[str, int]:
    """The counts by a plain pandas merge: the oracle the snapshot comparison must agree with."""
    merged = now.merge(before, on=key, how="inner", suffixes=("_now", "_before"))
    others = [c for c in now.columns if c != key]
    if list(now.columns) != list(before.columns):
        changed = len(merged)
    else:
        changed = int((merged[[f"{c}_now" for c in others]].to_numpy()
                       != merged[[f"{c}_before" for c in others]].to_numpy()).any(axis=1).sum()) if others else 0
    return {"before": len(before), "now": len(now), "added": len(now) - len(merged),
            "removed": len(before) - len(merged), "changed": changed, "unchanged": len(merged) - changed}


def _students(rng: np.random.Generator, ids: np.ndarray, names: int) -> pd.DataFrame:
    pool = np.array(["Ann", "Bo", "", "Jo \"JJ\" Park", "Zoë", "a,b", "Lee", "O'Neil"])
    frame = pd.DataFrame({"person_id": [f"s{i}" for i in ids],
                          "first_name": pool[rng.integers(0, min(names, len(pool)), len(ids))],
                          "last_name": pool[rng.integers(0, len(pool), len(ids))],
                          "location_id": [f"l{i}" for i in rng.integers(0, 3, len(ids))]})
    return frame.astype("str")


@pytest.mark.parametrize("seed", range(6))
def test_row_snapshots_count_what_a_merge_of_the_rows_counts(tmp_path, seed):
    """Random joiners, leavers, renamed rows and orders: saved, loaded and compared, the counts are exact."""
    rng = np.random.default_rng(seed)
    before = _students(rng, rng.permutation(300)[:250], names=8)
    kept = before.sample(frac=0.8, random_state=seed)
    renamed = kept.copy()
    flip = rng.random(len(renamed)) < 0.1
    renamed.loc[flip, "last_name"] = renamed.loc[flip, "last_name"] + "x"
    now = pd.concat([renamed, _students(rng, np.arange(300, 300 + int(rng.integers(0, 40))), names=3)])
    now = now.sample(frac=1, random_state=seed) if seed % 2 else now  # in another order, or not
    previous = snapshot_of_tables({"students.csv": before, "rosters.csv": pd.DataFrame({"roster_id": ["r1"]})})
    save_snapshot(previous, tmp_path / "before.rows")
    loaded = load_snapshot(tmp_path / "before.rows")
    counts = compare(loaded, snapshot_of_tables({"students.csv": now}))
    assert counts["baseline"] is True
    assert counts["files"]["students.csv"] == _reference(before, now, "person_id")
    assert counts["files"]["rosters.csv"] == {"before": 1, "now": 0, "added": 0, "removed": 1, "changed": 0,
                                              "unchanged": 0}


def test_a_snapshot_made_from_frames_compares_as_one_read_from_the_delivered_zip(tmp_path):
    before, now = asm_zip(tmp_path / "before.zip", 100), asm_zip(tmp_path / "now.zip", 95, renamed=3)
    in_memory = snapshot_of_tables({name: read_table_bytes(zipfile.ZipFile(now).read(name), name, escape_char="\\")
                                    for name in HEADERS})
    assert compare(snapshot_of_zip(before), in_memory) == diff(before, now)


def test_a_snapshot_of_another_version_is_not_read(tmp_path, monkeypatch):
    save_snapshot(snapshot_of_zip(asm_zip(tmp_path / "a.zip", 5)), tmp_path / "a.rows")
    assert load_snapshot(tmp_path / "a.rows") is not None
    assert (tmp_path / "a.rows").stat().st_mode & 0o777 == 0o600
    monkeypatch.setattr(snapshot, "SNAPSHOT_VERSION", snapshot.SNAPSHOT_VERSION + 1)
    assert load_snapshot(tmp_path / "a.rows") is None


def test_a_delivery_without_asm_files_is_no_baseline(tmp_path):
    """An upload forwarded as it came (OneRoster) holds none of the six files: the next run is a first one."""
    with zipfile.ZipFile(tmp_path / "oneroster.zip", "w") as archive:
        archive.writestr("users.csv", "sourcedId\n1\n")
    empty = snapshot_of_zip(tmp_path / "oneroster.zip")
    assert empty.files == {}
    assert compare(empty, snapshot_of_zip(asm_zip(tmp_path / "a.zip", 5)))["baseline"] is False
