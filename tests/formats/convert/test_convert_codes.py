"""A fixture that triggers and a fixture that does not trigger every ``convert.*`` catalogue code.

Each case starts from a small clean upload (OneRoster 1.1 or 1.2 built here, or
tests/fixtures/asm-valid), changes one thing (rows, files or the mapping), and
expects the code; the unchanged upload, converted with the default mapping,
must not produce it. The validator's codes have their cases in
tests/formats/test_issue_codes.py, which also checks that the two sets of cases
together cover the whole catalogue.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rostergate.formats.catalogue import CATALOGUE, lookup
from rostergate.formats.convert.entry import Conversion, convert_dir

from .conftest import parsed_mapping, write_oneroster

AS_OF = dt.date(2026, 11, 22)
ASM_VALID = Path(__file__).parents[2] / "fixtures" / "asm-valid"

BASE_11: dict[str, list[dict]] = {
    "orgs.csv": [{"sourcedId": "o1", "name": "North High", "type": "school"}],
    "users.csv": [
        {"sourcedId": "s1", "enabledUser": "true", "orgSourcedIds": "o1", "role": "student", "username": "ann",
         "givenName": "Ann", "familyName": "Lee", "grades": "09"},
        {"sourcedId": "t1", "enabledUser": "true", "orgSourcedIds": "o1", "role": "teacher", "username": "tom",
         "givenName": "Tom", "familyName": "Ray"},
    ],
    "courses.csv": [{"sourcedId": "c1", "title": "Art", "courseCode": "ART", "orgSourcedId": "o1"}],
    "classes.csv": [{"sourcedId": "k1", "title": "Art 1", "courseSourcedId": "c1", "classCode": "ART-1",
                     "classType": "scheduled", "schoolSourcedId": "o1"}],
    "enrollments.csv": [
        {"sourcedId": "e1", "classSourcedId": "k1", "schoolSourcedId": "o1", "userSourcedId": "s1",
         "role": "student"},
        {"sourcedId": "e2", "classSourcedId": "k1", "schoolSourcedId": "o1", "userSourcedId": "t1",
         "role": "teacher", "primary": "true"},
    ],
}
BASE_12: dict[str, list[dict]] = {
    **BASE_11,
    "users.csv": [{k: v for k, v in row.items() if k not in ("role", "orgSourcedIds")}
                  for row in BASE_11["users.csv"]],
    "roles.csv": [
        {"sourcedId": "r1", "userSourcedId": "s1", "roleType": "primary", "role": "student", "orgSourcedId": "o1"},
        {"sourcedId": "r2", "userSourcedId": "t1", "roleType": "primary", "role": "teacher", "orgSourcedId": "o1"},
    ],
}
FORMATS = {"1.1": "oneroster-1.1", "1.2": "oneroster-1.2", "asm": "asm"}


@dataclass
class Case:
    base: str  # "1.1", "1.2" or "asm"
    rows: Callable[[dict[str, list[dict]]], None] | None = None  # edits the OneRoster tables before writing
    files: Callable[[Path], None] | None = None  # edits the written folder
    mapping: str = ""  # a [flows.mapping] table (TOML) for the triggering run
    emits: str | None = None  # the code the converter emits, for a family row (default: the row's code)


CASES: dict[str, Case] = {}


def case(code: str, base: str = "1.1", *, mapping: str = "", files: Callable[[Path], None] | None = None,
         emits: str | None = None):
    def register(fn):
        CASES[code] = Case(base, fn, files, mapping, emits)
        return fn

    return register


def files_case(code: str, base: str = "1.1"):
    def register(fn):
        CASES[code] = Case(base, files=fn)
        return fn

    return register


def _add(tables: dict, file: str, **row: str) -> None:
    tables[file].append(row)


def _enrol(tables: dict, sourced_id: str, user: str, role: str, **more: str) -> None:
    _add(tables, "enrollments.csv", sourcedId=sourced_id, classSourcedId="k1", schoolSourcedId="o1",
         userSourcedId=user, role=role, **more)


# -- impossible input -------------------------------------------------------------------------------
@files_case("convert.missing_file")
def _(folder):
    (folder / "users.csv").unlink()


@files_case("convert.missing_column")
def _(folder):
    path = folder / "users.csv"
    path.write_text(path.read_text().replace("orgSourcedIds", "orgs", 1))


@files_case("convert.unreadable")
def _(folder):
    (folder / "users.csv").write_bytes(b"")


@files_case("convert.dropped.malformed")
def _(folder):
    with open(folder / "users.csv", "a") as fh:
        fh.write("s9,,,true,o1,student,zed\n")  # too few values: the reader cannot read it as a row


# -- mapping and ASM input --------------------------------------------------------------------------
@case("convert.mapping.missing_column", mapping='[students.first_name]\nfrom = "preferredGivenName"')
def _(tables):
    pass


@files_case("convert.asm.unknown_column", "asm")
def _(folder):
    path = folder / "students.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",nickname", *(line + ",x" for line in lines[1:])]) + "\n")


@files_case("convert.asm.missing_column", "asm")
def _(folder):
    path = folder / "locations.csv"
    path.write_text("".join(line.split(",")[0] + "\n" for line in path.read_text().splitlines()))


# -- rows left out ----------------------------------------------------------------------------------
@case("convert.dropped.location_reference")
def _(tables):
    tables["users.csv"][0]["orgSourcedIds"] = "o1,nowhere"


@case("convert.dropped.duplicate_id")
def _(tables):
    tables["users.csv"].append(dict(tables["users.csv"][0]))


@case("convert.dropped.tobedeleted")
def _(tables):
    _add(tables, "courses.csv", sourcedId="c2", status="tobedeleted", title="Old", orgSourcedId="o1")


@case("convert.dropped.disabled")
def _(tables):
    _add(tables, "users.csv", sourcedId="s2", enabledUser="false", orgSourcedIds="o1", role="student")


@case("convert.dropped.outside_dates")
def _(tables):
    _enrol(tables, "e3", "t1", "teacher", endDate="2026-06-30")


@case("convert.dropped.filter_school", mapping='[filters]\nexclude_schools = ["o2"]')
def _(tables):
    _add(tables, "orgs.csv", sourcedId="o2", name="South High", type="school")


@case("convert.dropped.filter_role", mapping='[filters]\ninclude_roles = ["student"]')
def _(tables):
    pass


@case("convert.dropped.filter_grade", mapping='[filters]\ninclude_grades = ["10"]')
def _(tables):
    pass


@case("convert.dropped.location_missing")
def _(tables):
    _add(tables, "courses.csv", sourcedId="c2", title="Lost", orgSourcedId="nowhere")


@case("convert.dropped.no_role", "1.2")
def _(tables):
    _add(tables, "users.csv", sourcedId="s2", enabledUser="true", givenName="Bo")


@case("convert.dropped.course_missing")
def _(tables):
    _add(tables, "classes.csv", sourcedId="k2", courseSourcedId="nowhere", schoolSourcedId="o1")


@case("convert.dropped.class_missing")
def _(tables):
    _add(tables, "enrollments.csv", sourcedId="e3", classSourcedId="nowhere", userSourcedId="s1", role="student")


@case("convert.dropped.user_missing")
def _(tables):
    _enrol(tables, "e3", "nobody", "student")


@case("convert.dropped.user_not_student")
def _(tables):
    _enrol(tables, "e3", "t1", "student")


@case("convert.dropped.user_not_staff")
def _(tables):
    _enrol(tables, "e3", "s1", "teacher")


@case("convert.dropped.enrollment_role")
def _(tables):
    _enrol(tables, "e3", "t1", "administrator")


@case("convert.dropped.duplicate_pair")
def _(tables):
    _enrol(tables, "e3", "s1", "student")


@case("convert.dropped.instructor_limit")
def _(tables):
    for i in range(2, 17):  # t1 plus 15 more: 16 teachers
        _add(tables, "users.csv", sourcedId=f"t{i}", enabledUser="true", orgSourcedIds="o1", role="teacher")
        _enrol(tables, f"e{i + 1}", f"t{i}", "teacher")


@case("convert.dropped.other_role", "1.2")
def _(tables):
    _add(tables, "roles.csv", sourcedId="r3", userSourcedId="t1", roleType="secondary", role="student",
         orgSourcedId="o1")


@case("convert.dropped.duplicate_org", "1.2")
def _(tables):
    _add(tables, "roles.csv", sourcedId="r3", userSourcedId="t1", roleType="secondary", role="aide",
         orgSourcedId="o1")


@case("convert.dropped.unreferenced")
def _(tables):
    _add(tables, "orgs.csv", sourcedId="d1", name="District", type="district")


@case("convert.dropped.role_other")
def _(tables):
    _add(tables, "users.csv", sourcedId="x1", enabledUser="true", orgSourcedIds="o1", role="ext:coach")


@case("convert.dropped.role", emits="convert.dropped.role_parent")
def _(tables):
    _add(tables, "users.csv", sourcedId="p1", enabledUser="true", orgSourcedIds="o1", role="parent")


# -- running ----------------------------------------------------------------------------------------
def _upload(base: str, folder: Path, rows=None) -> Path:
    if base == "asm":
        return Path(shutil.copytree(ASM_VALID, folder))
    tables = copy.deepcopy(BASE_12 if base == "1.2" else BASE_11)
    if rows is not None:
        rows(tables)
    return write_oneroster(folder, tables, base)


def _convert(folder: Path, base: str, mapping: str = "") -> Conversion:
    parsed = parsed_mapping(tomllib.loads(mapping)) if mapping else None
    return convert_dir(folder, FORMATS[base], parsed, AS_OF)


def test_every_convert_code_has_a_case():
    assert set(CASES) == {code for code in CATALOGUE if code.startswith("convert.")}


@pytest.mark.parametrize("code", sorted(CASES))
def test_triggering_fixture_reports_code(code: str, tmp_path: Path) -> None:
    c = CASES[code]
    folder = _upload(c.base, tmp_path / "upload", c.rows)
    if c.files is not None:
        c.files(folder)
    conversion = _convert(folder, c.base, c.mapping)
    emitted = c.emits or code
    found = [i for i in conversion.issues if i.code == emitted]
    assert found, f"{emitted} not reported; got {[(i.code, i.message) for i in conversion.issues]}"
    row = lookup(emitted)
    assert row is CATALOGUE[code]
    assert found[0].severity == row.severity
    assert "; " in found[0].message and "?" not in found[0].message  # reason; hint, every placeholder filled


@pytest.mark.parametrize("code", sorted(CASES))
def test_clean_fixture_does_not_report_code(code: str, tmp_path: Path) -> None:
    c = CASES[code]
    conversion = _convert(_upload(c.base, tmp_path / "upload"), c.base)
    assert conversion.ok
    emitted = c.emits or code
    assert emitted not in {i.code for i in conversion.issues}


@pytest.mark.parametrize("base", ["1.1", "1.2", "asm"])
def test_clean_fixtures_convert_without_issues(base: str, tmp_path: Path) -> None:
    conversion = _convert(_upload(base, tmp_path / "upload"), base)
    assert conversion.issues == []
    assert all(c.balanced for c in conversion.counts.values())


def test_an_absent_optional_file_is_a_warning(tmp_path: Path) -> None:
    folder = _upload("1.1", tmp_path / "upload")
    (folder / "courses.csv").unlink()
    conversion = _convert(folder, "1.1")
    assert conversion.ok
    (missing,) = [i for i in conversion.issues if i.code == "convert.missing_file"]
    assert (missing.severity, missing.file) == ("warning", "courses.csv")
