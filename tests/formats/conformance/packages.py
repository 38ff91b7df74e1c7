"""The smallest valid packages of each format, built in Python, and the writers for them.

:func:`minimal` is a complete, valid upload with as little in it as the rules allow: a
district and a school, a school year and a term, one course and class, one teacher and one
student enrolled in it (OneRoster 1.1 or 1.2), or the six ASM files with the same people.
Conformance cases (test_corpus.py) break exactly one rule of such a package; the
variation test (test_variations.py) writes larger ones, :func:`district`, in every legal
spelling. Rows are dicts (a missing column is empty); a file is written in its format's
dialect by :func:`write`.
"""

from __future__ import annotations

import copy
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from rostergate.formats.schema import asm
from rostergate.formats.schema import oneroster as S

FORMATS = ("1.1", "1.2", "asm")
Row = dict[str, str]


@dataclass
class Package:
    """One upload as data: ``tables`` (file name -> rows), written with each file's header
    (``headers``, default: the format's); ``raw`` files replace a table with exact bytes."""

    format: str
    tables: dict[str, list[Row]]
    headers: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)

    @property
    def oneroster(self) -> bool:
        return self.format != "asm"

    def header(self, name: str) -> list[str]:
        if name in self.headers:
            return self.headers[name]
        stem = name.removesuffix(".csv")
        if not self.oneroster:
            return list(asm.HEADERS[stem])
        if name == "manifest.csv":
            return ["propertyName", "value"]
        return list(S.HEADERS[self.format][stem])

    # -- edits ------------------------------------------------------------------------------------
    def set(self, name: str, row: int, /, **values: str) -> Package:
        self.tables[name][row].update(values)
        return self

    def add(self, name: str, /, **values: str) -> Package:
        self.tables.setdefault(name, []).append(dict(values))
        if self.oneroster and name != "manifest.csv":
            self.manifest(f"file.{name.removesuffix('.csv')}", "bulk")
        return self

    def drop(self, name: str) -> Package:
        self.tables.pop(name, None)
        self.raw.pop(name, None)
        return self

    def manifest(self, prop: str, value: str | None) -> Package:
        rows = [r for r in self.tables["manifest.csv"] if r["propertyName"] != prop]
        if value is not None:
            rows.append({"propertyName": prop, "value": value})
        self.tables["manifest.csv"] = rows
        return self

    def column(self, name: str, header: list[str]) -> Package:
        self.headers[name] = header
        return self

    def bytes_of(self, name: str) -> bytes:
        if name in self.raw:
            return self.raw[name]
        return render(self.header(name), self.tables[name], apple=not self.oneroster)

    def edit_bytes(self, name: str, old: bytes, new: bytes, count: int = -1) -> Package:
        data = self.bytes_of(name)
        assert old in data, (name, old)
        self.raw[name] = data.replace(old, new, count)
        return self

    def copy(self) -> Package:
        return copy.deepcopy(self)


def render(header: list[str], rows: list[Row], *, apple: bool = False, quote_all: bool = False,
           newline: str = "\n", final_newline: bool = True) -> bytes:
    """A CSV file: RFC 4180 (OneRoster), or Apple's backslash dialect (asm.md §1.1)."""
    lines = [header, *([r.get(c, "") for c in header] for r in rows)]
    if apple:
        text = newline.join(",".join(_apple_value(v, quote_all) for v in line) for line in lines)
    else:
        buf = io.StringIO()
        csv.writer(buf, lineterminator=newline, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL) \
            .writerows(lines)
        text = buf.getvalue().removesuffix(newline)
    return (text + (newline if final_newline else "")).encode("utf-8")


def _apple_value(value: str, quote_all: bool) -> str:
    """Apple's escaping (as asmwrite writes it): backslash before a quote, a backslash or a line break."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n")
    return f'"{escaped}"' if quote_all or any(ch in value for ch in ' ,"\t') else escaped


def write(package: Package, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(set(package.tables) | set(package.raw)):
        (folder / name).write_bytes(package.bytes_of(name))
    return folder


def _manifest(version: str, present: list[str]) -> list[Row]:
    rows = [{"propertyName": "manifest.version", "value": "1.0"},
            {"propertyName": "oneroster.version", "value": version}]
    for stem in S.FILE_KEYS[version]:
        rows.append({"propertyName": f"file.{stem}", "value": "bulk" if f"{stem}.csv" in present else "absent"})
    return rows


def minimal(fmt: str) -> Package:
    """The smallest valid package of ``fmt`` (``"1.1"``, ``"1.2"`` or ``"asm"``)."""
    if fmt == "asm":
        return Package("asm", {
            "students.csv": [{"person_id": "s1", "first_name": "Ann", "last_name": "Lee", "location_id": "sch"}],
            "staff.csv": [{"person_id": "t1", "first_name": "Tom", "last_name": "Ray", "location_id": "sch"}],
            "courses.csv": [{"course_id": "c1", "course_name": "Art", "location_id": "sch"}],
            "classes.csv": [{"class_id": "k1", "course_id": "c1", "instructor_id": "t1", "location_id": "sch"}],
            "rosters.csv": [{"roster_id": "e1", "class_id": "k1", "student_id": "s1"}],
            "locations.csv": [{"location_id": "sch", "location_name": "North High"}],
        })
    tables: dict[str, list[Row]] = {
        "academicSessions.csv": [
            {"sourcedId": "y1", "title": "2026-2027", "type": "schoolYear", "startDate": "2026-08-15",
             "endDate": "2027-06-30", "schoolYear": "2027"},
            {"sourcedId": "y1t1", "title": "Fall", "type": "semester", "startDate": "2026-08-15",
             "endDate": "2027-01-15", "parentSourcedId": "y1", "schoolYear": "2027"},
        ],
        "orgs.csv": [{"sourcedId": "dst", "name": "District", "type": "district"},
                     {"sourcedId": "sch", "name": "North High", "type": "school", "parentSourcedId": "dst"}],
        "courses.csv": [{"sourcedId": "c1", "title": "Art", "orgSourcedId": "sch"}],
        "classes.csv": [{"sourcedId": "k1", "title": "Art 1", "courseSourcedId": "c1", "classType": "scheduled",
                         "schoolSourcedId": "sch", "termSourcedIds": "y1t1"}],
        "users.csv": [
            {"sourcedId": "s1", "enabledUser": "true", "role": "student", "username": "ann", "givenName": "Ann",
             "familyName": "Lee", "grades": "09"},
            {"sourcedId": "t1", "enabledUser": "true", "role": "teacher", "username": "tom", "givenName": "Tom",
             "familyName": "Ray"},
        ],
        "enrollments.csv": [
            {"sourcedId": "e1", "classSourcedId": "k1", "schoolSourcedId": "sch", "userSourcedId": "s1",
             "role": "student"},
            {"sourcedId": "e2", "classSourcedId": "k1", "schoolSourcedId": "sch", "userSourcedId": "t1",
             "role": "teacher", "primary": "true"},
        ],
    }
    if fmt == "1.1":
        for user in tables["users.csv"]:
            user["orgSourcedIds"] = "sch"
    else:
        tables["roles.csv"] = [
            {"sourcedId": f"r-{u['sourcedId']}", "userSourcedId": u["sourcedId"], "roleType": "primary",
             "role": u.pop("role"), "orgSourcedId": "sch"} for u in tables["users.csv"]]
        for user in tables["users.csv"]:
            user["primaryOrgSourcedId"] = "sch"
    tables["manifest.csv"] = _manifest(fmt, list(tables))
    return Package(fmt, tables)


def with_gradebook(package: Package, **changes: Row) -> Package:
    """``package`` (OneRoster) with a valid gradebook: a category, a line item scored 0-100 and a
    result of 94 (both versions), and in 1.2 a score scale and a CASE learning objective.
    ``changes`` maps a file stem to values replacing those of its one row."""
    v12 = package.format == "1.2"
    rows: dict[str, Row] = {
        "categories": {"sourcedId": "cat1", "title": "Homework"},
        "lineItems": {"sourcedId": "li1", "title": "Quiz 1", "assignDate": "2026-09-01", "dueDate": "2026-09-08",
                      "classSourcedId": "k1", "categorySourcedId": "cat1",
                      ("academicSessionSourcedId" if v12 else "gradingPeriodSourcedId"): "y1t1",
                      "resultValueMin": "0", "resultValueMax": "100", **({"schoolSourcedId": "sch"} if v12 else {})},
        "results": {"sourcedId": "res1", "lineItemSourcedId": "li1", "studentSourcedId": "s1",
                    "scoreStatus": "fully graded", "score": "94", "scoreDate": "2026-09-09"},
    }
    if v12:
        rows["scoreScales"] = {"sourcedId": "sc1", "title": "Letters", "type": "letter", "orgSourcedId": "sch",
                               "courseSourcedId": "c1", "classSourcedId": "k1", "scoreScaleValue": "{A:94},{B:85}"}
        rows["lineItemLearningObjectiveIds"] = {
            "sourcedId": "lo1", "lineItemSourcedId": "li1", "source": "case",
            "learningObjectiveId": "urn:uuid:6b3b2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"}
    for stem, row in rows.items():
        package.add(f"{stem}.csv", **{**row, **changes.get(stem, {})})
    return package


def district(fmt: str, people: list[tuple[str, str, str]]) -> Package:
    """A valid package of ``fmt`` whose students are ``people`` ((given, middle, family) names),
    all in one class with one teacher."""
    package = minimal(fmt)
    if fmt == "asm":
        students = package.tables["students.csv"] = []
        rosters = package.tables["rosters.csv"] = []
        for n, (given, middle, family) in enumerate(people):
            students.append({"person_id": f"s{n}", "first_name": given, "middle_name": middle, "last_name": family,
                             "location_id": "sch"})
            rosters.append({"roster_id": f"e{n}", "class_id": "k1", "student_id": f"s{n}"})
        return package
    users = package.tables["users.csv"]
    template = next(u for u in users if u["sourcedId"] == "s1")
    users[:] = [u for u in users if u["sourcedId"] != "s1"]
    enrollments = package.tables["enrollments.csv"]
    enrollments[:] = [e for e in enrollments if e["userSourcedId"] != "s1"]
    roles = package.tables.get("roles.csv")
    if roles is not None:
        roles[:] = [r for r in roles if r["userSourcedId"] != "s1"]
    for n, (given, middle, family) in enumerate(people):
        users.append({**template, "sourcedId": f"s{n}", "username": f"user{n}", "givenName": given,
                      "middleName": middle, "familyName": family})
        enrollments.append({"sourcedId": f"e-s{n}", "classSourcedId": "k1", "schoolSourcedId": "sch",
                            "userSourcedId": f"s{n}", "role": "student"})
        if roles is not None:
            roles.append({"sourcedId": f"r-s{n}", "userSourcedId": f"s{n}", "roleType": "primary", "role": "student",
                          "orgSourcedId": "sch"})
    return package
