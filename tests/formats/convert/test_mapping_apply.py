"""Each mapping option changes the output the documented way (docs/mapping.md)."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from rostergate.formats.convert.entry import convert_dir, render_preview

from .conftest import parsed_mapping, write_oneroster

FIXTURES = Path(__file__).parents[2] / "fixtures" / "convert"
AS_OF = dt.date(2026, 11, 22)

DISTRICT_MAPPING = '''
id_prefix = "n-"
[filters]
exclude_schools = ["ms"]
[[password_policy]]
grades = ["KG"]
policy = 4
[[password_policy]]
locations = ["hs"]
policy = "8"
[students.first_name]
template = "{givenName}.{familyName}"
transform = ["upper"]
[students.grade_level]
values = { "KG" = "Kindergarten", "09" = "9" }
[students.email_address]
from = ["email", "username"]
[staff.person_number]
map = false
[classes.class_display_name]
from = "title"
[courses.course_name]
transform = [{ regex = '^(\\w+).*$', replace = '\\1' }]
[locations.location_name]
transform = ["lower", "trim"]
'''


def _mapping(text: str):
    return parsed_mapping(tomllib.loads(text))


def _rows(conversion, name: str) -> dict[str, dict[str, str]]:
    frame = conversion.tables[name]
    return {row[frame.columns[0]]: row for row in frame.to_dict("records")}


def test_every_option_on_the_district() -> None:
    conversion = convert_dir(FIXTURES / "or11-district", "oneroster-1.1", _mapping(DISTRICT_MAPPING), AS_OF)
    assert conversion.ok, conversion.issues
    students = _rows(conversion, "students.csv")
    assert sorted(students) == ["n-s1", "n-s3", "n-s7"]  # s2 only at ms: filtered
    s1, s3, s7 = students["n-s1"], students["n-s3"], students["n-s7"]
    # template + transformation; match codes; direct with fallback; password rules in order
    assert (s1["first_name"], s1["grade_level"], s1["email_address"], s1["password_policy"]) == \
        ("ANA.SILVA", "9", "ana@x.org", "8")
    assert (s3["first_name"], s3["grade_level"], s3["email_address"], s3["password_policy"]) == \
        ('JO "JJ".PARK', "Kindergarten", "sthree", "4")
    assert (s7["grade_level"], s7["password_policy"]) == ("02", "")  # unmatched code kept; no rule
    # id prefix on every id and reference; s1 loses ms (excluded) and keeps hs
    assert s1["location_id"] == "n-hs" and "location_id_2" not in conversion.tables["students.csv"]
    rosters = _rows(conversion, "rosters.csv")
    assert rosters["n-e-s1-big"] == {"roster_id": "n-e-s1-big", "class_id": "n-c-big", "student_id": "n-s1"}
    classes = _rows(conversion, "classes.csv")
    assert classes["n-c-big"]["instructor_id"] == "n-t17"
    assert classes["n-c-big"]["class_display_name"] == "Biology Team"
    assert list(conversion.tables["classes.csv"].columns)[-1] == "class_display_name"
    assert "n-c-math" not in classes  # at ms
    assert set(conversion.tables["staff.csv"]["person_number"]) == {""}  # do not map
    assert _rows(conversion, "courses.csv")["n-crs-art"]["course_name"] == "Art"
    assert _rows(conversion, "locations.csv")["n-hs"]["location_name"] == "north high"
    drops = {(d.file, d.reason): d.count for d in conversion.drops}
    assert drops[("orgs.csv", "filter_school")] == 1
    assert drops[("users.csv", "filter_school")] == 1  # s2
    assert drops[("courses.csv", "filter_school")] == 1
    assert drops[("classes.csv", "filter_school")] == 1
    assert all(c.balanced for c in conversion.counts.values())


def test_preview_names_the_rules() -> None:
    text = render_preview(FIXTURES / "or11-district", "oneroster-1.1", _mapping(DISTRICT_MAPPING), 1, as_of=AS_OF)
    assert "template '{givenName}.{familyName}' | upper" in text
    assert "'n-' + sourcedId" in text
    assert "not mapped" in text
    assert "grades (first) | match codes (2)" in text


def _people(tmp_path: Path, **extra) -> Path:
    rows = {
        "orgs.csv": [{"sourcedId": "o1", "name": "One"}, {"sourcedId": "o2", "name": "Two"}],
        "users.csv": [
            {"sourcedId": "u1", "enabledUser": "true", "orgSourcedIds": "o1", "role": "student",
             "givenName": "Ann", "familyName": "Lee", "grades": "05", "username": "alee",
             "email": "  Ann.Lee@X.org ", "dateLastModified": "2026-03-04"},
            {"sourcedId": "u2", "enabledUser": "true", "orgSourcedIds": "o2", "role": "student",
             "givenName": "Bo", "familyName": "Ma", "grades": "PK", "username": "bma"},
            {"sourcedId": "u3", "enabledUser": "true", "orgSourcedIds": "o1", "role": "counselor",
             "givenName": "Cy", "familyName": "Ng", "username": "cng"},
            {"sourcedId": "u4", "enabledUser": "true", "orgSourcedIds": "o2", "role": "aide",
             "givenName": "Di", "familyName": "Oh", "username": "doh"},
        ],
        "enrollments.csv": [],
        **extra,
    }
    return write_oneroster(tmp_path / "src", rows)


@pytest.mark.parametrize("toml,column,expected", [
    # direct
    ('[students.sis_username]\nfrom = "email"', "sis_username", {"u1": "  Ann.Lee@X.org ", "u2": ""}),
    # transformation: trim + lower
    ('[students.email_address]\ntransform = ["trim", "lower"]', "email_address", {"u1": "ann.lee@x.org", "u2": ""}),
    # transformation: date format
    ('[students.person_number]\nfrom = "dateLastModified"\ntransform = [{ date = "%d/%m/%Y" }]',
     "person_number", {"u1": "04/03/2026", "u2": ""}),
    # transformation: regex with a group
    ('[students.sis_username]\ntransform = [{ regex = "^(.)(.*)$", replace = "\\\\2-\\\\1" }]',
     "sis_username", {"u1": "lee-a", "u2": "ma-b"}),
    # match codes with a default for unmatched values
    ('[students.grade_level]\nvalues = { "05" = "5" }\ndefault = "Other"', "grade_level", {"u1": "5", "u2": "Other"}),
    # do not map
    ('[students.last_name]\nmap = false', "last_name", {"u1": "", "u2": ""}),
])
def test_each_column_rule_kind(tmp_path: Path, toml: str, column: str, expected: dict) -> None:
    conversion = convert_dir(_people(tmp_path), "oneroster-1.1", _mapping(toml), AS_OF)
    got = dict(zip(conversion.tables["students.csv"]["person_id"], conversion.tables["students.csv"][column]))
    assert got == expected


def test_roles_and_filters(tmp_path: Path) -> None:
    mapping = _mapping('[roles]\ncounselor = "drop"\n'
                       '[filters]\nexclude_grades = ["PK"]\ninclude_roles = ["student", "aide"]')
    conversion = convert_dir(_people(tmp_path), "oneroster-1.1", mapping, AS_OF)
    assert list(conversion.tables["students.csv"]["person_id"]) == ["u1"]
    assert list(conversion.tables["staff.csv"]["person_id"]) == ["u4"]
    drops = {(d.file, d.reason): d.count for d in conversion.drops}
    assert drops[("users.csv", "role_counselor")] == 1
    assert drops[("users.csv", "filter_grade")] == 1


def test_role_filter_and_include_schools(tmp_path: Path) -> None:
    mapping = _mapping('[filters]\nexclude_roles = ["aide"]\ninclude_schools = ["o1"]')
    conversion = convert_dir(_people(tmp_path), "oneroster-1.1", mapping, AS_OF)
    assert list(conversion.tables["students.csv"]["person_id"]) == ["u1"]
    assert list(conversion.tables["staff.csv"]["person_id"]) == ["u3"]
    drops = {(d.file, d.reason): d.count for d in conversion.drops}
    assert drops[("users.csv", "filter_role")] == 1  # u4, before its school is looked at
    assert drops[("users.csv", "filter_school")] == 1  # u2 at o2
    assert drops[("orgs.csv", "filter_school")] == 1


def test_instructor_roles_option(tmp_path: Path) -> None:
    extra = {
        "courses.csv": [{"sourcedId": "c", "orgSourcedId": "o1", "title": "C"}],
        "classes.csv": [{"sourcedId": "k", "courseSourcedId": "c", "schoolSourcedId": "o1", "title": "K"}],
        "enrollments.csv": [
            {"sourcedId": "e1", "classSourcedId": "k", "userSourcedId": "u4", "role": "aide"},
            {"sourcedId": "e2", "classSourcedId": "k", "userSourcedId": "u3", "role": "teacher", "primary": "true"},
        ],
    }
    folder = _people(tmp_path, **extra)
    default = convert_dir(folder, "oneroster-1.1", None, AS_OF)
    assert default.tables["classes.csv"].iloc[0]["instructor_id_2"] == ""
    wider = convert_dir(folder, "oneroster-1.1", _mapping('instructor_roles = ["teacher", "aide"]'), AS_OF)
    row = wider.tables["classes.csv"].iloc[0]
    assert (row["instructor_id"], row["instructor_id_2"]) == ("u3", "u4")


def test_missing_source_column_warns(tmp_path: Path) -> None:
    conversion = convert_dir(_people(tmp_path), "oneroster-1.1",
                             _mapping('[students.first_name]\nfrom = ["preferredGivenName", "givenName"]'), AS_OF)
    assert dict(zip(conversion.tables["students.csv"]["person_id"],
                    conversion.tables["students.csv"]["first_name"])) == {"u1": "Ann", "u2": "Bo"}
    assert any(i.code == "convert.mapping.missing_column" and i.column == "preferredGivenName"
               for i in conversion.issues)
