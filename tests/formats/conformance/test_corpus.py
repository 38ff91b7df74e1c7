"""The conformance corpus: for every rule, the smallest package that breaks only that rule.

In the style of the peer suites (oneroster.md §11: the 1EdTech test set, one invalid package
per rule): each case starts from :func:`~.packages.minimal` of OneRoster 1.1, 1.2 or Apple
School Manager, breaks one rule, and the validator must report exactly that code, nothing
more (``also`` lists the rare codes that are the same finding seen from another side, such as
the version guess that follows a missing manifest). The untouched minimal packages report
nothing at all. Every rule the validator has is here, for every format it applies to.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rostergate.formats.catalogue import CATALOGUE
from rostergate.formats.read.archive import ArchiveLimits
from rostergate.formats.schema import oneroster as S
from rostergate.formats.validate.entry import validate_path
from tests.formats import conftest as kit

from .packages import FORMATS, Package, minimal, with_gradebook, write

ALL = FORMATS
OR = ("1.1", "1.2")
APPLE = ("asm",)
OK_DATETIME = "2026-08-15T10:00:00.000Z"


@dataclass
class Case:
    formats: tuple[str, ...]
    build: Callable[[Package, Path], Path]
    profile: str = "strict"
    also: frozenset[str] = frozenset()
    options: dict = field(default_factory=dict)


CORPUS: dict[str, Case] = {}


def rule(code: str, formats: tuple[str, ...] = ALL, *, profile: str = "strict", also: tuple[str, ...] = (),
         **options):
    """A case that edits the package: ``fn(package)``; the package is then written as a folder."""
    def register(fn: Callable[[Package], None]):
        def build(p: Package, tmp: Path) -> Path:
            fn(p)
            return write(p, tmp / "upload")
        CORPUS[code] = Case(formats, build, profile, frozenset(also), options)
        return fn
    return register


def archive(code: str, **options):
    """A case about the ZIP: ``fn(folder, package)`` returns the upload made from the written folder."""
    def register(fn: Callable[[Path, Package], Path]):
        def build(p: Package, tmp: Path) -> Path:
            return fn(write(p, tmp / "upload"), p)
        CORPUS[code] = Case(ALL, build, options=options)
        return fn
    return register


def people(p: Package) -> str:
    return "users.csv" if p.oneroster else "students.csv"


def leaf(p: Package) -> str:
    """A file nothing else refers to: breaking it breaks no reference."""
    return "enrollments.csv" if p.oneroster else "rosters.csv"


def given(p: Package) -> str:
    return "givenName" if p.oneroster else "first_name"


def _zip(folder: Path, extra: dict[str, bytes] | None = None, prefix: str = "", **kw) -> Path:
    files = {prefix + f.name: f.read_bytes() for f in sorted(folder.iterdir())}
    return kit.make_zip(folder.parent / "upload.zip", {**files, **(extra or {})}, **kw)


# -- the input as a whole ----------------------------------------------------------------------------
@rule("input.unreadable")
def _(p):
    pass


CORPUS["input.unreadable"].build = lambda p, tmp: tmp / "no-such-upload.zip"


@rule("format.unknown")
def _(p):
    p.tables.clear()
    p.raw["notes.txt"] = b"hello\n"


@archive("archive.not_a_zip")
def _(folder, p):
    target = folder.parent / "upload.zip"
    target.write_bytes(b"this is not a zip file at all")
    return target


@archive("archive.empty")
def _(folder, p):
    return kit.make_zip(folder.parent / "upload.zip", {})


@archive("archive.path_traversal")
def _(folder, p):
    return _zip(folder, {"../evil.csv": b"a,b\n"})


@archive("archive.absolute_path")
def _(folder, p):
    return _zip(folder, {"C:/evil.csv": b"a,b\n"})


@archive("archive.backslash_path")
def _(folder, p):
    return _zip(folder, {"sub\\evil.csv": b"a,b\n"})


@archive("archive.duplicate_name")
def _(folder, p):
    target = _zip(folder)
    with pytest.warns(UserWarning), zipfile.ZipFile(target, "a") as archive:
        archive.writestr(leaf(p), b"x")
    return target


@archive("archive.case_collision")
def _(folder, p):
    return _zip(folder, {leaf(p).upper(): (folder / leaf(p)).read_bytes()})


@archive("archive.encrypted")
def _(folder, p):
    target = _zip(folder)
    kit.patch_central(target, 0, 8, "<H", 0x1)
    return target


@archive("archive.unsupported_entry")
def _(folder, p):
    return _zip(folder, {"link.csv": b"/etc/passwd"}, infos={"link.csv": {"external_attr": 0o120777 << 16}})


@archive("archive.unsupported_compression")
def _(folder, p):
    return _zip(folder, infos={leaf(p): {"compress_type": zipfile.ZIP_BZIP2}})


@archive("archive.overlapping_entries")
def _(folder, p):
    target = _zip(folder)
    kit.patch_central(target, 1, 42, "<I", 0)
    return target


@archive("archive.too_many_entries", limits=ArchiveLimits(max_entries=6))
def _(folder, p):
    return _zip(folder, {f"extra{n}.txt": b"x" for n in range(6)})


@archive("archive.entry_too_large", limits=ArchiveLimits(max_entry_size=5000))
def _(folder, p):
    return _zip(folder, {"big.csv": bytes(range(256)) * 30})


@archive("archive.too_large", limits=ArchiveLimits(max_total_size=5000))
def _(folder, p):
    return _zip(folder, {"big.csv": bytes(range(256)) * 30})


@archive("archive.compression_ratio")
def _(folder, p):
    return _zip(folder, {"padding.csv": b"\0" * (3 << 20)})


@archive("archive.size_mismatch")
def _(folder, p):
    target = _zip(folder)
    with zipfile.ZipFile(target) as z:
        names = [i.filename for i in z.infolist()]
        size = z.getinfo(leaf(p)).file_size
    kit.patch_central(target, names.index(leaf(p)), 24, "<I", size + 1000)
    return target


@archive("archive.crc_mismatch")
def _(folder, p):
    target = _zip(folder)
    kit.patch_central(target, 0, 16, "<I", 0xDEADBEEF)
    return target


@archive("archive.nested_zip")
def _(folder, p):
    return _zip(folder, {"inner.zip": b"PK\x05\x06" + b"\0" * 18})


@archive("archive.nested_folder")
def _(folder, p):
    return _zip(folder, prefix="export/")


@archive("archive.too_deep")
def _(folder, p):
    return _zip(folder, prefix="a/b/")


CORPUS["archive.too_deep"].also = frozenset({"archive.nested_folder"})  # the outer folder is one too


# -- text ---------------------------------------------------------------------------------------------
@rule("text.utf8_bom")
def _(p):
    p.raw[people(p)] = b"\xef\xbb\xbf" + p.bytes_of(people(p))


@rule("text.encoding_converted")
def _(p):
    p.set(people(p), 0, **{given(p): "Zoë"})
    p.raw[people(p)] = p.bytes_of(people(p)).decode().encode("cp1252")


@rule("text.encoding_rejected", encoding_policy="reject")
def _(p):
    p.raw[leaf(p)] = p.bytes_of(leaf(p)).decode().encode("utf-16")


@rule("text.encoding_invalid")
def _(p):
    p.raw[leaf(p)] = p.bytes_of(leaf(p)) + b"x\x81\x8d\n"


@rule("text.binary")
def _(p):
    p.raw[leaf(p)] = b"\x00\x01\x02\x03PK\x03\x04" * 10


@rule("text.delimiter")
def _(p):
    separator = b";" if p.oneroster else b"\t"  # Apple accepts semicolons (asm.md §1.1)
    p.raw[leaf(p)] = p.bytes_of(leaf(p)).replace(b",", separator)


# -- the CSV itself ----------------------------------------------------------------------------------
@rule("csv.empty_file")
def _(p):
    p.raw[leaf(p)] = b""


@rule("csv.parse_error")
def _(p):
    p.raw[leaf(p)] = p.bytes_of(leaf(p)) + b"x" * (3 << 20) + b",1\n"


@rule("csv.row_width_mismatch")
def _(p):
    p.raw[leaf(p)] = p.bytes_of(leaf(p)) + b"x9,k1,s1,extra,,,,,,,,,\n"


@rule("csv.header.width_mismatch")
def _(p):
    if p.oneroster:  # an extension column in the header, with no value on any row
        p.raw[leaf(p)] = p.bytes_of(leaf(p)).replace(b"endDate\n", b"endDate,metadata.room\n", 1)
    else:
        header = b"location_id,class_display_name\n"
        p.raw["classes.csv"] = p.bytes_of("classes.csv").replace(b"location_id\n", header, 1)


@rule("csv.header.trailing_separator")
def _(p):
    p.raw[leaf(p)] = p.bytes_of(leaf(p)).replace(b"\n", b",\n", 1)


@rule("csv.trailing_separator")
def _(p):
    name = "manifest.csv" if p.oneroster else leaf(p)
    head, _, body = p.bytes_of(name).partition(b"\n")
    p.raw[name] = head + b"\n" + body.replace(b"\n", b",\n")


@rule("csv.bare_quote")
def _(p):
    p.set(people(p), 0, **{given(p): "PLACEHOLDER"}).edit_bytes(people(p), b"PLACEHOLDER", b'An"n')


@rule("csv.unterminated_quote")
def _(p):
    name = leaf(p)
    last = len(p.tables[name]) - 1
    p.set(name, last, sourcedId="PLACEHOLDER") if p.oneroster else p.set(name, last, roster_id="PLACEHOLDER")
    p.edit_bytes(name, b"PLACEHOLDER", b'"e9')


@rule("csv.cr_line_ends")
def _(p):
    name = "orgs.csv" if p.oneroster else "locations.csv"
    p.raw[name] = p.bytes_of(name).replace(b"\n", b"\r")


@rule("csv.line_break_in_field")
def _(p):
    p.set(people(p), 0, **{"middleName" if p.oneroster else "middle_name": "J\nK"})


@rule("csv.header.duplicate_column")
def _(p):
    name, column = (("users.csv", "password") if p.oneroster else ("students.csv", "sis_username"))
    p.column(name, [*p.header(name), column])


@rule("csv.header.empty_column")
def _(p):
    p.column(people(p), [*p.header(people(p)), ""])


# -- Apple School Manager -------------------------------------------------------------------------------
@rule("asm.file.missing", APPLE)
def _(p):
    p.drop("locations.csv")


@rule("asm.file.name_case", APPLE)
def _(p):
    p.tables["Students.csv"] = p.tables.pop("students.csv")
    p.headers["Students.csv"] = p.header("students.csv")


@rule("asm.file.unexpected", APPLE)
def _(p):
    p.raw["teachers.csv"] = b"a\n1\n"


@rule("asm.file.header_only", APPLE)
def _(p):
    p.tables["rosters.csv"] = []


@rule("asm.header.missing_column", APPLE)
def _(p):
    p.column("staff.csv", [c for c in p.header("staff.csv") if c != "sis_username"])


@rule("asm.header.unknown_column", APPLE)
def _(p):
    p.column("classes.csv", [*p.header("classes.csv"), "room"]).set("classes.csv", 0, room="12")


@rule("asm.header.column_limit", APPLE)
def _(p):
    p.column("classes.csv", [*p.header("classes.csv"), "instructor_id_16"])


@rule("asm.header.order", APPLE)
def _(p):
    header = p.header("courses.csv")
    a, b = header.index("course_number"), header.index("course_name")
    header[a], header[b] = header[b], header[a]
    p.column("courses.csv", header)


@rule("asm.value.required", APPLE)
def _(p):
    p.set("students.csv", 0, last_name="")


@rule("asm.value.invalid_id", APPLE)
def _(p):
    p.set("rosters.csv", 0, roster_id="e 1")


@rule("asm.value.id_characters", APPLE)
def _(p):
    p.set("rosters.csv", 0, roster_id="e_1")


@rule("asm.value.too_long", APPLE)
def _(p):
    p.set("students.csv", 0, first_name="A" * 1100)


@rule("asm.value.password_policy", APPLE)
def _(p):
    p.set("students.csv", 0, password_policy="5")


@rule("asm.value.duplicate_id", APPLE)
def _(p):
    p.add("courses.csv", course_id="c1", course_name="Art again", location_id="sch")


@rule("asm.value.person_in_both", APPLE)
def _(p):
    p.add("staff.csv", person_id="s1", first_name="Ann", last_name="Lee", location_id="sch")


@rule("asm.value.duplicate_email", APPLE)
def _(p):
    p.set("students.csv", 0, email_address="lee@example.org").set("staff.csv", 0, email_address="LEE@example.org")


@rule("asm.value.duplicate_roster", APPLE)
def _(p):
    p.add("rosters.csv", roster_id="e2", class_id="k1", student_id="s1")


@rule("asm.class.too_many_instructors", APPLE)
def _(p):
    extra = [f"instructor_id_{n}" for n in range(2, 17)]
    p.column("classes.csv", [*p.header("classes.csv"), *[c for c in extra if c not in p.header("classes.csv")]])
    p.set("classes.csv", 0, **{c: "t1" for c in extra})


CORPUS["asm.class.too_many_instructors"].also = frozenset({"asm.header.column_limit"})  # instructor_id_16 itself


@rule("asm.class.no_instructor", APPLE)
def _(p):
    p.set("classes.csv", 0, instructor_id="")


@rule("asm.student.no_class", APPLE)
def _(p):
    p.add("students.csv", person_id="s2", first_name="Bo", last_name="Ng", location_id="sch")


@rule("asm.reference.missing_record", APPLE)
def _(p):
    p.set("staff.csv", 0, location_id="zzz")


# -- OneRoster: the manifest ------------------------------------------------------------------------------
@rule("oneroster.manifest.missing", OR, also=("oneroster.manifest.version_guessed",))
def _(p):
    p.drop("manifest.csv")


@rule("oneroster.manifest.invalid_header", OR)
def _(p):
    p.column("manifest.csv", ["property", "value"])
    for row in p.tables["manifest.csv"]:
        row["property"] = row["propertyName"]


@rule("oneroster.manifest.duplicate_property", OR)
def _(p):
    p.tables["manifest.csv"].append({"propertyName": "file.users", "value": "bulk"})


@rule("oneroster.manifest.unknown_property", OR)
def _(p):
    p.manifest("file.roles" if p.format == "1.1" else "file.widgets", "absent")


@rule("oneroster.manifest.missing_property", OR)
def _(p):
    p.manifest("file.categories", None)


@rule("oneroster.manifest.invalid_value", OR)
def _(p):
    p.manifest("file.categories", "none")


@rule("oneroster.manifest.version_excel", OR)
def _(p):
    p.manifest("manifest.version", "1")


@rule("oneroster.manifest.unsupported_version", OR)
def _(p):
    p.manifest("oneroster.version", "2.0")


@rule("oneroster.manifest.version_guessed", OR, also=("oneroster.manifest.missing_property",))
def _(p):
    p.manifest("oneroster.version", None)


@rule("oneroster.manifest.file_missing", OR)
def _(p):
    p.drop("enrollments.csv")


@rule("oneroster.manifest.file_unexpected", OR)
def _(p):
    p.manifest("file.enrollments", "absent")


# -- OneRoster: files and headers -------------------------------------------------------------------------
@rule("oneroster.file.unknown", OR)
def _(p):
    p.raw["extras.csv"] = b"sourcedId\nx\n"


@rule("oneroster.file.name_case", OR)
def _(p):
    p.tables["academicsessions.csv"] = p.tables.pop("academicSessions.csv")
    p.headers["academicsessions.csv"] = p.header("academicSessions.csv")


@rule("oneroster.file.no_rows", OR)
def _(p):
    p.tables["enrollments.csv"] = []


@rule("oneroster.asm.required_file", OR, profile="asm")
def _(p):
    p.drop("enrollments.csv").manifest("file.enrollments", "absent")


@rule("oneroster.header.missing_column", OR)
def _(p):
    p.column("users.csv", [c for c in p.header("users.csv") if c != "middleName"])


@rule("oneroster.header.column_case", OR)
def _(p):
    p.column("users.csv", [c if c != "givenName" else "givenname" for c in p.header("users.csv")])
    for row in p.tables["users.csv"]:
        row["givenname"] = row["givenName"]


@rule("oneroster.header.order", OR)
def _(p):
    header = p.header("users.csv")
    a, b = header.index("givenName"), header.index("familyName")
    header[a], header[b] = header[b], header[a]
    p.column("users.csv", header)


@rule("oneroster.header.unknown_column", OR)
def _(p):
    p.column("users.csv", [*p.header("users.csv"), "nickname"])


@rule("oneroster.header.metadata_position", OR)
def _(p):
    header = p.header("orgs.csv")
    p.column("orgs.csv", [*header[:-1], "metadata.boarding", header[-1]])


@rule("oneroster.header.users_1_2_0", ("1.2",))
def _(p):
    p.column("users.csv", list(S.USERS_12_0))


# -- OneRoster: values ------------------------------------------------------------------------------------
def _delta(p: Package, file: str, stamp: str = OK_DATETIME) -> Package:
    """``file`` as a valid delta file: every row active and stamped."""
    p.manifest(f"file.{file.removesuffix('.csv')}", "delta")
    for n in range(len(p.tables[file])):
        p.set(file, n, status="active", dateLastModified=stamp)
    return p


@rule("oneroster.value.required", OR)
def _(p):
    p.set("users.csv", 0, givenName="")


@rule("oneroster.value.invalid_guid", OR)
def _(p):
    p.set("enrollments.csv", 1, sourcedId="e 2")


@rule("oneroster.value.invalid_date", OR)
def _(p):
    p.set("academicSessions.csv", 0, endDate="2027-02-30")


@rule("oneroster.value.invalid_datetime", OR)
def _(p):
    _delta(p, "enrollments.csv").set("enrollments.csv", 0, dateLastModified="yesterday")


@rule("oneroster.value.impossible_datetime", OR)
def _(p):
    _delta(p, "enrollments.csv").set("enrollments.csv", 0, dateLastModified="2026-13-45T25:61:00.000Z")


@rule("oneroster.value.datetime_loose", ("1.1",))
def _(p):
    _delta(p, "enrollments.csv", "2017-05-06 08:01:05")


@rule("oneroster.value.datetime_not_canonical", ("1.2",))
def _(p):
    _delta(p, "enrollments.csv", "2026-08-15T10:00:00Z")


@rule("oneroster.value.invalid_year", OR)
def _(p):
    p.set("academicSessions.csv", 0, schoolYear="27")


@rule("oneroster.value.invalid_boolean", OR)
def _(p):
    p.set("users.csv", 0, enabledUser="yes")


@rule("oneroster.value.boolean_case", OR)
def _(p):
    p.set("users.csv", 0, enabledUser="TRUE")


@rule("oneroster.value.invalid_enum", OR)
def _(p):
    p.set("classes.csv", 0, classType="Scheduled")


@rule("oneroster.value.invalid_number", OR)
def _(p):
    with_gradebook(p, lineItems={"resultValueMax": "ten"})


@rule("oneroster.value.invalid_list", OR)
def _(p):
    p.set("classes.csv", 0, termSourcedIds="y1t1,")


@rule("oneroster.value.padded_list_item", OR)
def _(p):
    p.set("classes.csv", 0, termSourcedIds="y1, y1t1")


@rule("oneroster.value.invalid_user_ids", OR)
def _(p):
    p.set("users.csv", 0, userIds="LDAP:12")


@rule("oneroster.value.unknown_grade", OR)
def _(p):
    p.set("users.csv", 0, grades="Grade 9")


@rule("oneroster.value.grade_leading_zero", OR)
def _(p):
    p.set("users.csv", 0, grades="9")


@rule("oneroster.value.list_length_mismatch", OR)
def _(p):
    p.set("courses.csv", 0, subjects="Art,Music", subjectCodes="ART")


@rule("oneroster.value.date_range", OR)
def _(p):
    p.set("academicSessions.csv", 0, startDate="2027-08-15")


@rule("oneroster.value.duplicate_sourced_id", OR)
def _(p):
    p.add("enrollments.csv", **{**p.tables["enrollments.csv"][0], "sourcedId": "e2"})


@rule("oneroster.value.invalid_score_scale", ("1.2",))
def _(p):
    with_gradebook(p, scoreScales={"scoreScaleValue": "A:94,B:85"})


@rule("oneroster.value.invalid_case_id", ("1.2",))
def _(p):
    with_gradebook(p, lineItemLearningObjectiveIds={"learningObjectiveId": "6b3b2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"})


@rule("oneroster.lineitem.min_above_max", OR)
def _(p):
    with_gradebook(p, lineItems={"resultValueMin": "100", "resultValueMax": "10"}, results={"score": ""})


@rule("oneroster.result.score_above_max", OR)
def _(p):
    with_gradebook(p, results={"score": "104"})


@rule("oneroster.result.score_below_min", OR)
def _(p):
    with_gradebook(p, results={"score": "-1"})


@rule("oneroster.status.forbidden_in_bulk", OR)
def _(p):
    p.set("orgs.csv", 0, status="active")


@rule("oneroster.status.required_in_delta", OR)
def _(p):
    p.manifest("file.orgs", "delta")


# -- OneRoster: references and semantics ----------------------------------------------------------------
@rule("oneroster.reference.missing_target_file", OR)
def _(p):
    p.drop("academicSessions.csv").manifest("file.academicSessions", "absent")


@rule("oneroster.reference.missing_record", OR)
def _(p):
    p.set("enrollments.csv", 0, userSourcedId="zz")


@rule("oneroster.reference.not_a_school", OR)
def _(p):
    p.set("enrollments.csv", 0, schoolSourcedId="dst")


@rule("oneroster.reference.not_a_school_year", OR)
def _(p):
    p.set("courses.csv", 0, schoolYearSourcedId="y1t1")


@rule("oneroster.enrollment.multiple_primary", OR)
def _(p):
    p.add("enrollments.csv", **{**p.tables["enrollments.csv"][1], "sourcedId": "e3"})


@rule("oneroster.enrollment.primary_not_teacher", OR)
def _(p):
    p.set("enrollments.csv", 0, primary="true")


@rule("oneroster.reference.parent_cycle", OR)
def _(p):
    p.set("orgs.csv", 0, parentSourcedId="sch")


@rule("oneroster.roles.primary_org_without_role", ("1.2",))
def _(p):
    p.set("users.csv", 1, primaryOrgSourcedId="dst")


@rule("oneroster.roles.profile_of_other_user", ("1.2",))
def _(p):
    p.add("userProfiles.csv", sourcedId="prof1", userSourcedId="s1", profileType="app", vendorId="v",
          credentialType="password", username="ann")
    p.set("roles.csv", 1, userProfileSourcedId="prof1")  # the teacher's role, the student's profile


@rule("oneroster.roles.multiple_primary", ("1.2",))
def _(p):
    p.add("roles.csv", **{**p.tables["roles.csv"][1], "sourcedId": "r-t1-again"})


@rule("oneroster.asm.role_unsupported", OR, profile="asm")
def _(p):
    p.set("roles.csv" if p.format == "1.2" else "users.csv", 1, role="aide")


@rule("oneroster.asm.org_type_unsupported", OR, profile="asm")
def _(p):
    p.add("orgs.csv", sourcedId="dep", name="Science", type="department", parentSourcedId="sch")


@rule("oneroster.asm.delta_file", OR, profile="asm")
def _(p):
    _delta(p, "orgs.csv")


@rule("oneroster.asm.invalid_id", OR, profile="asm")
def _(p):
    p.set("users.csv", 0, sourcedId="s1@north").set("enrollments.csv", 0, userSourcedId="s1@north")
    if p.format == "1.2":
        p.set("roles.csv", 0, userSourcedId="s1@north")


@rule("oneroster.asm.id_characters", OR, profile="asm")
def _(p):
    p.set("courses.csv", 0, sourcedId="c_1").set("classes.csv", 0, courseSourcedId="c_1")


@rule("oneroster.asm.too_long", OR, profile="asm")
def _(p):
    p.set("orgs.csv", 1, name="North High " * 100)


# -- the tests ---------------------------------------------------------------------------------------------
NOT_RULES = {"internal.error"}  # a bug's report, not a rule an upload breaks


def test_every_validation_rule_is_in_the_corpus():
    rules = {code for code in CATALOGUE if not code.startswith("convert.")} - NOT_RULES
    assert rules - set(CORPUS) == set()
    assert set(CORPUS) - rules == set()
    for code, case in CORPUS.items():  # what is not a format's own rule holds for all three
        if code.split(".")[0] in ("input", "format", "archive", "text", "csv"):
            assert case.formats == ALL, code


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("profile", ["strict", "asm"])
def test_the_minimal_packages_are_valid_with_nothing_to_report(tmp_path, fmt, profile):
    for package in ([minimal(fmt)] + ([with_gradebook(minimal(fmt))] if fmt != "asm" else [])):
        folder = write(package, tmp_path / f"{fmt}-{len(package.tables)}")
        result = validate_path(folder, profile=profile)
        assert result.issues == [], [i.to_text() for i in result.issues]
        assert result.format == ("asm" if fmt == "asm" else f"oneroster-{fmt}")


@pytest.mark.parametrize("code, fmt", [(code, fmt) for code, case in sorted(CORPUS.items()) for fmt in case.formats],
                         ids=lambda v: v)
def test_the_package_breaks_only_its_rule(tmp_path, code, fmt):
    case = CORPUS[code]
    target = case.build(minimal(fmt), tmp_path)
    result = validate_path(target, profile=case.profile, **case.options)
    found = {i.code for i in result.issues}
    assert code in found, [i.to_text() for i in result.issues]
    assert found - {code} <= case.also, [i.to_text() for i in result.issues if i.code != code]
