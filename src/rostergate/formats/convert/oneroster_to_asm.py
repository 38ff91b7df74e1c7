"""OneRoster 1.1/1.2 CSV → the six Apple School Manager tables.

:class:`OneRosterToAsm` is one conversion run. Its steps read orgs, users
(1.2: and roles), courses, classes and enrollments, drop rows through the
:class:`~.ledger.Ledger` (each with its reason), and build students, staff,
courses, classes, rosters and locations with their ``_line`` lineage. The field
mapping is asm.md §3.3; role and filter decisions are documented in
docs/mapping.md. Every step is column-wise (masks, merges, groupby, the helpers
of :mod:`.frames`); the only Python loops run over config rules, columns or
distinct role values, never rows.

Accounting invariant, per source file: input rows == rows used in the output +
rows reported as dropped. For enrollments.csv "used" means a rosters.csv row or
an instructor slot; for roles.csv (1.2) a location of an output person.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import code_pair_duplicate_mask, position_in, strings
from rostergate.formats.catalogue import issue
from rostergate.formats.convert.columnrules import (
    CLASS_DEFAULTS,
    CLASS_OPTIONAL,
    COURSE_DEFAULTS,
    LOCATION_DEFAULTS,
    PERSON_DEFAULTS,
    fill,
)
from rostergate.formats.convert.frames import (
    all_empty,
    attach,
    col,
    duplicated,
    explode_list,
    isin,
    map_values,
    passes_filter,
    repeated_pairs,
    select,
    split_first,
    strictly_increasing,
    take,
    widen,
)
from rostergate.formats.convert.ledger import Ledger, lineage_frame, role_reason
from rostergate.formats.convert.load import load_file
from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.schema.asm import HEADERS, MAX_INSTRUCTORS, MAX_LOCATIONS

_ENROLLMENT_COLUMNS = frozenset({
    "sourcedId", "status", "classSourcedId", "userSourcedId", "role", "primary", "beginDate", "endDate", "_line",
})


class OneRosterToAsm:
    """One OneRoster conversion run (state shared by the steps, all column-wise)."""

    def __init__(self, src_dir: Path, source_format: str, mapping: Mapping, as_of: dt.date,
                 ledger: Ledger) -> None:
        self.src_dir = src_dir
        self.v12 = source_format == "oneroster-1.2"
        self.mapping = mapping
        self.today = as_of.isoformat()
        self.ledger = ledger
        self.filters = mapping.filters

    # small shared steps
    def _common(self, frame: pd.DataFrame, file: str) -> pd.DataFrame:
        drop = self.ledger.drop
        frame = drop(frame, duplicated(frame["sourcedId"]), file, "duplicate_id")
        return drop(frame, self._to_be_deleted(frame), file, "tobedeleted")

    @staticmethod
    def _to_be_deleted(frame: pd.DataFrame) -> np.ndarray:
        status = col(frame, "status")
        if all_empty(status):  # bulk files leave status blank (oneroster.md §5)
            return np.zeros(len(frame), dtype=bool)
        return (status.str.strip().str.lower() == "tobedeleted").to_numpy(dtype=bool)

    def _outside_dates(self, frame: pd.DataFrame) -> np.ndarray:
        begin, end = col(frame, "beginDate"), col(frame, "endDate")
        if all_empty(begin) and all_empty(end):
            return np.zeros(len(frame), dtype=bool)
        begin, end = begin.str.strip(), end.str.strip()
        # ISO dates compare correctly as strings; the validator rejects other formats.
        return (((begin != "") & (begin > self.today)) | ((end != "") & (end <= self.today))).to_numpy(dtype=bool)

    def run(self) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
        ledger = self.ledger
        orgs = load_file(self.src_dir, "orgs.csv", ("sourcedId", "name"), ledger)
        user_cols = ("sourcedId",) if self.v12 else ("sourcedId", "orgSourcedIds")
        users = load_file(self.src_dir, "users.csv", user_cols, ledger)
        roles = load_file(self.src_dir, "roles.csv", ("sourcedId", "userSourcedId", "role", "orgSourcedId"),
                          ledger) if self.v12 else None
        courses = load_file(self.src_dir, "courses.csv", ("sourcedId", "orgSourcedId"), ledger, optional_file=True)
        classes = load_file(self.src_dir, "classes.csv", ("sourcedId", "courseSourcedId", "schoolSourcedId"),
                            ledger, optional_file=True)
        enrollments = load_file(self.src_dir, "enrollments.csv",
                                ("sourcedId", "classSourcedId", "userSourcedId", "role"), ledger, optional_file=True)
        if enrollments is not None:  # the biggest file: carry only what the conversion reads
            enrollments = enrollments[[c for c in enrollments.columns if c in _ENROLLMENT_COLUMNS]]

        orgs = self._common(orgs, "orgs.csv")
        orgs = ledger.drop(orgs, ~passes_filter(orgs["sourcedId"], self.filters.include_schools,
                                                self.filters.exclude_schools), "orgs.csv", "filter_school")
        self.available = pd.Index(orgs["sourcedId"])

        people, pairs = self._people_v12(users, roles) if roles is not None else self._people_v11(users)
        del users, roles  # each input is let go once read, so a million-student run fits in less memory
        students, staff = self._person_tables(people, pairs)
        del people, pairs
        course_out = self._courses(courses)
        class_src = self._classes(classes, course_out)
        del courses, classes
        rosters, instructors = self._enrollments(enrollments, class_src, students, staff)
        del enrollments
        class_out = self._class_table(class_src, instructors)
        locations = self._locations(orgs, students, staff, course_out, class_out)

        tables, lineage = {}, {}
        for name, (frame, file) in {
            "students.csv": (students, "users.csv"), "staff.csv": (staff, "users.csv"),
            "courses.csv": (course_out, "courses.csv"), "classes.csv": (class_out, "classes.csv"),
            "rosters.csv": (rosters, "enrollments.csv"), "locations.csv": (locations, "orgs.csv"),
        }.items():
            key = frame.columns[0]
            if not strictly_increasing(strings(frame[key])):
                frame = frame.sort_values(key, kind="stable", ignore_index=True)
            else:
                frame = frame.reset_index(drop=True)
            lineage[name] = lineage_frame(file, frame["_line"])
            tables[name] = frame.drop(columns="_line")
        return tables, lineage

    # people -------------------------------------------------------------------
    def _people_v11(self, users: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Users with ``_role``/``_category``; (id, item=org) pairs in location order."""
        file, drop = "users.csv", self.ledger.drop
        users = self._common(users, file)
        users = drop(users, col(users, "enabledUser").str.strip().str.lower() == "false", file, "disabled")
        role = col(users, "role").str.strip()
        users = users.assign(_role=role.where(role != "", "student"))  # Apple A15: blank ⇒ student
        users = self._categorise(users)
        pairs = explode_list(users, "sourcedId", "orgSourcedIds")
        users, pairs = self._resolve_orgs(users, pairs, file)
        return users, pairs

    def _people_v12(self, users: pd.DataFrame, roles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """1.2: each person's role and orgs come from roles.csv (oneroster.md §9)."""
        ufile, rfile, drop, f = "users.csv", "roles.csv", self.ledger.drop, self.filters
        users = self._common(users, ufile)
        users = drop(users, col(users, "enabledUser").str.strip().str.lower() == "false", ufile, "disabled")
        roles = self._common(roles, rfile)
        roles = drop(roles, self._outside_dates(roles), rfile, "outside_dates")
        # One probe finds every role's user; which users still have a role after each
        # step is then a count per user position.
        users, roles = users.reset_index(drop=True), roles.reset_index(drop=True)
        user_pos = position_in(roles["userSourcedId"], users["sourcedId"])
        alive, drop_where = np.ones(len(roles), dtype=bool), self.ledger.drop_where

        def users_with_roles() -> np.ndarray:
            return np.bincount(user_pos[alive], minlength=len(users)) > 0

        alive = drop_where(roles, alive, user_pos < 0, rfile, "user_missing")
        with_roles = users_with_roles()
        alive = drop_where(roles, alive, ~passes_filter(roles["orgSourcedId"], f.include_schools, f.exclude_schools),
                           rfile, "filter_school")
        after_filter = users_with_roles()
        alive = drop_where(roles, alive, ~isin(roles["orgSourcedId"], self.available), rfile, "location_missing")
        remaining = users_with_roles()
        # a user left without a role row: the school filter explains it before a missing org does
        users = drop(users, ~remaining & with_roles & ~after_filter, ufile, "filter_school")
        users = drop(users, ~with_roles[users.index], ufile, "no_role")
        users = drop(users, ~remaining[users.index], ufile, "location_missing")
        renumber = np.full(len(remaining), -1, dtype=np.int64)
        renumber[users.index.to_numpy()] = np.arange(len(users))
        users = users.reset_index(drop=True)

        # The person's role: a role that goes to ASM first, then one at the user's
        # primaryOrgSourcedId, then roleType=primary, then the lowest roles.csv sourcedId.
        # Roles stay in file order; ``order`` is that ranking (Arrow's sort is stable).
        user_pos = renumber[user_pos[alive]]  # every user kept has a role
        roles = select(roles, alive).reset_index(drop=True)
        role = roles["role"].str.strip()
        category = map_values(role, dict(self.mapping.roles), "drop")
        elsewhere = pc.not_equal(strings(roles["orgSourcedId"]), take(col(users, "primaryOrgSourcedId"), user_pos))
        rank = ((category == "drop").to_numpy(dtype=np.int8) * 4
                + elsewhere.to_numpy(zero_copy_only=False).astype(np.int8) * 2
                + (col(roles, "roleType").str.strip() != "primary").to_numpy(dtype=np.int8))
        order = pc.sort_indices(
            pa.table({"user": user_pos, "rank": rank, "id": strings(roles["sourcedId"])}),
            sort_keys=[("user", "ascending"), ("rank", "ascending"), ("id", "ascending")],
        ).to_numpy()
        ranked_users = user_pos[order]
        chosen = order[np.concatenate(([True], ranked_users[1:] != ranked_users[:-1]))] if len(order) else order
        pick = np.full(len(users), -1, dtype=np.int64)
        pick[user_pos[chosen]] = chosen
        users["_role"] = pd.Series(take(role, pick), index=users.index, dtype="str")
        users["_category"] = pd.Series(take(category, pick), index=users.index, dtype="str")
        users = self._categorise(users, categorised=True)

        # Role rows feed locations only when they are in the person's ASM file (codes:
        # 0 student, 1 staff; -1 for a person who was left out).
        person = np.full(len(pick), -1, dtype=np.int8)
        person[users.index.to_numpy()] = (users["_category"] != "student").to_numpy(dtype=np.int8)
        role_file = np.where(category == "student", 0, np.where(category == "staff", 1, 2)).astype(np.int8)
        alive = np.ones(len(roles), dtype=bool)
        alive = drop_where(roles, alive, person[user_pos] < 0, rfile, "user_missing")
        alive = drop_where(roles, alive, role_file != person[user_pos], rfile, "other_role")
        org_pos = position_in(roles["orgSourcedId"], pd.Series(self.available, dtype="str"))
        ranked = order[alive[order]]
        repeated = np.zeros(len(roles), dtype=bool)
        repeated[ranked[code_pair_duplicate_mask(user_pos[ranked], org_pos[ranked])]] = True
        alive = drop_where(roles, alive, repeated, rfile, "duplicate_org")
        ranked = order[alive[order]]
        self.ledger.used(rfile, len(ranked))
        pairs = pd.DataFrame({"id": pd.Series(take(roles["userSourcedId"], ranked), dtype="str"),
                              "item": pd.Series(take(roles["orgSourcedId"], ranked), dtype="str")})
        return users, pairs

    def _categorise(self, users: pd.DataFrame, categorised: bool = False) -> pd.DataFrame:
        """Drop people by role (mapping.roles), role filter and grade filter; add ``_grade``."""
        file, drop, f = "users.csv", self.ledger.drop, self.filters
        if not categorised:
            users = users.assign(_category=map_values(users["_role"], dict(self.mapping.roles), "drop"))
        out = users["_category"] == "drop"
        for role in sorted(users.loc[out, "_role"].unique()):  # distinct roles, not rows
            users = drop(users, (users["_category"] == "drop") & (users["_role"] == role), file, role_reason(role))
        users = drop(users, ~passes_filter(users["_role"], f.include_roles, f.exclude_roles), file, "filter_role")
        users = users.assign(_grade=split_first(col(users, "grades")))
        grade_ok = passes_filter(users["_grade"], f.include_grades, f.exclude_grades)
        users = drop(users, (users["_category"] == "student") & ~grade_ok, file, "filter_grade")
        return users

    def _resolve_orgs(self, users: pd.DataFrame, pairs: pd.DataFrame, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Keep (user, org) pairs whose org is in the output; drop users left with none."""
        f = self.filters
        pairs = select(pairs, ~duplicated(pairs["id"], pairs["item"]))
        allowed = passes_filter(pairs["item"], f.include_schools, f.exclude_schools)
        ok = allowed & isin(pairs["item"], self.available)
        kept = isin(users["sourcedId"], pairs.loc[ok, "id"])
        filtered = (isin(users["sourcedId"], pairs.loc[~allowed, "id"]) if not allowed.all()
                    else pd.Series(False, index=users.index))
        # a user left without an org: the school filter explains it before a missing org does
        users = self.ledger.drop(users, ~kept & filtered, file, "filter_school")
        users = self.ledger.drop(users, ~kept[users.index], file, "location_missing")
        lost = pairs[~ok & allowed & isin(pairs["id"], users["sourcedId"])] if not ok.all() else pairs.iloc[:0]
        if len(lost):
            first_id, first_org = lost["id"].iat[0], lost["item"].iat[0]
            first_pos = position_in(pd.Series([first_id], dtype="str"), users["sourcedId"])[0]
            line = int(users["_line"].to_numpy()[first_pos])
            self.ledger.issues.append(issue("convert.dropped.location_reference", file=file, line=line,
                                            column="orgSourcedIds", value=str(first_org), count=len(lost)))
        return users, select(pairs, ok.to_numpy()).reset_index(drop=True)

    def _person_tables(self, people: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        wide = widen(pairs, "id", "item", "location_id", MAX_LOCATIONS)
        people = attach(people, "sourcedId", wide)
        people["_password_policy"] = self._password_policy(people)
        tables = []
        for category, name in (("student", "students"), ("staff", "staff")):
            src = select(people, (people["_category"] == category).to_numpy()).reset_index(drop=True)
            header = HEADERS[name]
            defaults = {c: PERSON_DEFAULTS[c] for c in header if c in PERSON_DEFAULTS}
            values = fill(src, defaults, self.mapping.rules_for(name), {}, self.ledger.issues, "users.csv")
            frame = pd.DataFrame({"person_id": src["sourcedId"], **values}, index=src.index)
            # location_id always; location_id_2 … only as far as someone in this file uses them
            for column in wide.columns:
                if column == "location_id" or src[column].fillna("").ne("").any():
                    frame[column] = src[column].fillna("").astype("str")
            if "location_id" not in frame:
                frame["location_id"] = pd.Series("", index=src.index, dtype="str")
            frame = frame[[*header, *[c for c in frame.columns if c not in header]]]
            frame["_line"] = src["_line"].to_numpy()
            self.ledger.used("users.csv", len(frame))
            tables.append(frame.astype({c: "str" for c in frame.columns if c != "_line"}))
        return tables[0], tables[1]

    def _password_policy(self, people: pd.DataFrame) -> pd.Series:
        """First matching [[password_policy]] rule by primary location and first grade code."""
        policy = pd.Series("", index=people.index, dtype="str")
        done = pd.Series(False, index=people.index)
        location = people["location_id"].fillna("") if "location_id" in people else policy
        for rule in self.mapping.password_policy:
            match = ~done
            if rule.locations:
                match &= isin(location, rule.locations)
            if rule.grades:
                match &= isin(people["_grade"], rule.grades)
            policy = policy.mask(match, rule.policy)
            done |= match
        return policy.where(people["_category"] == "student", "")

    # courses and classes -------------------------------------------------------
    def _at_kept_school(self, frame: pd.DataFrame, column: str, file: str) -> pd.DataFrame:
        """Drop rows whose school (``column``) the filters exclude, then those whose org is not in the output."""
        f = self.filters
        frame = self.ledger.drop(frame, ~passes_filter(frame[column], f.include_schools, f.exclude_schools),
                                 file, "filter_school")
        return self.ledger.drop(frame, ~isin(frame[column], self.available), file, "location_missing")

    def _courses(self, courses: pd.DataFrame | None) -> pd.DataFrame:
        file = "courses.csv"
        header = HEADERS["courses"]
        if courses is None:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in header} | {"_line": pd.Series(dtype="int64")})
        courses = self._at_kept_school(self._common(courses, file), "orgSourcedId", file).reset_index(drop=True)
        values = fill(courses, COURSE_DEFAULTS, self.mapping.rules_for("courses"), {}, self.ledger.issues, file)
        frame = pd.DataFrame({"course_id": courses["sourcedId"], **values,
                              "location_id": courses["orgSourcedId"]})
        frame["_line"] = courses["_line"]
        self.ledger.used(file, len(frame))
        return frame

    def _classes(self, classes: pd.DataFrame | None, courses: pd.DataFrame) -> pd.DataFrame | None:
        file = "classes.csv"
        if classes is None:
            return None
        classes = self._at_kept_school(self._common(classes, file), "schoolSourcedId", file)
        classes = self.ledger.drop(classes, ~isin(classes["courseSourcedId"], courses["course_id"]),
                                   file, "course_missing")
        return classes.reset_index(drop=True)

    def _class_table(self, classes: pd.DataFrame | None, instructors: pd.DataFrame) -> pd.DataFrame:
        file = "classes.csv"
        header = list(HEADERS["classes"])
        if classes is None:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in header} | {"_line": pd.Series(dtype="int64")})
        overrides = self.mapping.rules_for("classes")
        values = fill(classes, CLASS_DEFAULTS, overrides, CLASS_OPTIONAL, self.ledger.issues, file)
        frame = pd.DataFrame({"class_id": classes["sourcedId"], "class_number": values.pop("class_number"),
                              "course_id": classes["courseSourcedId"]})
        wide = widen(instructors, "class", "user", "instructor_id", MAX_INSTRUCTORS)
        slots = attach(frame[["class_id"]], "class_id", wide)
        extra = [f"instructor_id_{i}" for i in range(4, MAX_INSTRUCTORS + 1) if f"instructor_id_{i}" in wide]
        for column in ["instructor_id", "instructor_id_2", "instructor_id_3", *extra]:
            frame[column] = slots[column].fillna("").astype("str").to_numpy() if column in slots else ""
        frame["location_id"] = classes["schoolSourcedId"]
        # Extra columns go after the template's columns so its header stays a prefix (asm.md §1.5:
        # header-matched, either position works).
        frame = frame[[*header, *extra]]
        for column, series in values.items():
            frame[column] = series
        frame["_line"] = classes["_line"]
        self.ledger.used(file, len(frame))
        return frame.astype({c: "str" for c in frame.columns if c != "_line"})

    # enrollments ---------------------------------------------------------------
    def _enrollments(self, enrollments: pd.DataFrame | None, classes: pd.DataFrame | None,
                     students: pd.DataFrame, staff: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        file = "enrollments.csv"
        roster_empty = pd.DataFrame({c: pd.Series(dtype="str") for c in HEADERS["rosters"]}
                                    | {"_line": pd.Series(dtype="int64")})
        no_instructors = pd.DataFrame({"class": pd.Series(dtype="str"), "user": pd.Series(dtype="str")})
        if enrollments is None:
            return roster_empty, no_instructors
        # One pass over the full file: every check is a mask over the same rows and the
        # ledger only narrows ``alive``; the frame is filtered once, at the end.
        e, drop = enrollments, self.ledger.drop_where
        alive = np.ones(len(e), dtype=bool)
        alive = drop(e, alive, duplicated(e["sourcedId"]), file, "duplicate_id")
        alive = drop(e, alive, self._to_be_deleted(e), file, "tobedeleted")
        alive = drop(e, alive, self._outside_dates(e), file, "outside_dates")
        role = e["role"].str.strip()
        is_student = (role == "student").to_numpy(dtype=bool)
        is_instructor = isin(role, self.mapping.instructor_roles).to_numpy()
        alive = drop(e, alive, ~(is_student | is_instructor), file, "enrollment_role")
        # Positions in the class list and in students+staff (one hash probe each) say
        # whether the references resolve, which file the user is in, and give the
        # dense codes that find repeated (class, user) pairs without hashing strings.
        class_ids = classes["sourcedId"] if classes is not None else pd.Series(dtype="str")
        people = pd.concat([students["person_id"], staff["person_id"]], ignore_index=True)
        class_pos = position_in(e["classSourcedId"], class_ids)
        user_pos = position_in(e["userSourcedId"], people)
        alive = drop(e, alive, class_pos < 0, file, "class_missing")
        alive = drop(e, alive, user_pos < 0, file, "user_missing")
        in_students = user_pos < len(students)
        alive = drop(e, alive, is_student & ~in_students, file, "user_not_student")
        alive = drop(e, alive, ~is_student & in_students, file, "user_not_staff")
        # A repeated (user, class) pair lies within the student rows or within the teacher
        # rows (every user is now in exactly one of the two files), and each part is
        # usually listed in order on one side (students by user, teachers by class).
        repeated = repeated_pairs(alive & is_student, user_pos, class_pos)
        repeated |= repeated_pairs(alive & ~is_student, user_pos, class_pos)
        alive = drop(e, alive, repeated, file, "duplicate_pair")

        teaching = alive & ~is_student
        teach = select(e[["sourcedId", "classSourcedId", "userSourcedId"]].assign(primary=col(e, "primary")),
                       teaching)
        # ASM instructor order (asm.md §3.3): primary teacher first, then by enrolment sourcedId.
        primary = pc.utf8_lower(pc.utf8_trim_whitespace(strings(teach.pop("primary"))))
        secondary = pc.fill_null(pc.not_equal(primary, "true"), True)
        # Arrow's stable sort (by UTF-8 bytes, i.e. code points, as pandas orders strings): pandas'
        # multi-key sort_values builds a categorical per key, seconds for a big district's teachers
        order = pc.sort_indices(pa.table({"c": strings(teach["classSourcedId"]), "s": secondary,
                                          "i": strings(teach["sourcedId"])}),
                                sort_keys=[("c", "ascending"), ("s", "ascending"), ("i", "ascending")])
        teach = teach.iloc[order.to_numpy()]
        over = (teach.groupby("classSourcedId", sort=False).cumcount() >= MAX_INSTRUCTORS).to_numpy()
        over_rows = np.zeros(len(e), dtype=bool)
        over_rows[teach.index.to_numpy()[over]] = True
        alive = drop(e, alive, over_rows, file, "instructor_limit")
        teach = teach[~over]

        frame = select(e[["sourcedId", "classSourcedId", "userSourcedId", "_line"]], alive & is_student)
        frame.columns = ["roster_id", "class_id", "student_id", "_line"]
        self.ledger.used(file, len(frame) + len(teach))
        return (frame.reset_index(drop=True),
                pd.DataFrame({"class": teach["classSourcedId"].to_numpy(), "user": teach["userSourcedId"].to_numpy()}))

    # locations -----------------------------------------------------------------
    def _locations(self, orgs: pd.DataFrame, *tables: pd.DataFrame) -> pd.DataFrame:
        file = "orgs.csv"
        used = pd.Index([])
        for table in tables:
            for column in table.columns:
                if column == "location_id" or column.startswith("location_id_"):
                    used = used.union(pd.Index(table[column].unique()))
        orgs = self.ledger.drop(orgs, ~isin(orgs["sourcedId"], used), file, "unreferenced")
        orgs = orgs.reset_index(drop=True)
        values = fill(orgs, LOCATION_DEFAULTS, self.mapping.rules_for("locations"), {}, self.ledger.issues, file)
        frame = pd.DataFrame({"location_id": orgs["sourcedId"], **values})
        frame["_line"] = orgs["_line"]
        self.ledger.used(file, len(frame))
        return frame
