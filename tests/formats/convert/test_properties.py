"""Property tests: whatever the input, every output row traces to an input row, the
output references resolve, and input rows = output rows + reported drops (per file)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rostergate.formats.convert.entry import convert_dir
from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.read.csvio import read_table

from .conftest import parsed_mapping, write_oneroster

AS_OF = dt.date(2026, 11, 22)
ORGS = ["o1", "o2", "o3"]
ids = st.sampled_from
status = st.sampled_from(["", "", "", "active", "tobedeleted"])
date = st.sampled_from(["", "", "2026-01-01", "2026-11-22", "2027-01-01"])


@st.composite
def districts(draw, version: str):
    orgs = [{"sourcedId": draw(ids(ORGS)), "name": draw(st.sampled_from(["A", "B school", "C, D"])),
             "status": draw(status)} for _ in range(draw(st.integers(1, 4)))]
    user_ids = [f"u{i}" for i in range(draw(st.integers(1, 10)))]
    roles_11 = ["student", "student", "teacher", "aide", "parent", "", "administrator"]
    users, roles = [], []
    for uid in user_ids + draw(st.lists(ids(user_ids), max_size=2)):  # some duplicate ids
        org_list = draw(st.lists(ids(ORGS + ["ghost"]), max_size=3))
        users.append({
            "sourcedId": uid, "status": draw(status), "enabledUser": draw(st.sampled_from(["true", "false", "true"])),
            "orgSourcedIds": ",".join(org_list), "role": draw(ids(roles_11)), "givenName": "G " + uid,
            "familyName": 'F"' + uid, "grades": draw(st.sampled_from(["", "KG", "09,10"])),
            "primaryOrgSourcedId": draw(st.sampled_from([""] + ORGS)),
        })
        for n, org in enumerate(org_list):
            roles.append({"sourcedId": f"r-{uid}-{len(roles)}", "userSourcedId": uid, "orgSourcedId": org,
                          "role": draw(ids(["student", "teacher", "parent", "counselor", "guardian"])),
                          "roleType": "primary" if n == 0 else draw(ids(["primary", "secondary"])),
                          "status": draw(status), "endDate": draw(date)})
    courses = [{"sourcedId": f"c{i}", "orgSourcedId": draw(ids(ORGS + ["ghost"])), "title": f"C {i}",
                "status": draw(status)} for i in range(draw(st.integers(0, 3)))]
    course_ids = [c["sourcedId"] for c in courses] or ["c-none"]
    classes = [{"sourcedId": f"k{i}", "courseSourcedId": draw(ids(course_ids)), "schoolSourcedId": draw(ids(ORGS)),
                "status": draw(status)} for i in range(draw(st.integers(0, 4)))]
    class_ids = [k["sourcedId"] for k in classes] or ["k-none"]
    enrollments = [{"sourcedId": f"e{draw(st.integers(0, 40))}", "classSourcedId": draw(ids(class_ids)),
                    "userSourcedId": draw(ids(user_ids)),
                    "role": draw(ids(["student", "student", "teacher", "aide", "administrator"])),
                    "primary": draw(ids(["true", "false", ""])), "status": draw(status),
                    "beginDate": draw(date), "endDate": draw(date)}
                   for _ in range(draw(st.integers(0, 25)))]
    tables = {"orgs.csv": orgs, "users.csv": users, "courses.csv": courses, "classes.csv": classes,
              "enrollments.csv": enrollments}
    if version == "1.2":
        tables["roles.csv"] = roles
    return tables


MAPPINGS = [
    Mapping(),
    parsed_mapping({"id_prefix": "x-", "filters": {"exclude_schools": ["o2"]},
                   "instructor_roles": ["teacher", "aide"]}, "m"),
    parsed_mapping({"roles": {"parent": "staff", "aide": "drop"},
                   "filters": {"include_schools": ["o1", "o3"], "exclude_roles": ["administrator"],
                               "include_grades": ["KG", "09"]},
                   "password_policy": [{"grades": ["KG"], "policy": 4}, {"locations": ["o1"], "policy": 8}],
                   "students": {"first_name": {"template": "{givenName}-{familyName}", "transform": ["upper"]}}},
                  "m"),
]


def _check(folder: Path, version: str, mapping: Mapping) -> None:
    conversion = convert_dir(folder, f"oneroster-{version}", mapping, AS_OF)
    assert conversion.ok, conversion.issues
    prefix = mapping.id_prefix
    # 1. accounting: every input row is used or dropped, per file
    for file, count in conversion.counts.items():
        assert count.balanced, (file, count)
        assert count.input == len(read_table(folder / file))
    dropped = conversion.dropped_rows
    # 2. lineage: each output row names a source line whose row has the output's id
    sources = {name: read_table(folder / name) for name in conversion.counts}
    checks = {"students.csv": ("person_id", "sourcedId"), "staff.csv": ("person_id", "sourcedId"),
              "rosters.csv": ("roster_id", "sourcedId"), "courses.csv": ("course_id", "sourcedId"),
              "classes.csv": ("class_id", "sourcedId"), "locations.csv": ("location_id", "sourcedId")}
    for name, (out_col, src_col) in checks.items():
        table, lineage = conversion.tables[name], conversion.lineage[name]
        assert len(table) == len(lineage)
        for out_id, file, line in zip(table[out_col], lineage["source_file"], lineage["source_line"]):
            row = sources[file].iloc[line - 2]
            assert out_id == prefix + row[src_col]
            # a used line is never also reported as dropped
            assert not ((dropped["file"] == file) & (dropped["line"] == line)).any()
    rosters = conversion.tables["rosters.csv"]
    enrollments = sources.get("enrollments.csv")
    for _, r in rosters.iterrows():
        line = conversion.lineage["rosters.csv"]["source_line"].iloc[_]
        src = enrollments.iloc[line - 2]
        assert (r["class_id"], r["student_id"]) == (prefix + src["classSourcedId"], prefix + src["userSourcedId"])
        assert src["role"] == "student"
    # 3. output references resolve (what ASM checks, asm.md §1.8)
    locations = set(conversion.tables["locations.csv"]["location_id"])
    students = set(conversion.tables["students.csv"]["person_id"])
    staff = set(conversion.tables["staff.csv"]["person_id"])
    assert not students & staff
    for name in ("students.csv", "staff.csv", "courses.csv", "classes.csv"):
        table = conversion.tables[name]
        for column in [c for c in table.columns if c.startswith("location_id")]:
            assert set(table[column]) - {""} <= locations, (name, column)
        assert (table["location_id"] != "").all()
    classes = conversion.tables["classes.csv"]
    assert set(classes["course_id"]) <= set(conversion.tables["courses.csv"]["course_id"])
    for column in [c for c in classes.columns if c.startswith("instructor_id")]:
        assert set(classes[column]) - {""} <= staff
    assert set(rosters["class_id"]) <= set(classes["class_id"])
    assert set(rosters["student_id"]) <= students
    assert not rosters.duplicated(["class_id", "student_id"]).any()
    assert rosters["roster_id"].is_unique and classes["class_id"].is_unique
    # every location is used by something
    used = set()
    for name in ("students.csv", "staff.csv", "courses.csv", "classes.csv"):
        for column in [c for c in conversion.tables[name].columns if c.startswith("location_id")]:
            used |= set(conversion.tables[name][column])
    assert locations <= used


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=districts("1.1"), mapping=st.sampled_from(MAPPINGS))
def test_properties_11(data: dict, mapping: Mapping) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(write_oneroster(Path(tmp), data, "1.1"), "1.1", mapping)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=districts("1.2"), mapping=st.sampled_from(MAPPINGS))
def test_properties_12(data: dict, mapping: Mapping) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(write_oneroster(Path(tmp), data, "1.2"), "1.2", mapping)
