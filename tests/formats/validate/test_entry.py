"""Entry points: detection, missing files named, ZIP or folder, progress, profiles."""

from __future__ import annotations

import pytest

from rostergate.formats.read.detect import detect_format
from rostergate.formats.validate.entry import cannot_read, validate_asm_files, validate_dir, validate_path
from tests.formats import conftest as kit


@pytest.mark.parametrize("fixture, expected", [(kit.OR11, "oneroster-1.1"), (kit.OR12, "oneroster-1.2"),
                                               (kit.ASM, "asm")])
def test_detect_and_validate_valid_fixtures(fixture, expected, tmp_path):
    assert detect_format(fixture) == expected
    for profile in ("strict", "asm"):
        result = validate_path(fixture, profile=profile)
        assert (result.valid, result.format, result.issues) == (True, expected, [])
    z = kit.zip_folder(fixture, tmp_path / "u.zip")
    assert validate_path(z).to_dict() == {"valid": True, "format": expected, "issues": []}


def test_detect_unknown(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    assert detect_format(tmp_path) is None
    result = validate_dir(tmp_path)
    assert result.format is None and [i.code for i in result.issues] == ["format.unknown"]
    assert "manifest.csv" in result.issues[0].message and "x.txt" in result.issues[0].message


def test_oneroster_without_users_names_users_csv(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    (d / "users.csv").unlink()
    result = validate_dir(d)
    assert not result.valid
    assert any("users.csv" in i.message and i.severity == "error" for i in result.issues)
    kit.manifest_set(d, "file.users", "absent")
    result = validate_dir(d)
    assert [i.code for i in result.errors] == ["oneroster.reference.missing_target_file"]
    assert "users.csv" in result.errors[0].message


def test_asm_without_students_names_students_csv(tmp_path):
    d = kit.copy(kit.ASM, tmp_path / "u")
    (d / "students.csv").unlink()
    result = validate_path(d, format="asm")
    assert result.format == "asm" and not result.valid
    assert any("students.csv" in i.message for i in result.errors)


def test_asm_profile_softens_missing_sessions(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    (d / "academicSessions.csv").unlink()
    kit.manifest_set(d, "file.academicSessions", "absent")
    assert not validate_dir(d, profile="strict").valid
    result = validate_dir(d, profile="asm")
    assert result.valid
    assert {(i.severity, i.code, i.file) for i in result.issues} == {
        ("warning", "oneroster.reference.missing_target_file", "courses.csv"),
        ("warning", "oneroster.reference.missing_target_file", "classes.csv"),
    }


def test_progress_and_unreadable(tmp_path):
    seen: list[str] = []
    z = kit.zip_folder(kit.OR11, tmp_path / "u.zip")
    assert validate_path(z, progress=seen.append).valid
    assert seen[0] == "unpacking" and "reading users.csv" in seen and "checking values and references" in seen
    missing = validate_path(tmp_path / "nope.zip")
    assert cannot_read(missing) and not missing.valid
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert cannot_read(validate_path(tmp_path / "bad.zip"))


def test_explicit_format_and_bad_arguments(tmp_path):
    assert validate_dir(kit.OR12, format="oneroster").format == "oneroster-1.2"
    with pytest.raises(ValueError):
        validate_dir(kit.OR11, format="csv")
    with pytest.raises(ValueError):
        validate_dir(kit.OR11, profile="lenient")


def test_no_student_data_in_logs(tmp_path, caplog):
    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.edit(d, "students.csv", 0, "first_name", "SecretName")
    caplog.set_level("DEBUG")
    validate_dir(d)
    assert "SecretName" not in caplog.text


def test_ext_tokens_only_in_1_2(tmp_path):
    d12 = kit.copy(kit.OR12, tmp_path / "v12")
    kit.edit(d12, "classes.csv", 0, "classType", "ext:lab")
    kit.edit(d12, "orgs.csv", 1, "type", "ext:campus")  # a school-like ext: type may be referenced (§8)
    assert validate_dir(d12).valid
    d11 = kit.copy(kit.OR11, tmp_path / "v11")
    kit.edit(d11, "classes.csv", 0, "classType", "ext:lab")
    assert [i.code for i in validate_dir(d11).errors] == ["oneroster.value.invalid_enum"]


def test_guid_charset_is_a_warning_in_1_1(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    kit.edit(d, "enrollments.csv", 0, "sourcedId", "enr 1")
    result = validate_dir(d)
    assert result.valid and [(i.severity, i.code) for i in result.issues] == [
        ("warning", "oneroster.value.invalid_guid")]


def test_delta_file_rules(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    kit.manifest_set(d, "file.enrollments", "delta")
    for row in range(6):
        kit.edit(d, "enrollments.csv", row, "status", "active" if row else "tobedeleted")
        kit.edit(d, "enrollments.csv", row, "dateLastModified", "2026-08-15T10:00:00.000Z")
    kit.edit(d, "enrollments.csv", 5, "userSourcedId", "usr-known-to-receiver")  # delta: not checked
    assert validate_dir(d).issues == []
    result = validate_dir(d, profile="asm")
    assert [(i.severity, i.code) for i in result.issues] == [("warning", "oneroster.asm.delta_file")]


def test_asm_student_without_class_when_rosters_also_have_bad_references(tmp_path):
    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.add_row(d, "students.csv",
                {"person_id": "usr-s9", "first_name": "A", "last_name": "B", "location_id": "org-ms"})
    kit.add_row(d, "rosters.csv", {"roster_id": "r-9", "class_id": "cls-gone", "student_id": "usr-s1"})
    kit.add_row(d, "rosters.csv", {"roster_id": "r-10", "class_id": "cls-bio-1", "student_id": "usr-s1"})
    result = validate_dir(d)
    got = {(i.code, i.file, i.line) for i in result.issues}
    assert ("asm.student.no_class", "students.csv", 5) in got
    assert ("asm.reference.missing_record", "rosters.csv", 5) in got
    assert ("asm.value.duplicate_roster", "rosters.csv", 6) in got


def test_each_lost_zero_grade_gets_its_own_fix(tmp_path):
    d = kit.copy(kit.OR11, tmp_path / "u")
    kit.edit(d, "users.csv", 2, "grades", "9")
    kit.edit(d, "users.csv", 3, "grades", "7,KG")
    found = [(i.line, i.value, i.message.split(";")[1].strip()) for i in validate_dir(d).issues]
    assert (4, "9", "write '09'") in found and (5, "7", "write '07'") in found


def test_role_profile_of_the_same_user_is_fine(tmp_path):
    d = kit.copy(kit.OR12, tmp_path / "u")
    kit.manifest_set(d, "file.userProfiles", "bulk")
    (d / "userProfiles.csv").write_text(
        "sourcedId,status,dateLastModified,userSourcedId,profileType,vendorId,applicationId,description,"
        "credentialType,username,password\nprof-1,,,usr-s1,app,vendor,,,password,sadams,\n")
    kit.edit(d, "roles.csv", 3, "userProfileSourcedId", "prof-1")  # rol-s1 is usr-s1's
    assert validate_dir(d).issues == []


def test_delta_references_still_get_the_character_rule(tmp_path):
    d = kit.copy(kit.OR12, tmp_path / "u")
    kit.manifest_set(d, "file.enrollments", "delta")
    for row in range(6):
        kit.edit(d, "enrollments.csv", row, "status", "active")
        kit.edit(d, "enrollments.csv", row, "dateLastModified", "2026-08-15T10:00:00.000Z")
    kit.edit(d, "enrollments.csv", 0, "userSourcedId", "usr t1")
    assert [(i.code, i.column) for i in validate_dir(d).issues] == [("oneroster.value.invalid_guid", "userSourcedId")]


def test_asm_roster_references_name_their_column_and_target(tmp_path):
    """rosters.csv references are resolved with the pair check; each column still gets its own finding."""
    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.add_row(d, "rosters.csv", {"roster_id": "r-9", "class_id": "cls-gone", "student_id": "usr-s1"})
    kit.add_row(d, "rosters.csv", {"roster_id": "r-10", "class_id": "cls-bio-1", "student_id": "usr-gone"})
    result = validate_dir(d)
    found = [(i.line, i.column, i.value) for i in result.issues if i.code == "asm.reference.missing_record"]
    assert found == [(5, "class_id", "cls-gone"), (6, "student_id", "usr-gone")]
    messages = [i.message for i in result.issues if i.code == "asm.reference.missing_record"]
    assert "classes.csv" in messages[0] and "students.csv" in messages[1]


def test_asm_files_in_memory_get_the_same_findings_as_on_disk(tmp_path):
    """The converter's output is checked from its bytes; the findings must not depend on that."""
    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.add_row(d, "rosters.csv", {"roster_id": "r-9", "class_id": "cls-gone", "student_id": "usr-s1"})
    kit.edit(d, "staff.csv", 0, "location_id", "10")
    on_disk = validate_dir(d, "asm", "asm")
    in_memory = validate_asm_files({p.name: p.read_bytes() for p in d.iterdir()}, "asm")
    assert on_disk.issues and in_memory.issues == on_disk.issues
    assert in_memory.format == "asm" and not in_memory.valid


def test_asm_frames_in_memory_get_the_same_findings_as_their_bytes(tmp_path):
    """The output check reads a verbatim file's frame instead of parsing it: same findings."""
    from rostergate.formats.read.csvio import load_bytes
    from rostergate.formats.schema.asm import ESCAPE

    d = kit.copy(kit.ASM, tmp_path / "u")
    kit.add_row(d, "rosters.csv", {"roster_id": "r-9", "class_id": "cls-gone", "student_id": "usr-s1"})
    kit.add_row(d, "rosters.csv", {"roster_id": "r-9", "class_id": "cls-bio-1", "student_id": "usr-s1"})
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    frames = {name: load_bytes(data, name, escape_char=ESCAPE).frame for name, data in files.items()}
    from_bytes = validate_asm_files(files, "asm")
    from_frames = validate_asm_files(frames, "asm")
    assert {i.code for i in from_bytes.issues} >= {"asm.reference.missing_record", "asm.value.duplicate_id"}
    assert from_frames.issues == from_bytes.issues
