"""Snapshot: diffs between ASM ZIPs and row snapshots (formats/snapshot.py), and the hold rules applied to them
(formats/holdrules.py)."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from rostergate.formats import snapshot
from rostergate.formats.holdrules import Thresholds, reasons_to_hold
from rostergate.formats.read.csvio import read_table_bytes
from rostergate.formats.snapshot import (
    compare,
    diff,
    diff_records,
    load_snapshot,
    render_records,
    save_snapshot,
    snapshot_of_tables,
    snapshot_of_zip,
)

HEADERS = {
    "students.csv": "person_id,first_name,last_name,location_id",
    "staff.csv": "person_id,first_name,last_name,location_id",
    "courses.csv": "course_id,course_name,location_id",
    "classes.csv": "class_id,course_id,location_id",
    "rosters.csv": "roster_id,class_id,student_id",
    "locations.csv": "location_id,location_name",
}


def asm_zip(path, students: int, renamed: int = 0, rosters: int = 1, staff: int = 1):
    rows = {name: [] for name in HEADERS}
    rows["students.csv"] = [f"s{i},{'New' if i < renamed else 'Ann'},Lee,l1" for i in range(students)]
    rows["staff.csv"] = [f"t{i},Tom,Tee,l1" for i in range(staff)]
    rows["locations.csv"] = ["l1,School"]
    rows["rosters.csv"] = [f"r{i},c1,s{i}" for i in range(rosters)]
    with zipfile.ZipFile(path, "w") as archive:
        for name, header in HEADERS.items():
            archive.writestr(name, "\n".join([header, *rows[name]]) + "\n")
    return path


def test_first_delivery_has_no_baseline_and_is_not_judged_by_removals(tmp_path):
    summary = diff(None, asm_zip(tmp_path / "a.zip", 5))
    assert summary["baseline"] is False and summary["files"]["students.csv"]["added"] == 5
    assert reasons_to_hold(summary, Thresholds(min_previous_rows=0)) == []


@pytest.mark.parametrize("empty", ["students", "staff", "rosters"])
def test_a_delivery_without_students_staff_or_rosters_is_held_even_the_first(tmp_path, empty):
    """asm.md §2.3, §2.5: an empty students.csv (staff.csv, rosters.csv) tells Apple everyone left;
    with no previous delivery there is nothing to compare with, and it is held all the same."""
    counts = {"students": 5, "staff": 1, "rosters": 1, empty: 0}
    current = asm_zip(tmp_path / "now.zip", counts["students"], rosters=counts["rosters"], staff=counts["staff"])
    first = diff(None, current)
    (reason,) = reasons_to_hold(first, Thresholds())
    assert reason.startswith(f"{empty}.csv would be delivered with no rows in the account's first delivery")
    later = diff(asm_zip(tmp_path / "before.zip", 5, staff=1), current)
    (reason,) = reasons_to_hold(later, Thresholds())
    assert reason.startswith(f"{empty}.csv would go from ") and reason.endswith(" rows to none")
    assert reasons_to_hold(first, Thresholds(enabled=False)) == []  # the operator's switch


def test_a_delivery_of_other_files_is_not_judged_as_an_empty_asm_delivery(tmp_path):
    """A flow with output = "same" forwards OneRoster as it came: it has no students.csv to be empty."""
    path = tmp_path / "oneroster.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.csv", "propertyName,value\n")
        archive.writestr("users.csv", "sourcedId\nu1\n")
    summary = diff(None, path)
    assert summary["asm"] is False and summary["files"]["students.csv"]["now"] == 0
    assert reasons_to_hold(summary, Thresholds()) == []


def test_empty_courses_classes_or_locations_alone_do_not_hold_a_first_delivery(tmp_path):
    summary = diff(None, asm_zip(tmp_path / "a.zip", 5))
    assert summary["files"]["courses.csv"]["now"] == 0 and summary["files"]["classes.csv"]["now"] == 0
    assert reasons_to_hold(summary, Thresholds()) == []


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


# -- records: which ids were added, removed and changed ----------------------------------------
def test_records_name_the_ids_added_removed_and_changed_with_their_columns(tmp_path):
    before = [f"s{i},Ann,Lee,l1" for i in range(6)]
    now = ["s5,Ann,Lee,l1", "s4,Ann,Lee,l2", "s3,Bo,Li,l1", "s1,Ann,Lee,l1", "s0,Ann,Lee,l1", "s9,Cy,Ng,l1"]
    changes = diff_records(_students_zip(tmp_path / "b.zip", before), _students_zip(tmp_path / "n.zip", now))
    students = changes["records"]["students.csv"]
    assert students["added"] == ["s9"] and students["removed"] == ["s2"]
    assert students["changed"] == [{"id": "s4", "columns": ["location_id"]},
                                   {"id": "s3", "columns": ["first_name", "last_name"]}]  # in the upload's order
    assert changes["files"] == diff(tmp_path / "b.zip", tmp_path / "n.zip")["files"]  # the same comparison
    assert changes["totals"]["people"] == {"added": 1, "removed": 1, "changed": 2}
    assert changes["totals"]["classes"] == {"added": 0, "removed": 0, "changed": 0}


def test_values_are_given_only_when_asked_for(tmp_path):
    before = _students_zip(tmp_path / "b.zip", ["s1,Ann,Lee,l1", "s2,Ann,Lee,l1"])
    now = _students_zip(tmp_path / "n.zip", ["s1,Ann,Li,l1", "s2,Ann,Lee,l1"])
    assert "values" not in diff_records(before, now)["records"]["students.csv"]["changed"][0]
    shown = diff_records(before, now, show_values=True)["records"]["students.csv"]["changed"]
    assert shown == [{"id": "s1", "columns": ["last_name"], "values": {"last_name": ["Lee", "Li"]}}]
    assert "last_name: 'Lee' -> 'Li'" in render_records(diff_records(before, now, show_values=True))
    assert "'Lee'" not in render_records(diff_records(before, now))


def test_a_column_on_one_side_only_is_named_in_every_kept_record(tmp_path):
    before = _students_zip(tmp_path / "b.zip", ["s1,Ann,Lee,l1"])
    now = _students_zip(tmp_path / "n.zip", ["s1,Ann,Lee,l1,l2"], HEADERS["students.csv"] + ",location_id_2")
    changes = diff_records(before, now, show_values=True)
    assert changes["records"]["students.csv"]["changed"] == [
        {"id": "s1", "columns": ["location_id_2"], "values": {"location_id_2": [None, "l2"]}}]
    assert "(no such column) -> 'l2'" in render_records(changes)


def test_a_first_delivery_adds_every_record_and_staff_count_as_people(tmp_path):
    now = asm_zip(tmp_path / "n.zip", 3, rosters=2, staff=2)
    changes = diff_records(None, now)
    assert changes["baseline"] is False
    assert changes["records"]["students.csv"]["added"] == ["s0", "s1", "s2"]
    assert changes["records"]["staff.csv"]["added"] == ["t0", "t1"]
    assert changes["totals"]["people"]["added"] == 5 and changes["totals"]["enrollments"]["added"] == 2
    assert changes["totals"]["locations"]["added"] == 1


@pytest.mark.parametrize("seed", range(5))
def test_records_agree_with_the_counts_whatever_the_change(tmp_path, seed):
    import random

    rng = random.Random(seed)
    before = [f"s{i},{rng.choice('AB')},Lee,l1" for i in range(200)]
    kept = [row for row in before if rng.random() > 0.1]
    now = [row if rng.random() > 0.2 else row.replace("Lee", "Li") for row in kept]
    now += [f"n{i},C,Ng,l1" for i in range(rng.randrange(10))]
    rng.shuffle(now)
    changes = diff_records(_students_zip(tmp_path / "b.zip", before), _students_zip(tmp_path / "n.zip", now))
    counts, found = changes["files"]["students.csv"], changes["records"]["students.csv"]
    assert (len(found["added"]), len(found["removed"]), len(found["changed"])) == (
        counts["added"], counts["removed"], counts["changed"])
    assert set(found["removed"]) == {row.split(",")[0] for row in before} - {row.split(",")[0] for row in now}
    assert {c["id"] for c in found["changed"]} == {row.split(",")[0] for row in now if ",Li," in row}


def test_the_text_lists_at_most_the_limit_of_each(tmp_path):
    changes = diff_records(None, asm_zip(tmp_path / "n.zip", 30, staff=0))
    text = render_records(changes, limit=5)
    assert "students.csv: 30 added, 0 removed, 0 changed" in text
    assert "s0, s1, s2, s3, s4 ... and 25 more (--json lists all)" in text
    assert text.splitlines()[0].startswith("totals: people +30 -0 ~0")


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
