"""Deterministic generator of synthetic school districts (OneRoster 1.1/1.2 or ASM CSV).

    python bench/gen_district.py --students 200000 --version 1.1 OUT_DIR
    python bench/gen_district.py --students 200000 --version asm OUT_DIR

Shape per 200,000 students (≈1.7 million CSV rows for OneRoster): 250 schools,
10,000 teachers, 56,000 classes of 25 students, 7 enrollments per student plus
one primary teacher per class, 40 courses per school, one school year with two
semesters. Everything is column-wise (numpy + pyarrow), so 200k students take a
few seconds. All names, ids and e-mails are synthetic. The output is valid under
the ``strict`` profile, so a benchmark measures the validator's normal path.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GIVEN = [
    "Alex", "Sam", "Kim", "Robin", "Terry", "Jordan", "Casey", "Riley", "Morgan", "Avery", "Quinn", "Jamie",
    "Drew", "Parker", "Rowan", "Sage", "Emery", "Finley", "Hayden", "Jules", "Kai", "Logan", "Noel", "Reese",
    "Shay", "Toby", "Val", "Wren", "Ari", "Blair",
]
FAMILY = [
    "Adams", "Baker", "Clark", "Davis", "Evans", "Foster", "Green", "Hughes", "Irwin", "Jones", "Keller",
    "Lopez", "Moore", "Nolan", "Owens", "Price", "Quincy", "Reyes", "Smith", "Turner", "Underwood", "Vance",
    "Walsh", "Young", "Zimmer", "Brown", "Carter", "Diaz", "Ellis", "Fisher",
]
STUDENTS_PER_SCHOOL = 800
STUDENTS_PER_TEACHER = 20
CLASS_SIZE = 25
CLASSES_PER_STUDENT = 7
COURSES_PER_SCHOOL = 40


def _ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    nums = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), nums, "")


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return values.take(pa.array(idx))


def _const(value: str, n: int) -> pa.Array:
    return pa.array(np.full(n, value, dtype=object), type=pa.string())


def _write(path: Path, header: list[str], cols: list[pa.Array]) -> int:
    """Join columns with commas (values here never need quoting, except the quoted list columns)."""
    lines = pc.binary_join_element_wise(*cols, ",")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(",".join(header) + "\n")
        for start in range(0, len(lines), 500_000):
            chunk = lines.slice(start, 500_000).to_pylist()
            fh.write("\n".join(chunk) + "\n")
    return len(lines)


class District:
    """The entities of one synthetic district, as arrays."""

    def __init__(self, students: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_students = students
        self.n_schools = max(1, students // STUDENTS_PER_SCHOOL)
        self.n_teachers = max(1, students // STUDENTS_PER_TEACHER)
        self.n_classes = max(1, students * CLASSES_PER_STUDENT // CLASS_SIZE)
        self.n_courses = self.n_schools * COURSES_PER_SCHOOL
        self.school_ids = _ids("org-", self.n_schools, 5)
        self.student_ids = _ids("stu-", students)
        self.teacher_ids = _ids("tch-", self.n_teachers)
        self.course_ids = _ids("crs-", self.n_courses, 6)
        self.class_ids = _ids("cls-", self.n_classes)
        self.student_school = np.arange(students) % self.n_schools
        self.teacher_school = np.arange(self.n_teachers) % self.n_schools
        self.course_school = np.arange(self.n_courses) % self.n_schools
        # classes belong to a school through their course; teacher = one of that school's teachers
        self.class_course = rng.integers(0, self.n_courses, self.n_classes)
        self.class_school = self.course_school[self.class_course]
        per_school_teachers = np.maximum(1, self.n_teachers // self.n_schools)
        slot = rng.integers(0, per_school_teachers, self.n_classes)
        self.class_teacher = (self.class_school + self.n_schools * slot) % self.n_teachers
        # 7 distinct classes per student (consecutive slots keep them distinct)
        base = rng.integers(0, self.n_classes, students)
        offsets = np.arange(CLASSES_PER_STUDENT) * max(1, self.n_classes // CLASSES_PER_STUDENT)
        self.enr_student = np.repeat(np.arange(students), CLASSES_PER_STUDENT)
        self.enr_class = ((base[:, None] + offsets[None, :]) % self.n_classes).ravel()
        self.student_grade = rng.integers(1, 13, students)
        self.given = rng.integers(0, len(GIVEN), students + self.n_teachers)
        self.family = rng.integers(0, len(FAMILY), students + self.n_teachers)


def _names(d: District) -> tuple[pa.Array, pa.Array]:
    return _take(pa.array(GIVEN), d.given), _take(pa.array(FAMILY), d.family)


def generate(out_dir: Path, students: int, version: str = "1.1", seed: int = 0) -> dict[str, int]:
    """Write a district of ``students`` students into ``out_dir``; returns rows per file.

    ``version`` is ``"1.1"``, ``"1.2"`` or ``"asm"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = District(students, seed)
    if version == "asm":
        return _write_asm(out, d)
    if version not in ("1.1", "1.2"):
        raise ValueError("version must be 1.1, 1.2 or asm")
    return _write_oneroster(out, d, version)


def _write_oneroster(out: Path, d: District, version: str) -> dict[str, int]:
    from rostergate.formats.schema.oneroster import FILE_KEYS, HEADERS

    rows: dict[str, int] = {}
    present = {"academicSessions", "orgs", "courses", "classes", "users", "enrollments"}
    if version == "1.2":
        present.add("roles")
    manifest = ["propertyName,value", "manifest.version,1.0", f"oneroster.version,{version}"]
    manifest += [f"file.{k},{'bulk' if k in present else 'absent'}" for k in FILE_KEYS[version]]
    manifest += ["source.systemName,gen_district"]
    (out / "manifest.csv").write_text("\n".join(manifest) + "\n")

    rows["academicSessions"] = _write(out / "academicSessions.csv", list(HEADERS[version]["academicSessions"]), [
        pa.array(["as-2026", "as-2026-s1", "as-2026-s2"]), _const("", 3), _const("", 3),
        pa.array(["2026-2027", "Fall", "Spring"]), pa.array(["schoolYear", "semester", "semester"]),
        pa.array(["2026-08-15", "2026-08-15", "2027-01-16"]), pa.array(["2027-06-30", "2027-01-15", "2027-06-30"]),
        pa.array(["", "as-2026", "as-2026"]), _const("2027", 3)])

    n = d.n_schools
    org_ids = pa.concat_arrays([pa.array(["org-district"]), d.school_ids])
    org_names = pa.concat_arrays([pa.array(["District"]),
                                  pc.binary_join_element_wise(pa.scalar("School "), d.school_ids, "")])
    rows["orgs"] = _write(out / "orgs.csv", list(HEADERS[version]["orgs"]), [
        org_ids, _const("", n + 1), _const("", n + 1), org_names,
        pa.concat_arrays([pa.array(["district"]), _const("school", n)]),
        _const("", n + 1), pa.concat_arrays([pa.array([""]), _const("org-district", n)])])

    m = d.n_courses
    rows["courses"] = _write(out / "courses.csv", list(HEADERS[version]["courses"]), [
        d.course_ids, _const("", m), _const("", m), _const("as-2026", m),
        pc.binary_join_element_wise(pa.scalar("Course "), d.course_ids, ""), d.course_ids, _const("", m),
        _take(d.school_ids, d.course_school), _const("", m), _const("", m)])

    k = d.n_classes
    rows["classes"] = _write(out / "classes.csv", list(HEADERS[version]["classes"]), [
        d.class_ids, _const("", k), _const("", k), pc.binary_join_element_wise(pa.scalar("Class "), d.class_ids, ""),
        _const("", k), _take(d.course_ids, d.class_course), d.class_ids, _const("scheduled", k), _const("", k),
        _take(d.school_ids, d.class_school), _const('"as-2026-s1,as-2026-s2"', k), _const("", k), _const("", k),
        _const("1", k)])

    s, t = d.n_students, d.n_teachers
    u = s + t
    user_ids = pa.concat_arrays([d.student_ids, d.teacher_ids])
    user_school = np.concatenate([d.student_school, d.teacher_school])
    given, family = _names(d)
    grades = pc.utf8_lpad(pc.cast(pa.array(d.student_grade), pa.string()), 2, "0")
    common = dict(
        sourcedId=user_ids, status=_const("", u), dateLastModified=_const("", u), enabledUser=_const("true", u),
        orgSourcedIds=_take(d.school_ids, user_school),
        role=pa.concat_arrays([_const("student", s), _const("teacher", t)]),
        username=user_ids, userIds=_const("", u), givenName=given, familyName=family, middleName=_const("", u),
        identifier=pc.utf8_upper(user_ids),
        email=pc.binary_join_element_wise(user_ids, pa.scalar("@example.org"), ""),
        sms=_const("", u), phone=_const("", u), agentSourcedIds=_const("", u),
        grades=pa.concat_arrays([grades, _const("", t)]), password=_const("", u),
        userMasterIdentifier=_const("", u), preferredGivenName=_const("", u), preferredMiddleName=_const("", u),
        preferredFamilyName=_const("", u), primaryOrgSourcedId=_take(d.school_ids, user_school), pronouns=_const("", u),
    )
    header = list(HEADERS[version]["users"])
    rows["users"] = _write(out / "users.csv", header, [common[h] for h in header])

    if version == "1.2":
        header = list(HEADERS[version]["roles"])
        rows["roles"] = _write(out / "roles.csv", header, [
            pc.binary_join_element_wise(pa.scalar("rol-"), user_ids, ""), _const("", u), _const("", u), user_ids,
            _const("primary", u), common["role"], _const("", u), _const("", u), common["orgSourcedIds"],
            _const("", u)])

    e = len(d.enr_student)
    cls = np.concatenate([d.enr_class, np.arange(k)])
    usr = np.concatenate([d.enr_student, s + d.class_teacher])
    total = e + k
    rows["enrollments"] = _write(out / "enrollments.csv", list(HEADERS[version]["enrollments"]), [
        _ids("enr-", total, 8), _const("", total), _const("", total), _take(d.class_ids, cls),
        _take(d.school_ids, d.class_school[cls]), _take(user_ids, usr),
        pa.concat_arrays([_const("student", e), _const("teacher", k)]),
        pa.concat_arrays([_const("false", e), _const("true", k)]), _const("", total), _const("", total)])
    return rows


def _write_asm(out: Path, d: District) -> dict[str, int]:
    from rostergate.formats.schema.asm import HEADERS as TEMPLATES

    rows: dict[str, int] = {}
    s, t = d.n_students, d.n_teachers
    given, family = _names(d)
    rows["locations"] = _write(out / "locations.csv", list(TEMPLATES["locations"]), [
        d.school_ids, pc.binary_join_element_wise(pa.scalar("School-"), d.school_ids, "")])
    rows["students"] = _write(out / "students.csv", list(TEMPLATES["students"]), [
        d.student_ids, pc.utf8_upper(d.student_ids), given.slice(0, s), _const("", s), family.slice(0, s),
        pc.cast(pa.array(d.student_grade), pa.string()),
        pc.binary_join_element_wise(d.student_ids, pa.scalar("@example.org"), ""), d.student_ids, _const("8", s),
        _take(d.school_ids, d.student_school)])
    rows["staff"] = _write(out / "staff.csv", list(TEMPLATES["staff"]), [
        d.teacher_ids, pc.utf8_upper(d.teacher_ids), given.slice(s), _const("", t), family.slice(s),
        pc.binary_join_element_wise(d.teacher_ids, pa.scalar("@example.org"), ""), d.teacher_ids,
        _take(d.school_ids, d.teacher_school)])
    k = d.n_classes
    rows["courses"] = _write(out / "courses.csv", list(TEMPLATES["courses"]), [
        d.course_ids, d.course_ids, pc.binary_join_element_wise(pa.scalar("Course-"), d.course_ids, ""),
        _take(d.school_ids, d.course_school)])
    rows["classes"] = _write(out / "classes.csv", list(TEMPLATES["classes"]), [
        d.class_ids, d.class_ids, _take(d.course_ids, d.class_course), _take(d.teacher_ids, d.class_teacher),
        _const("", k), _const("", k), _take(d.school_ids, d.class_school)])
    rows["rosters"] = _write(out / "rosters.csv", list(TEMPLATES["rosters"]), [
        _ids("ros-", len(d.enr_student), 8), _take(d.class_ids, d.enr_class), _take(d.student_ids, d.enr_student)])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--version", choices=("1.1", "1.2", "asm"), default="1.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = generate(args.out_dir, args.students, args.version, args.seed)
    print(f"{sum(rows.values()):,} rows in {time.perf_counter() - started:.1f}s: "
          + ", ".join(f"{k} {v:,}" for k, v in rows.items()))


if __name__ == "__main__":
    main()
