"""Safeguard: diffs between ASM ZIPs and the hold rules."""

import zipfile

import pytest

from rostergate import config
from rostergate.safeguard import Thresholds, diff, parse_thresholds, reasons_to_hold

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
