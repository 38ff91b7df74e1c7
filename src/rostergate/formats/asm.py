"""Apple School Manager CSV rules (asm.md §1), as tables checked column-wise.

:func:`validate_asm` checks a folder (or in-memory files) holding the six ASM files: exact file
names, header rows (template columns, extra ``location_id_N`` up to 999 and
``instructor_id_N`` up to 15), required values, identifier characters, unique
keys (``person_id`` across students *and* staff, ``roster_id``), password
policies, at most 15 instructors per class and every reference (asm.md §1.8).
Header-only files and shared e-mail addresses are warnings: the roster-safety
stage decides whether they hold a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.collect import Collector, parallel_map
from rostergate.formats.csvio import ASM_ESCAPE, LoadedTable, load_bytes, load_table
from rostergate.formats.rules import (
    arrow,
    code_pair_duplicate_mask,
    duplicate_mask,
    pair_duplicate_mask,
    flag,
    later_duplicates,
    lookup,
    missing_in,
    nonempty,
    not_in,
    not_in_charset,
    not_matching,
    required,
)
from rostergate.formats.text import EncodingPolicy

# asm.md §1.2–§1.7: template header rows, in template order
TEMPLATES: dict[str, tuple[str, ...]] = {
    "students": ("person_id", "person_number", "first_name", "middle_name", "last_name", "grade_level",
                 "email_address", "sis_username", "password_policy", "location_id"),
    "staff": ("person_id", "person_number", "first_name", "middle_name", "last_name", "email_address",
              "sis_username", "location_id"),
    "courses": ("course_id", "course_number", "course_name", "location_id"),
    "classes": ("class_id", "class_number", "course_id", "instructor_id", "instructor_id_2", "instructor_id_3",
                "location_id"),
    "rosters": ("roster_id", "class_id", "student_id"),
    "locations": ("location_id", "location_name"),
}
FILES: tuple[str, ...] = tuple(f"{stem}.csv" for stem in TEMPLATES)

KEYS = {"students": "person_id", "staff": "person_id", "courses": "course_id", "classes": "class_id",
        "rosters": "roster_id", "locations": "location_id"}

REQUIRED = {
    "students": ("person_id", "first_name", "last_name", "location_id"),
    "staff": ("person_id", "first_name", "last_name", "location_id"),
    "courses": ("course_id", "location_id"),
    "classes": ("class_id", "course_id", "location_id"),
    "rosters": ("roster_id", "class_id", "student_id"),
    "locations": ("location_id", "location_name"),
}

# optional extra columns (asm.md §1.2, §1.3, §1.5): regex, allowed N range, limit text
_LOCATION_N = re.compile(r"location_id_(\d+)")
_INSTRUCTOR_N = re.compile(r"instructor_id_(\d+)")
EXTRA = {
    "students": (_LOCATION_N, 2, 999, "location_id_2 … location_id_999"),
    "staff": (_LOCATION_N, 2, 999, "location_id_2 … location_id_999"),
    "classes": (_INSTRUCTOR_N, 2, 15, "instructor_id_2 … instructor_id_15"),
}
OPTIONAL_EXTRA_NAMES = {"classes": {"class_display_name"}}
MAX_INSTRUCTORS = 15

# asm.md §1.1 "alphanumeric and can include a hyphen"; '_' and '.' seen in the wild (§7 Q4)
ID_OK = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
ID_TOLERATED = r"[A-Za-z0-9._-]+"
ID_MAX = 256  # asm.md §1.2 notes (RosterPerson/RosterClass identifier limits, A24)
NAME_MAX = 1024
NAME_COLUMNS = {"students": ("first_name", "middle_name", "last_name"), "staff": ("first_name", "middle_name", "last_name"),
                "courses": ("course_name",), "locations": ("location_name",), "classes": ("class_display_name",)}
PASSWORD_POLICIES = ("4", "6", "8")

# asm.md §1.8: (file, column or extra-column regex, target file, target column)
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("students", "location_id", "locations", "location_id"),
    ("students", "location_id_N", "locations", "location_id"),
    ("staff", "location_id", "locations", "location_id"),
    ("staff", "location_id_N", "locations", "location_id"),
    ("courses", "location_id", "locations", "location_id"),
    ("classes", "course_id", "courses", "course_id"),
    ("classes", "instructor_id", "staff", "person_id"),
    ("classes", "instructor_id_N", "staff", "person_id"),
    ("classes", "location_id", "locations", "location_id"),
    ("rosters", "class_id", "classes", "class_id"),
    ("rosters", "student_id", "students", "person_id"),
)


def id_columns(stem: str, columns: list[str]) -> list[str]:
    """Identifier columns of a file: its key, references and extra location/instructor columns."""
    ids = {KEYS[stem]} | {col for f, col, _, _ in REFERENCES if f == stem and not col.endswith("_N")}
    ids |= {c for c in columns if _LOCATION_N.fullmatch(c) or _INSTRUCTOR_N.fullmatch(c)}
    return [c for c in columns if c in ids]


def validate_asm(
    source: Path | Mapping[str, bytes | pd.DataFrame],
    collector: Collector,
    *,
    encoding_policy: EncodingPolicy = "convert",
    progress: Callable[[str], None] | None = None,
) -> dict[str, LoadedTable]:
    """Validate the ASM files in ``source`` into ``collector``; returns the tables read.

    ``source`` is a folder, or file name → content for files that exist only in memory
    (the converter's output: checked before it is zipped, never written out as CSVs).
    Content is the file's bytes, or the frame of strings they parse to, given only when
    that is certain (see ``asmwrite.is_verbatim``): the rules then skip the parse.
    """
    present: dict[str, Path | bytes | pd.DataFrame] = (
        dict(source) if isinstance(source, Mapping) else {p.name: p for p in Path(source).iterdir() if p.is_file()}
    )
    by_fold = {name.casefold(): name for name in present}
    tables: dict[str, LoadedTable] = {}
    found: list[tuple[str, Path]] = []
    for stem in TEMPLATES:
        fname = f"{stem}.csv"
        actual = fname if fname in present else by_fold.get(fname)
        if actual is None:
            collector.add("asm.file.missing", file=fname, value=fname)
            continue
        if actual != fname:
            collector.add("asm.file.name_case", file=actual, value=actual, expected=fname)
        if progress:
            progress(f"reading {fname}")
        found.append((stem, present[actual]))
    # asm.md §1.1: comma or semicolon
    def load(item: tuple[str, Path | bytes | pd.DataFrame]) -> LoadedTable:
        stem, where = item
        if isinstance(where, pd.DataFrame):
            return LoadedTable(f"{stem}.csv", where, header=[str(c) for c in where.columns])
        read = load_bytes if isinstance(where, bytes) else load_table
        return read(where, f"{stem}.csv", encoding_policy=encoding_policy, allowed_delimiters=(",", ";"),
                    escape_char=ASM_ESCAPE)

    loaded_files = parallel_map(load, found)
    for (stem, _), loaded in zip(found, loaded_files):
        collector.extend_loaded(loaded)
        if loaded.frame is not None:
            tables[stem] = loaded
    known = {f.casefold() for f in FILES}
    for name in sorted(present):
        if name.casefold() not in known and not name.startswith("."):
            collector.add("asm.file.unexpected", file=name, value=name)
    tasks: list[Callable[[Collector], None]] = []
    for stem, t in tables.items():
        _check_header(stem, t, collector)
        tasks += _value_tasks(stem, t, tables)
    tasks += _reference_tasks(tables)
    tasks.append(lambda c: _check_people(tables, c))
    if progress:
        progress("checking values and references")
    collector.run(tasks)  # all independent: one pool keeps both cores busy to the end
    return tables


def _check_header(stem: str, t: LoadedTable, c: Collector) -> None:
    template = TEMPLATES[stem]
    cols = list(t.frame.columns)
    expected = ",".join(template)
    for col in template:
        if col not in cols:
            sev = "error" if col in REQUIRED[stem] else "warning"
            c.add("asm.header.missing_column", file=t.name, line=1, column=col, expected=expected, severity=sev)
    extra = EXTRA.get(stem)
    for col in cols:
        if col in template or col in OPTIONAL_EXTRA_NAMES.get(stem, ()):
            continue
        m = extra[0].fullmatch(col) if extra else None
        if m:
            n = int(m.group(1))
            if not extra[1] <= n <= extra[2]:
                c.add("asm.header.column_limit", file=t.name, line=1, column=col, limit=extra[3])
            continue
        c.add("asm.header.unknown_column", file=t.name, line=1, column=col)
    order = [col for col in cols if col in template]
    if order != [col for col in template if col in cols]:
        c.add("asm.header.order", file=t.name, line=1, expected=expected)
    if len(t.frame) == 0:
        c.add("asm.file.header_only", file=t.name, line=1)


def _value_tasks(stem: str, t: LoadedTable, loaded: dict[str, LoadedTable]) -> list[Callable[[Collector], None]]:
    """Column tasks for one file, run side by side by :meth:`Collector.run`."""
    frame = t.frame
    tasks: list[Callable[[Collector], None]] = [lambda c: required(c, "asm.value.required", t, REQUIRED[stem])]
    if len(frame) == 0:
        return tasks
    # A reference whose target file is present is checked against the target's keys, which
    # are themselves checked here; so character rules run on keys and unresolvable references.
    resolvable = {col for f, col, target, target_col in REFERENCES
                  if f == stem and target in loaded and target_col in loaded[target].frame.columns}
    for col in id_columns(stem, list(frame.columns)):
        extra = _LOCATION_N.fullmatch(col) or _INSTRUCTOR_N.fullmatch(col)
        covered = col in resolvable or (extra and f"{col.rsplit('_', 1)[0]}_N" in resolvable)
        if col != KEYS[stem] and covered:
            continue
        tasks.append(lambda c, col=col, s=frame[col]: _check_id(t, col, s, c))
    for col in NAME_COLUMNS.get(stem, ()):
        if col in frame.columns:
            tasks.append(lambda c, col=col, s=frame[col]: flag(
                c, "asm.value.too_long", t, col, _longer_than(s, NAME_MAX), limit=NAME_MAX))
    key = KEYS[stem]
    if key in frame.columns and stem not in ("students", "staff"):
        tasks.append(lambda c, s=frame[key]: flag(c, "asm.value.duplicate_id", t, key, later_duplicates(s)))
    if stem == "students" and "password_policy" in frame.columns:
        tasks.append(lambda c, s=frame["password_policy"]: flag(
            c, "asm.value.password_policy", t, "password_policy", not_in(s, PASSWORD_POLICIES)))
    if stem == "classes":
        tasks.append(lambda c: _check_instructor_count(t, c))
    if stem == "rosters" and _roster_pairs_checked(loaded):
        known = [loaded[f].frame[k] if f in loaded and k in loaded[f].frame.columns else None
                 for f, k in (("classes", "class_id"), ("students", "person_id"))]
        tasks.append(lambda c, a=frame["class_id"], b=frame["student_id"]: _check_roster_pairs(
            t, a, b, known, loaded.get("students"), c))
    return tasks


def _check_id(t: LoadedTable, col: str, s: pd.Series, c: Collector) -> None:
    """asm.md §1.1: letters, digits and '-' (``_``/``.`` tolerated with a warning, §7 Q4)."""
    odd = not_in_charset(s, ID_OK)
    if odd.any():
        bad = odd & not_matching(s, ID_TOLERATED)
        flag(c, "asm.value.invalid_id", t, col, bad)
        flag(c, "asm.value.id_characters", t, col, odd & ~bad)
    flag(c, "asm.value.too_long", t, col, _longer_than(s, ID_MAX), limit=ID_MAX)


def _longer_than(s: pd.Series, limit: int) -> np.ndarray:
    arr = arrow(s)
    # bytes ≥ characters, so only values over the limit in bytes need counting in characters
    if not pc.any(pc.greater(pc.binary_length(arr), limit)).as_py():
        return np.zeros(len(s), dtype=bool)
    return pc.greater(pc.utf8_length(arr), limit).to_numpy(zero_copy_only=False)


def _check_instructor_count(t: LoadedTable, c: Collector) -> None:
    """asm.md §1.5: at most 15 instructors per class; a class without one is flagged (§1.8, OSS R12)."""
    frame = t.frame
    instr = [col for col in frame.columns if col == "instructor_id" or _INSTRUCTOR_N.fullmatch(col)]
    if not instr:
        return
    counts = sum((frame[col] != "").to_numpy(dtype=np.int64) for col in instr)
    if "class_id" in frame.columns:
        flag(c, "asm.class.no_instructor", t, "class_id", counts == 0)
    too_many = counts > MAX_INSTRUCTORS
    for pos in np.flatnonzero(too_many)[: c.cap].tolist():
        c.add("asm.class.too_many_instructors", file=t.name, line=_line(t, pos), column="instructor_id",
              value=str(frame["class_id"].iat[pos]) if "class_id" in frame else None, count=int(counts[pos]))


#: rosters.csv references resolved by :func:`_check_roster_pairs` (it probes the same keys).
_ROSTER_TARGETS = (("class_id", "classes", "class_id"), ("student_id", "students", "person_id"))


def _check_roster_pairs(t: LoadedTable, classes: pd.Series, students: pd.Series,
                        known: list[pd.Series | None], student_table: LoadedTable | None, c: Collector) -> None:
    """One rosters.csv row per (class, student); every student in some class; and the
    references of both columns (asm.md §1.8), from the same lookups.

    The pair is numbered by the positions of its class and student in classes.csv and
    students.csv (hashing the small files, not the big one); a value missing from its
    file is reported as a missing record and makes the pair check fall back to
    hashing the pair itself.
    """
    codes = []
    for values, keys, (col, target, target_col) in zip((classes, students), known, _ROSTER_TARGETS):
        if keys is None:
            continue
        found = lookup(arrow(values), arrow(keys))
        if (found < 0).any():
            missing = (found < 0) & nonempty(values).to_numpy()
            flag(c, "asm.reference.missing_record", t, col, missing, target=f"{target}.csv", target_column=target_col)
            continue
        codes.append((found, len(keys)))
    if len(codes) == 2:
        (ca, _), (cb, _) = codes
        mask = code_pair_duplicate_mask(ca, cb)
    else:
        mask = pair_duplicate_mask(arrow(classes), arrow(students))
    mask = mask & nonempty(classes).to_numpy() & nonempty(students).to_numpy()
    flag(c, "asm.value.duplicate_roster", t, "student_id", mask)
    if student_table is None or known[1] is None or len(t.frame) == 0:
        return
    ids = known[1]
    if len(codes) == 2:
        first = pc.index_in(arrow(ids), value_set=arrow(ids).combine_chunks()).to_numpy(zero_copy_only=False)
        lonely = np.bincount(codes[1][0], minlength=len(ids))[first] == 0
        lonely &= nonempty(ids).to_numpy()
    else:
        lonely = missing_in(ids, students)
    flag(c, "asm.student.no_class", student_table, "person_id", lonely)


def _roster_pairs_checked(tables: dict[str, LoadedTable]) -> bool:
    """Whether :func:`_check_roster_pairs` runs (and so resolves the rosters references)."""
    return "rosters" in tables and {"class_id", "student_id"} <= set(tables["rosters"].frame.columns)


def _check_people(tables: dict[str, LoadedTable], c: Collector) -> None:
    """person_id unique within and across students/staff; shared e-mail addresses (asm.md §1.1, §1.8)."""
    people = [tables[s] for s in ("students", "staff") if s in tables and "person_id" in tables[s].frame]
    for t in people:
        flag(c, "asm.value.duplicate_id", t, "person_id", later_duplicates(t.frame["person_id"]))
    if len(people) == 2:
        students, staff = people
        flag(c, "asm.value.person_in_both", staff, "person_id",
             nonempty(staff.frame["person_id"]) & ~missing_in(staff.frame["person_id"], students.frame["person_id"]))
    mails = [(t, pc.utf8_lower(pc.utf8_trim_whitespace(arrow(t.frame["email_address"]))))
             for t in people if "email_address" in t.frame]
    if mails:
        every = pa.chunked_array([chunk for _, m in mails for chunk in m.chunks], type=mails[0][1].type)
        shared = duplicate_mask(every, keep_first=False) & pc.not_equal(every, "").to_numpy(zero_copy_only=False)
        start = 0
        for t, m in mails:
            flag(c, "asm.value.duplicate_email", t, "email_address", shared[start:start + len(m)])
            start += len(m)


def _reference_tasks(tables: dict[str, LoadedTable]) -> list[Callable[[Collector], None]]:
    """One task per reference column whose target file was read (asm.md §1.8)."""
    tasks: list[Callable[[Collector], None]] = []
    for stem, col, target, target_col in REFERENCES:
        if stem not in tables or target not in tables or target_col not in tables[target].frame:
            continue  # a missing file is reported once, not once per reference
        if stem == "rosters" and _roster_pairs_checked(tables):
            continue  # resolved together with the pair check
        t = tables[stem]
        if col.endswith("_N"):
            rx = _LOCATION_N if col.startswith("location") else _INSTRUCTOR_N
            cols = [x for x in t.frame.columns if rx.fullmatch(x)]
        else:
            cols = [col] if col in t.frame.columns else []
        targets = tables[target].frame[target_col]
        for x in cols:
            tasks.append(lambda c, t=t, x=x, s=t.frame[x], targets=targets, target=target, target_col=target_col:
                         flag(c, "asm.reference.missing_record", t, x, missing_in(s, targets),
                              target=f"{target}.csv", target_column=target_col))
    return tasks


def _line(t: LoadedTable, pos: int) -> int:
    return int(t.lines[pos]) if t.lines is not None else pos + 2
