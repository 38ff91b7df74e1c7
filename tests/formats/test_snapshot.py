"""Snapshot: diffs between ASM ZIPs and the hold rules (formats/snapshot.py)."""

import zipfile

import pytest

from rostergate import config
from rostergate.formats.snapshot import Thresholds, diff, parse_thresholds, reasons_to_hold

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


def test_threshold_config_errors_name_their_keys(tmp_path):
    _, problems = parse_thresholds({"max_removed_percent": 150, "min_previous_rows": -1, "colour": 1},
                                   "flows[0].safeguards")
    assert problems == [
        "flows[0].safeguards.max_removed_percent: must be a number from 0 to 100",
        "flows[0].safeguards.min_previous_rows: must be a whole number >= 0",
        "flows[0].safeguards.colour: unknown key (enabled, max_removed_percent, min_previous_rows)",
    ]
    path = tmp_path / "c.toml"
    path.write_text(f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n'
                    "[flows.safeguards]\nmax_removed_percent = 25\n")
    assert config.load(path).flow_for("a").safeguards == Thresholds(max_removed_percent=25.0)
    path.write_text(path.read_text().replace("= 25", '= "lots"'))
    with pytest.raises(config.ConfigError, match=r"flows\[0\]\.safeguards\.max_removed_percent"):
        config.load(path)


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
