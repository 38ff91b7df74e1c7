"""Golden conversions: hand-computed ASM files for small districts full of edge cases.

Each fixture under tests/fixtures/convert/<name>/ has a sibling <name>-expected/ with
the six ASM files written by hand (see the comments in the fixture builder notes in
docs/mapping.md); the test compares bytes, drops and the accounting invariant.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest

from rostergate.formats.convert.entry import convert_dir, write_asm_zip

FIXTURES = Path(__file__).parents[2] / "fixtures" / "convert"
AS_OF = dt.date(2026, 11, 22)

DROPS_11 = {
    ("enrollments.csv", "class_missing", 1),       # e-old-class: c-old's course is deleted
    ("enrollments.csv", "duplicate_id", 1),        # second e-s1-math
    ("enrollments.csv", "duplicate_pair", 1),      # e-dup-pair: s1 in c-math twice
    ("enrollments.csv", "enrollment_role", 1),     # e-a1-art: aide enrolments are not instructors by default
    ("enrollments.csv", "instructor_limit", 2),    # e-big-15, e-big-16: teachers 16 and 17 of c-big
    ("enrollments.csv", "outside_dates", 3),       # ended, not begun, endDate == run date (exclusive)
    ("enrollments.csv", "tobedeleted", 1),
    ("enrollments.csv", "user_missing", 2),        # s4 (deleted), p1 (parent)
    ("enrollments.csv", "user_not_staff", 1),      # s2 enrolled as teacher
    ("enrollments.csv", "user_not_student", 1),    # t01 enrolled as student
    ("classes.csv", "course_missing", 1),          # c-old
    ("classes.csv", "tobedeleted", 1),             # c-del
    ("courses.csv", "location_missing", 1),        # crs-gone at the deleted org
    ("courses.csv", "tobedeleted", 1),             # crs-old
    ("orgs.csv", "duplicate_id", 1),               # second hs
    ("orgs.csv", "tobedeleted", 1),                # closed
    ("orgs.csv", "unreferenced", 1),               # unused
    ("users.csv", "disabled", 1),                  # s5
    ("users.csv", "duplicate_id", 1),              # second s1
    ("users.csv", "location_missing", 1),          # s6 only at the deleted org
    ("users.csv", "role_guardian", 1),
    ("users.csv", "role_parent", 1),
    ("users.csv", "tobedeleted", 1),               # s4
}

DROPS_12 = {
    ("users.csv", "disabled", 1),                  # s4
    ("users.csv", "no_role", 1),                   # nr1 has no roles.csv row
    ("users.csv", "location_missing", 1),          # s3's only role is at an unknown org
    ("users.csv", "role_parent", 1),               # par1
    ("roles.csv", "duplicate_id", 1),              # second r-s1-hs
    ("roles.csv", "tobedeleted", 1),               # r-del
    ("roles.csv", "outside_dates", 1),             # r-s2-old ended
    ("roles.csv", "user_missing", 2),              # r-s4 (disabled user), r-par1 (parent dropped)
    ("roles.csv", "location_missing", 1),          # r-s3 at "gone"
    ("roles.csv", "other_role", 2),                # tp1's parent role, dual's teacher role
    ("roles.csv", "duplicate_org", 1),             # dupOrg's aide role at the same school
    ("orgs.csv", "unreferenced", 1),               # dist
    ("enrollments.csv", "instructor_limit", 1),    # e16: teacher 16 of c-big
    ("enrollments.csv", "user_not_staff", 1),      # dual (a student) enrolled as teacher
    ("enrollments.csv", "enrollment_role", 1),     # pr1 as administrator
}


def _zip_texts(conversion, tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "out.zip"
    write_asm_zip(conversion, out)
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def _expected(name: str) -> dict[str, str]:
    folder = FIXTURES / f"{name}-expected"
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.csv"))}


@pytest.mark.parametrize("fixture,source_format,drops", [
    ("or11-district", "oneroster-1.1", DROPS_11),
    ("or12-district", "oneroster-1.2", DROPS_12),
])
def test_golden(tmp_path: Path, fixture: str, source_format: str, drops: set) -> None:
    conversion = convert_dir(FIXTURES / fixture, source_format, as_of=AS_OF)
    assert conversion.ok, conversion.issues
    got = _zip_texts(conversion, tmp_path)
    expected = _expected(fixture)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
    assert {(d.file, d.reason, d.count) for d in conversion.drops} == drops
    for file, count in conversion.counts.items():
        assert count.balanced, (file, count)
    # dropped_rows lists each dropped row once, with its line
    assert len(conversion.dropped_rows) == sum(d.count for d in conversion.drops)
    assert not conversion.dropped_rows.duplicated(["file", "line"]).any()


def test_golden_11_reports_lost_location_reference() -> None:
    conversion = convert_dir(FIXTURES / "or11-district", "oneroster-1.1", as_of=AS_OF)
    codes = {i.code: i for i in conversion.issues}
    lost = codes["convert.dropped.location_reference"]  # s7's "nowhere"
    assert (lost.file, lost.line, lost.column, lost.value) == ("users.csv", 8, "orgSourcedIds", "nowhere")
    limit = codes["convert.dropped.instructor_limit"]  # located at the first row dropped for it
    assert (limit.file, limit.line, limit.value) == ("enrollments.csv", 16, "e-big-15")
    assert limit.message.startswith("left out (2 row(s) in all): would be instructor number 16 or more")


@pytest.mark.parametrize("fixture,source_format", [
    ("or11-district", "oneroster-1.1"), ("or12-district", "oneroster-1.2"),
])
def test_golden_output_passes_the_asm_rules(tmp_path: Path, fixture: str, source_format: str) -> None:
    validate = pytest.importorskip("rostergate.formats.validate.entry").validate_dir
    out = tmp_path / "out.zip"
    write_asm_zip(convert_dir(FIXTURES / fixture, source_format, as_of=AS_OF), out)
    with zipfile.ZipFile(out) as archive:
        archive.extractall(tmp_path / "asm")
    result = validate(tmp_path / "asm", "asm", "asm")
    # warnings are fine when the data explains them (c-art really has no teacher)
    assert result.valid, [i.to_text() for i in result.issues]
