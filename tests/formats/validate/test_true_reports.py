"""Reports that say what is wrong, where it is (issue 11, "reports that are untrue").

Each test is one report the issue found untrue or misplaced, run through ``validate_dir``
on the valid fixtures with that one problem.
"""

from __future__ import annotations

from rostergate.formats.validate.entry import validate_dir
from tests.formats import conftest as kit


def _messages(result) -> str:
    return "\n".join(i.to_text() for i in result.issues)


def test_a_header_with_a_trailing_comma_is_not_told_it_has_no_rows(tmp_path):
    folder = kit.copy(kit.OR11, tmp_path / "u")
    data = (folder / "enrollments.csv").read_bytes()
    (folder / "enrollments.csv").write_bytes(data.replace(b"\n", b",\n", 1))
    result = validate_dir(folder)
    assert [(i.code, i.file, i.line) for i in result.issues] == [
        ("csv.header.trailing_separator", "enrollments.csv", 1)]
    assert "no data rows" not in _messages(result) and "absent" not in _messages(result)


def test_a_file_whose_every_row_is_unreadable_is_not_told_to_be_marked_absent(tmp_path):
    folder = kit.copy(kit.OR11, tmp_path / "u")
    table = kit.rows(folder / "enrollments.csv")
    kit.write_rows(folder / "enrollments.csv", [table[0]] + [row[:-2] for row in table[1:]])  # two values short
    result = validate_dir(folder)
    codes = {i.code for i in result.issues}
    assert "csv.header.width_mismatch" in codes and "oneroster.file.no_rows" not in codes
    assert "absent" not in _messages(result)


def test_a_manifest_whose_rows_end_in_an_empty_cell_is_read(tmp_path):
    folder = kit.copy(kit.OR11, tmp_path / "u")
    lines = (folder / "manifest.csv").read_bytes().splitlines()
    (folder / "manifest.csv").write_bytes(b"\n".join([lines[0], *(line + b"," for line in lines[1:])]) + b"\n")
    result = validate_dir(folder)
    assert [(i.code, i.line) for i in result.issues] == [("csv.trailing_separator", 2)]
    assert "lacks" not in _messages(result)


def test_a_repeated_asm_column_is_one_finding_with_no_internal_name_and_no_false_required(tmp_path):
    folder = kit.copy(kit.ASM, tmp_path / "u")
    table = kit.rows(folder / "students.csv")
    at = table[0].index("last_name")
    kit.write_rows(folder / "students.csv",
                   [[*r[:at], "last_name" if k == 0 else "", *r[at:]] for k, r in enumerate(table)])  # empty copy first
    result = validate_dir(folder, profile="asm")
    assert [(i.code, i.column) for i in result.issues] == [("csv.header.duplicate_column", "last_name")]
    assert "last_name.1" not in _messages(result)
    assert "positions 5, 6" in result.issues[0].message


def test_a_malformed_id_in_a_reference_is_named_as_such(tmp_path):
    oneroster = kit.copy(kit.OR12, tmp_path / "or")
    kit.edit(oneroster, "enrollments.csv", 2, "userSourcedId", "usr s1")
    (found,) = validate_dir(oneroster).issues
    assert (found.code, found.line, found.value) == ("oneroster.value.invalid_guid", 4, "usr s1")
    eleven = kit.copy(kit.OR11, tmp_path / "or11")
    kit.edit(eleven, "enrollments.csv", 2, "userSourcedId", "usr s1")
    (found,) = validate_dir(eleven).issues
    assert (found.code, found.severity) == ("oneroster.value.invalid_guid", "error")  # it resolves nowhere
    apple = kit.copy(kit.ASM, tmp_path / "asm")
    kit.edit(apple, "rosters.csv", 0, "student_id", "usr s1")
    codes = [(i.code, i.file) for i in validate_dir(apple).issues if i.severity == "error"]
    assert codes == [("asm.value.invalid_id", "rosters.csv")]


def test_the_empty_file_advice_for_an_asm_file_does_not_mention_the_manifest(tmp_path):
    folder = kit.copy(kit.ASM, tmp_path / "u")
    (folder / "courses.csv").write_bytes(b"")
    (found,) = [i for i in validate_dir(folder).issues if i.code == "csv.empty_file"]
    assert "manifest.csv" not in found.message and "absent" not in found.message


def test_a_header_over_64_kib_is_checked_as_written(tmp_path):
    folder = kit.copy(kit.OR11, tmp_path / "u")
    extra = [f"metadata.x{i:05d}" for i in range(6000)]  # ~95 KiB of extension columns
    table = kit.rows(folder / "orgs.csv")
    kit.write_rows(folder / "orgs.csv", [table[0] + extra] + [row + [""] * len(extra) for row in table[1:]])
    result = validate_dir(folder)
    assert result.issues == [], _messages(result)
