"""One failing and one passing fixture for every validator issue code in the catalogue.

Each case starts from a valid fixture (tests/fixtures/*-valid), breaks exactly
one thing, and expects the code; the same run on the untouched fixture (zipped
for archive codes) must not produce it. The converter's ``convert.*`` codes have
their cases in tests/formats/convert/test_convert_codes.py.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rostergate.formats.catalogue import CATALOGUE
from rostergate.formats.read.archive import ArchiveLimits
from rostergate.formats.validate.entry import validate_path
from tests.formats import conftest as kit
from tests.formats.conftest import ASM, OR11, OR12
from tests.formats.convert.test_convert_codes import CASES as CONVERT_CASES


@dataclass
class Case:
    base: Path
    mutate: Callable[[Path], Path | None]
    profile: str = "strict"
    options: dict = field(default_factory=dict)
    zipped: bool = False  # the passing run zips the fixture too


CASES: dict[str, Case] = {}


def case(code: str, base: Path, profile: str = "strict", zipped: bool = False, **options):
    def register(fn):
        CASES[code] = Case(base, fn, profile, options, zipped)
        return fn

    return register


def _zip(folder: Path, entries: dict[str, bytes] | None = None, **kw) -> Path:
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    files.update(entries or {})
    return kit.make_zip(folder.parent / "upload.zip", files, **kw)


# -- input / format ---------------------------------------------------------------------------------
@case("input.unreadable", OR11)
def _(d):
    return d.parent / "does-not-exist.zip"


@case("format.unknown", OR11)
def _(d):
    for p in d.iterdir():
        p.unlink()
    (d / "notes.txt").write_text("hello\n")


@case("internal.error", OR11)
def _(d):
    pytest.skip("covered by test_internal_error_is_reported (needs a monkeypatch)")


# -- archive ----------------------------------------------------------------------------------------
@case("archive.not_a_zip", OR11, zipped=True)
def _(d):
    p = d.parent / "upload.zip"
    p.write_bytes(b"this is not a zip file at all")
    return p


@case("archive.empty", OR11, zipped=True)
def _(d):
    return kit.make_zip(d.parent / "upload.zip", {"__MACOSX/._users.csv": b"x", ".DS_Store": b"x"})


@case("archive.path_traversal", OR11, zipped=True)
def _(d):
    return _zip(d, {"../evil.csv": b"a,b\n"})


@case("archive.absolute_path", OR11, zipped=True)
def _(d):
    return _zip(d, {"C:/evil.csv": b"a,b\n"})


@case("archive.backslash_path", OR11, zipped=True)
def _(d):
    return _zip(d, {"sub\\evil.csv": b"a,b\n"})


@case("archive.duplicate_name", OR11, zipped=True)
def _(d):
    p = _zip(d)
    with pytest.warns(UserWarning), zipfile.ZipFile(p, "a") as zf:
        zf.writestr("users.csv", b"x")
    return p


@case("archive.case_collision", OR11, zipped=True)
def _(d):
    return _zip(d, {"USERS.csv": (d / "users.csv").read_bytes()})


@case("archive.encrypted", OR11, zipped=True)
def _(d):
    p = _zip(d)
    kit.patch_central(p, 0, 8, "<H", 0x1)  # general purpose flag bit 0: encrypted
    return p


@case("archive.unsupported_entry", OR11, zipped=True)
def _(d):
    return _zip(d, {"link.csv": b"/etc/passwd"}, infos={"link.csv": {"external_attr": 0o120777 << 16}})


@case("archive.unsupported_compression", OR11, zipped=True)
def _(d):
    return _zip(d, infos={"users.csv": {"compress_type": zipfile.ZIP_BZIP2}})  # 7-Zip's "BZip2" method


@case("archive.overlapping_entries", OR11, zipped=True)
def _(d):
    p = _zip(d)
    kit.patch_central(p, 1, 42, "<I", 0)  # second entry's local header offset -> the first one's
    return p


@case("archive.too_many_entries", OR11, zipped=True, limits=ArchiveLimits(max_entries=8))
def _(d):
    return _zip(d, {f"extra{n}.txt": b"x" for n in range(3)})


@case("archive.entry_too_large", OR11, zipped=True, limits=ArchiveLimits(max_entry_size=20_000))
def _(d):
    return _zip(d, {"big.csv": bytes(range(256)) * 100})


@case("archive.too_large", OR11, zipped=True, limits=ArchiveLimits(max_total_size=20_000))
def _(d):
    return _zip(d, {"big.csv": bytes(range(256)) * 100})


@case("archive.compression_ratio", OR11, zipped=True)
def _(d):
    return _zip(d, {"padding.csv": b"\0" * (3 << 20)})


@case("archive.size_mismatch", OR11, zipped=True)
def _(d):
    p = _zip(d)
    with zipfile.ZipFile(p) as zf:
        index = [i.filename for i in zf.infolist()].index("users.csv")
        size = zf.getinfo("users.csv").file_size
    kit.patch_central(p, index, 24, "<I", size + 1000)
    return p


@case("archive.crc_mismatch", OR11, zipped=True)
def _(d):
    p = _zip(d)
    kit.patch_central(p, 0, 16, "<I", 0xDEADBEEF)
    return p


@case("archive.nested_zip", OR11, zipped=True)
def _(d):
    return _zip(d, {"inner.zip": b"PK\x05\x06" + b"\0" * 18})


@case("archive.nested_folder", OR11, zipped=True)
def _(d):
    return kit.zip_folder(d, d.parent / "upload.zip", prefix="export/")


@case("archive.too_deep", OR11, zipped=True)
def _(d):
    return kit.zip_folder(d, d.parent / "upload.zip", prefix="a/b/")


# -- text and CSV -----------------------------------------------------------------------------------
def _recode(d: Path, codec: str, name: str = "Zoë") -> None:
    kit.edit(d, "users.csv", 0, "givenName", name)
    text = (d / "users.csv").read_text(encoding="utf-8")
    (d / "users.csv").write_bytes(text.encode(codec))


@case("text.utf8_bom", OR11)
def _(d):
    (d / "users.csv").write_bytes(b"\xef\xbb\xbf" + (d / "users.csv").read_bytes())


@case("text.encoding_converted", OR11)
def _(d):
    _recode(d, "cp1252")


@case("text.encoding_rejected", OR11, encoding_policy="reject")
def _(d):
    _recode(d, "utf-16")


@case("text.encoding_invalid", OR11)
def _(d):
    (d / "users.csv").write_bytes((d / "users.csv").read_bytes() + b"usr-x,\x81\x8d\n")


@case("text.binary", OR11)
def _(d):
    (d / "users.csv").write_bytes(b"\x00\x01\x02\x03PK\x03\x04" * 10)


@case("text.delimiter", OR11)
def _(d):
    table = kit.rows(d / "users.csv")
    (d / "users.csv").write_text("\n".join(";".join(r) for r in table) + "\n")


@case("csv.empty_file", OR11)
def _(d):
    (d / "users.csv").write_bytes(b"")


@case("csv.parse_error", OR11)
def _(d):
    (d / "users.csv").write_bytes((d / "users.csv").read_bytes() + b"x" * (3 << 20) + b",1\n")  # a 3 MB row


@case("csv.row_width_mismatch", OR11)
def _(d):
    with open(d / "users.csv", "a") as fh:
        fh.write("usr-x,,,true,org-hs,student,x,,A,B,,,,,,,,,extra\n")


@case("csv.header.width_mismatch", OR11)
def _(d):
    table = kit.rows(d / "classes.csv")
    kit.write_rows(d / "classes.csv", [table[0] + ["room"]] + table[1:])  # in the header only: rows one value short


@case("csv.header.trailing_separator", OR11)
def _(d):
    data = (d / "courses.csv").read_bytes()
    (d / "courses.csv").write_bytes(data.replace(b"\n", b",\n", 1))  # "…,subjectCodes," over full rows


@case("csv.trailing_separator", OR11)
def _(d):
    lines = (d / "manifest.csv").read_bytes().split(b"\n")
    (d / "manifest.csv").write_bytes(b"\n".join([lines[0], *(line + b"," for line in lines[1:] if line)]) + b"\n")


@case("csv.bare_quote", OR11)
def _(d):
    kit.edit(d, "users.csv", 0, "givenName", "PLACEHOLDER")
    (d / "users.csv").write_bytes((d / "users.csv").read_bytes().replace(b"PLACEHOLDER", b'Sa"m'))


@case("csv.unterminated_quote", OR11)
def _(d):
    kit.edit(d, "users.csv", 2, "givenName", "PLACEHOLDER")
    (d / "users.csv").write_bytes((d / "users.csv").read_bytes().replace(b"PLACEHOLDER", b'"Sam'))


@case("csv.cr_line_ends", OR11)
def _(d):
    (d / "orgs.csv").write_bytes((d / "orgs.csv").read_bytes().replace(b"\n", b"\r"))


@case("csv.line_break_in_field", OR11)
def _(d):
    kit.edit(d, "users.csv", 1, "middleName", "J\nK")


@case("csv.header.duplicate_column", OR11)
def _(d):
    kit.insert_column(d, "users.csv", 18, "password")


@case("csv.header.empty_column", OR11)
def _(d):
    kit.insert_column(d, "users.csv", 18, "")


# -- ASM --------------------------------------------------------------------------------------------
@case("asm.file.missing", ASM)
def _(d):
    (d / "students.csv").unlink()


@case("asm.file.name_case", ASM)
def _(d):
    (d / "students.csv").rename(d / "Students.csv")


@case("asm.file.unexpected", ASM)
def _(d):
    (d / "teachers.csv").write_text("a\n1\n")


@case("asm.file.header_only", ASM)
def _(d):
    kit.header_only(d, "rosters.csv")


@case("asm.header.missing_column", ASM)
def _(d):
    kit.drop_column(d, "staff.csv", "sis_username")


@case("asm.header.unknown_column", ASM)
def _(d):
    kit.insert_column(d, "classes.csv", 7, "room")


@case("asm.header.column_limit", ASM)
def _(d):
    kit.insert_column(d, "classes.csv", 7, "instructor_id_16")


@case("asm.header.order", ASM)
def _(d):
    kit.swap_columns(d, "courses.csv", "course_number", "course_name")


@case("asm.value.required", ASM)
def _(d):
    kit.edit(d, "students.csv", 0, "last_name", "")


@case("asm.value.invalid_id", ASM)
def _(d):
    kit.edit(d, "rosters.csv", 0, "roster_id", "enr 3")


@case("asm.value.id_characters", ASM)
def _(d):
    kit.edit(d, "rosters.csv", 0, "roster_id", "enr_3")


@case("asm.value.too_long", ASM)
def _(d):
    kit.edit(d, "students.csv", 0, "first_name", "A" * 1100)


@case("asm.value.password_policy", ASM)
def _(d):
    kit.edit(d, "students.csv", 0, "password_policy", "5")


@case("asm.value.duplicate_id", ASM)
def _(d):
    kit.edit(d, "rosters.csv", 1, "roster_id", "enr-3")


@case("asm.value.person_in_both", ASM)
def _(d):
    kit.copy_row(d, "staff.csv", 0, person_id="usr-s1", email_address="x@example.org")


@case("asm.value.duplicate_email", ASM)
def _(d):
    kit.edit(d, "staff.csv", 0, "email_address", "SAdams@example.org")


@case("asm.value.duplicate_roster", ASM)
def _(d):
    kit.add_row(d, "rosters.csv", {"roster_id": "enr-9", "class_id": "cls-bio-1", "student_id": "usr-s1"})


@case("asm.class.too_many_instructors", ASM)
def _(d):
    for n in range(4, 18):
        kit.insert_column(d, "classes.csv", 6, f"instructor_id_{n}", "usr-t1")


@case("asm.class.no_instructor", ASM)
def _(d):
    kit.edit(d, "classes.csv", 1, "instructor_id", "")


@case("asm.student.no_class", ASM)
def _(d):
    kit.add_row(d, "students.csv", {"person_id": "usr-s9", "first_name": "New", "last_name": "Kid",
                                    "location_id": "org-ms"})


@case("asm.reference.missing_record", ASM)
def _(d):
    kit.edit(d, "staff.csv", 0, "location_id", "10")


# -- OneRoster manifest -----------------------------------------------------------------------------
@case("oneroster.manifest.missing", OR11)
def _(d):
    (d / "manifest.csv").unlink()


@case("oneroster.manifest.invalid_header", OR11)
def _(d):
    kit.rename_column(d, "manifest.csv", "propertyName", "property")


@case("oneroster.manifest.duplicate_property", OR11)
def _(d):
    kit.add_row(d, "manifest.csv", {"propertyName": "file.users", "value": "bulk"})


@case("oneroster.manifest.unknown_property", OR11)
def _(d):
    kit.manifest_set(d, "file.roles", "absent")  # a 1.2 file in a 1.1 manifest


@case("oneroster.manifest.missing_property", OR11)
def _(d):
    kit.manifest_set(d, "file.categories", None)


@case("oneroster.manifest.invalid_value", OR11)
def _(d):
    kit.manifest_set(d, "file.categories", "none")


@case("oneroster.manifest.version_excel", OR11)
def _(d):
    kit.manifest_set(d, "manifest.version", "1")


@case("oneroster.manifest.unsupported_version", OR11)
def _(d):
    kit.manifest_set(d, "oneroster.version", "1.0")


@case("oneroster.manifest.version_guessed", OR12)
def _(d):
    kit.manifest_set(d, "oneroster.version", None)  # roles.csv says 1.2: checked as 1.2, and the report says why


@case("oneroster.manifest.file_missing", OR11)
def _(d):
    (d / "users.csv").unlink()


@case("oneroster.manifest.file_unexpected", OR11)
def _(d):
    kit.manifest_set(d, "file.academicSessions", "absent")


# -- OneRoster files and headers ---------------------------------------------------------------------
@case("oneroster.file.unknown", OR11)
def _(d):
    (d / "extras.csv").write_text("sourcedId\nx\n")


@case("oneroster.file.name_case", OR11)
def _(d):
    (d / "academicSessions.csv").rename(d / "academicsessions.csv")


@case("oneroster.file.no_rows", OR11)
def _(d):
    kit.header_only(d, "courses.csv")


@case("oneroster.asm.required_file", OR11, profile="asm")
def _(d):
    (d / "enrollments.csv").unlink()
    kit.manifest_set(d, "file.enrollments", "absent")


@case("oneroster.header.missing_column", OR11)
def _(d):
    kit.drop_column(d, "users.csv", "middleName")


@case("oneroster.header.column_case", OR11)
def _(d):
    kit.rename_column(d, "users.csv", "givenName", "givenname")


@case("oneroster.header.order", OR11)
def _(d):
    kit.swap_columns(d, "users.csv", "givenName", "familyName")


@case("oneroster.header.unknown_column", OR11)
def _(d):
    kit.insert_column(d, "users.csv", 18, "nickname")


@case("oneroster.header.metadata_position", OR11)
def _(d):
    kit.insert_column(d, "orgs.csv", 6, "metadata.boarding")


@case("oneroster.header.users_1_2_0", OR12)
def _(d):
    kit.insert_column(d, "users.csv", 17, "resourceSourcedIds")


# -- OneRoster values --------------------------------------------------------------------------------
@case("oneroster.value.required", OR11)
def _(d):
    kit.edit(d, "users.csv", 0, "givenName", "")


@case("oneroster.value.invalid_guid", OR12)
def _(d):
    kit.edit(d, "roles.csv", 0, "sourcedId", "rol t1")


@case("oneroster.value.invalid_date", OR11)
def _(d):
    kit.edit(d, "academicSessions.csv", 0, "endDate", "2027-02-30")


@case("oneroster.value.invalid_datetime", OR11)
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")
    for row in range(3):
        kit.edit(d, "orgs.csv", row, "status", "active")
        kit.edit(d, "orgs.csv", row, "dateLastModified", "yesterday")


@case("oneroster.value.impossible_datetime", OR11)
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")
    for row in range(3):
        kit.edit(d, "orgs.csv", row, "status", "active")
        kit.edit(d, "orgs.csv", row, "dateLastModified", "2026-08-15T10:00:00.000Z")
    kit.edit(d, "orgs.csv", 1, "dateLastModified", "2026-13-45T25:61:00.000Z")


@case("oneroster.value.datetime_loose", OR11)
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")
    for row in range(3):
        kit.edit(d, "orgs.csv", row, "status", "active")
        kit.edit(d, "orgs.csv", row, "dateLastModified", "2017-05-06 08:01:05")


@case("oneroster.value.datetime_not_canonical", OR12)
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")
    for row in range(3):
        kit.edit(d, "orgs.csv", row, "status", "active")
        kit.edit(d, "orgs.csv", row, "dateLastModified", "2026-08-15T10:00:00Z")


@case("oneroster.value.invalid_year", OR11)
def _(d):
    kit.edit(d, "academicSessions.csv", 0, "schoolYear", "27")


@case("oneroster.value.invalid_boolean", OR11)
def _(d):
    kit.edit(d, "users.csv", 0, "enabledUser", "yes")


@case("oneroster.value.boolean_case", OR11)
def _(d):
    kit.edit(d, "users.csv", 0, "enabledUser", "TRUE")


@case("oneroster.value.invalid_enum", OR11)
def _(d):
    kit.edit(d, "classes.csv", 0, "classType", "Scheduled")


@case("oneroster.value.invalid_number", OR12)
def _(d):
    kit.manifest_set(d, "file.categories", "bulk")
    (d / "categories.csv").write_text("sourcedId,status,dateLastModified,title,weight\ncat-1,,,Homework,heavy\n")


@case("oneroster.value.invalid_score_scale", OR12)
def _(d):
    kit.gradebook(d, scoreScales={"scoreScaleValue": "A:94,B:85"})


@case("oneroster.value.invalid_case_id", OR12)
def _(d):
    kit.gradebook(d, lineItemLearningObjectiveIds={"learningObjectiveId": "6b3b2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"})


@case("oneroster.lineitem.min_above_max", OR12)
def _(d):
    kit.gradebook(d, lineItems={"resultValueMin": "100", "resultValueMax": "10"}, results={"score": ""})


@case("oneroster.result.score_above_max", OR12)
def _(d):
    kit.gradebook(d, results={"score": "104"})


@case("oneroster.result.score_below_min", OR12)
def _(d):
    kit.gradebook(d, results={"score": "-1"})


@case("oneroster.value.invalid_list", OR11)
def _(d):
    kit.edit(d, "classes.csv", 0, "termSourcedIds", "as-2026,")


@case("oneroster.value.padded_list_item", OR11)
def _(d):
    kit.edit(d, "users.csv", 1, "orgSourcedIds", "org-hs, org-ms")


@case("oneroster.value.invalid_user_ids", OR11)
def _(d):
    kit.edit(d, "users.csv", 0, "userIds", "LDAP:12")


@case("oneroster.value.unknown_grade", OR11)
def _(d):
    kit.edit(d, "users.csv", 2, "grades", "Grade 9")


@case("oneroster.value.grade_leading_zero", OR11)
def _(d):
    kit.edit(d, "users.csv", 2, "grades", "9")


@case("oneroster.value.list_length_mismatch", OR12)
def _(d):
    kit.edit(d, "courses.csv", 0, "subjects", "Science,Biology")


@case("oneroster.value.date_range", OR11)
def _(d):
    kit.edit(d, "academicSessions.csv", 0, "startDate", "2027-08-15")


@case("oneroster.value.duplicate_sourced_id", OR11)
def _(d):
    kit.edit(d, "enrollments.csv", 1, "sourcedId", "enr-1")


@case("oneroster.status.forbidden_in_bulk", OR11)
def _(d):
    kit.edit(d, "orgs.csv", 0, "status", "active")


@case("oneroster.status.required_in_delta", OR11)
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")


# -- OneRoster references and semantics ---------------------------------------------------------------
@case("oneroster.reference.missing_target_file", OR11)
def _(d):
    (d / "academicSessions.csv").unlink()
    kit.manifest_set(d, "file.academicSessions", "absent")


@case("oneroster.reference.missing_record", OR11)
def _(d):
    kit.edit(d, "enrollments.csv", 2, "userSourcedId", "usr-zz")


@case("oneroster.reference.not_a_school", OR11)
def _(d):
    kit.edit(d, "enrollments.csv", 2, "schoolSourcedId", "org-district")


@case("oneroster.reference.not_a_school_year", OR12)
def _(d):
    kit.edit(d, "courses.csv", 0, "schoolYearSourcedId", "as-2026-s1")


@case("oneroster.reference.parent_cycle", OR11)
def _(d):
    kit.edit(d, "orgs.csv", 0, "parentSourcedId", "org-hs")  # district -> school -> district


@case("oneroster.roles.primary_org_without_role", OR12)
def _(d):
    kit.edit(d, "users.csv", 4, "primaryOrgSourcedId", "org-hs")  # usr-s3's role is at org-ms


@case("oneroster.roles.profile_of_other_user", OR12)
def _(d):
    kit.manifest_set(d, "file.userProfiles", "bulk")
    (d / "userProfiles.csv").write_text(
        "sourcedId,status,dateLastModified,userSourcedId,profileType,vendorId,applicationId,description,"
        "credentialType,username,password\nprof-1,,,usr-s1,app,vendor,,,password,sadams,\n")
    kit.edit(d, "roles.csv", 4, "userProfileSourcedId", "prof-1")  # rol-s2 belongs to usr-s2


@case("oneroster.enrollment.multiple_primary", OR11)
def _(d):
    kit.edit(d, "enrollments.csv", 1, "primary", "true")


@case("oneroster.enrollment.primary_not_teacher", OR11)
def _(d):
    kit.edit(d, "enrollments.csv", 2, "primary", "true")


@case("oneroster.roles.multiple_primary", OR12)
def _(d):
    kit.edit(d, "roles.csv", 2, "orgSourcedId", "org-hs")
    kit.edit(d, "roles.csv", 2, "roleType", "primary")


@case("oneroster.asm.role_unsupported", OR11, profile="asm")
def _(d):
    kit.edit(d, "users.csv", 0, "role", "aide")


@case("oneroster.asm.org_type_unsupported", OR11, profile="asm")
def _(d):
    kit.copy_row(d, "orgs.csv", 0, sourcedId="org-dept", type="department")


@case("oneroster.asm.invalid_id", OR12, profile="asm")
def _(d):
    kit.rename_user(d, "usr-s1", "usr-s1@north")  # legal in OneRoster 1.2, not in ASM


@case("oneroster.asm.id_characters", OR11, profile="asm")
def _(d):
    kit.edit(d, "courses.csv", 0, "sourcedId", "crs_bio")
    kit.edit(d, "classes.csv", 0, "courseSourcedId", "crs_bio")


@case("oneroster.asm.too_long", OR11, profile="asm")
def _(d):
    kit.edit(d, "orgs.csv", 1, "name", "Fixture High School " * 60)


@case("oneroster.asm.delta_file", OR11, profile="asm")
def _(d):
    kit.manifest_set(d, "file.orgs", "delta")


# -- the tests ----------------------------------------------------------------------------------------
def _run(c: Case, target: Path):
    return validate_path(target, profile=c.profile, **c.options)


def test_every_catalogue_code_has_a_case():
    """Every code has its cases: the validator's here, the converter's (``convert.*``) in
    tests/formats/convert/test_convert_codes.py, which runs them through ``convert_dir``."""
    assert set(CASES).isdisjoint(CONVERT_CASES)
    covered = set(CASES) | set(CONVERT_CASES)
    assert set(CATALOGUE) - covered == set()
    assert covered - set(CATALOGUE) == set()


@pytest.mark.parametrize("code", sorted(CASES))
def test_failing_fixture_reports_code(code, tmp_path):
    c = CASES[code]
    folder = kit.copy(c.base, tmp_path / "upload")
    target = c.mutate(folder) or folder
    result = _run(c, target)
    found = [i for i in result.issues if i.code == code]
    assert found, f"{code} not reported; got {[(i.code, i.message) for i in result.issues]}"
    assert all(i.code != "internal.error" for i in result.issues)
    issue = found[0]
    assert issue.message and ";" in issue.message  # reason; hint
    if issue.line is not None:
        assert issue.line >= 1


@pytest.mark.parametrize("code", sorted(CASES))
def test_passing_fixture_does_not_report_code(code, tmp_path):
    c = CASES[code]
    target = kit.copy(c.base, tmp_path / "upload")
    if c.zipped:
        target = kit.zip_folder(target, tmp_path / "upload.zip")
    result = _run(c, target)
    assert code not in {i.code for i in result.issues}
    assert result.valid, [i.to_text() for i in result.issues]


def test_internal_error_is_reported(tmp_path, monkeypatch):
    import rostergate.formats.validate.entry as v

    def boom(*a, **k):
        raise RuntimeError("secret student value")

    monkeypatch.setattr(v, "validate_oneroster", boom)
    result = v.validate_dir(OR11)
    (issue,) = result.issues
    assert issue.code == "internal.error" and "secret" not in issue.message
    assert not result.valid
