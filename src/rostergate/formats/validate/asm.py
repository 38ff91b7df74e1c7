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

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import (
    Mask,
    Positions,
    code_pair_duplicate_mask,
    duplicate_mask,
    pair_duplicate_mask,
    position_in,
    strings,
)
from rostergate.formats.issues import Severity
from rostergate.formats.read.csvio import LoadedTable, ReadTable, load_bytes, load_table
from rostergate.formats.read.sources import match_name
from rostergate.formats.read.text import EncodingPolicy
from rostergate.formats.schema.asm import (
    DELIMITERS,
    ESCAPE,
    FILES,
    HEADERS,
    ID_MAX,
    INSTRUCTOR_N,
    KEYS,
    LOCATION_N,
    MAX_INSTRUCTORS,
    NAME_COLUMNS,
    NAME_MAX,
    NUMBERED,
    OPTIONAL,
    PASSWORD_POLICIES,
    REFERENCES,
    REQUIRED,
    id_columns,
)
from rostergate.formats.validate.collect import Collector, Task, parallel_map, task
from rostergate.formats.validate.masks import (
    asm_id_problems,
    flag,
    later_duplicates,
    longer_than,
    missing_in,
    nonempty,
    not_in,
    required,
)


def validate_asm(
    source: Path | Mapping[str, bytes | pd.DataFrame],
    collector: Collector,
    *,
    encoding_policy: EncodingPolicy = "convert",
    progress: Callable[[str], None] | None = None,
) -> dict[str, ReadTable]:
    """Validate the ASM files in ``source`` into ``collector``; returns the tables read.

    ``source`` is a folder, or file name → content for files that exist only in memory
    (the converter's output: checked before it is zipped, never written out as CSVs).
    Content is the file's bytes, or the frame of strings they parse to, given only when
    that is certain (see ``asmwrite.Serialised.verbatim``): the rules then skip the parse.
    """
    present: dict[str, Path | bytes | pd.DataFrame] = (
        dict(source) if isinstance(source, Mapping) else {p.name: p for p in Path(source).iterdir() if p.is_file()}
    )
    tables: dict[str, ReadTable] = {}
    found: list[tuple[str, Path | bytes | pd.DataFrame]] = []
    for stem in HEADERS:
        fname = f"{stem}.csv"
        actual = match_name(present, fname)
        if actual is None:
            collector.add("asm.file.missing", file=fname, value=fname)
            continue
        if actual != fname:
            collector.add("asm.file.name_case", file=actual, value=actual, expected=fname)
        if progress:
            progress(f"reading {fname}")
        found.append((stem, present[actual]))
    def load(item: tuple[str, Path | bytes | pd.DataFrame]) -> LoadedTable:
        stem, where = item
        if isinstance(where, pd.DataFrame):
            return LoadedTable(f"{stem}.csv", where, header=[str(c) for c in where.columns])
        if isinstance(where, bytes):
            return load_bytes(where, f"{stem}.csv", encoding_policy=encoding_policy, allowed_delimiters=DELIMITERS,
                              escape_char=ESCAPE)
        return load_table(where, f"{stem}.csv", encoding_policy=encoding_policy, allowed_delimiters=DELIMITERS,
                          escape_char=ESCAPE)

    loaded_files = parallel_map(load, found)
    for (stem, _), loaded in zip(found, loaded_files):
        collector.extend_loaded(loaded)
        table = ReadTable.of(loaded)
        if table is not None:
            tables[stem] = table
    known = {f.casefold() for f in FILES}
    for name in sorted(present):
        if name.casefold() not in known and not name.startswith("."):
            collector.add("asm.file.unexpected", file=name, value=name)
    tasks: list[Task] = []
    for stem, t in tables.items():
        _check_header(stem, t, collector)
        tasks += _value_tasks(stem, t, tables)
    tasks += _reference_tasks(tables)
    tasks.append(task(_check_people, tables))
    if progress:
        progress("checking values and references")
    collector.run(tasks)  # all independent: one pool keeps both cores busy to the end
    return tables


def _check_header(stem: str, t: ReadTable, c: Collector) -> None:
    template = HEADERS[stem]
    cols = list(t.frame.columns)
    expected = ",".join(template)
    for col in template:
        if col not in cols:
            sev: Severity = "error" if col in REQUIRED[stem] else "warning"
            c.add("asm.header.missing_column", file=t.name, line=1, column=col, expected=expected, severity=sev)
    numbered = NUMBERED.get(stem)
    for col in cols:
        if col in template or col in OPTIONAL.get(stem, ()) or col not in t.header:
            continue  # (a column the header does not name was reported by the reader, as an empty name)
        m = numbered.pattern.fullmatch(col) if numbered else None
        if m and numbered:
            if not 2 <= int(m.group(1)) <= numbered.most:
                c.add("asm.header.column_limit", file=t.name, line=1, column=col, limit=numbered.limit)
            continue
        c.add("asm.header.unknown_column", file=t.name, line=1, column=col)
    order = [col for col in cols if col in template]
    if order != [col for col in template if col in cols]:
        c.add("asm.header.order", file=t.name, line=1, expected=expected)
    if len(t.frame) == 0 and not len(t.malformed):  # rows that could not be read are reported as such
        c.add("asm.file.header_only", file=t.name, line=1)


def _value_tasks(stem: str, t: ReadTable, loaded: dict[str, ReadTable]) -> list[Task]:
    """Column tasks for one file, run side by side by :meth:`Collector.run`."""
    frame = t.frame
    # a repeated column is left alone: which copy is meant is the district's to say
    tasks: list[Task] = [task(required, "asm.value.required", t, [c for c in REQUIRED[stem] if c not in t.repeated])]
    if len(frame) == 0:
        return tasks
    # A reference whose target file is present is checked against the target's keys, which
    # are themselves checked here; so character rules run on keys and unresolvable references
    # (a resolved reference equals a checked key; a value that resolves nowhere is reported as
    # a malformed id when it is one, else as a missing record, by the reference check).
    resolvable = {col for f, col, target, target_col in REFERENCES
                  if f == stem and _resolvable(loaded, target, target_col)}
    for col in id_columns(stem, list(frame.columns)):
        extra = LOCATION_N.fullmatch(col) or INSTRUCTOR_N.fullmatch(col)
        covered = col in resolvable or (extra and f"{col.rsplit('_', 1)[0]}_N" in resolvable)
        if (col != KEYS[stem] and covered) or col in t.repeated:
            continue
        tasks.append(task(_check_id, t, col, frame[col]))
    for col in NAME_COLUMNS.get(stem, ()):
        if col in frame.columns and col not in t.repeated:
            tasks.append(task(_check_length, t, col, frame[col], NAME_MAX))
    key = KEYS[stem]
    if key in frame.columns and key not in t.repeated and stem not in ("students", "staff"):
        tasks.append(task(_check_unique, t, key, frame[key]))
    if stem == "students" and "password_policy" in frame.columns:
        tasks.append(task(_check_password_policy, t, frame["password_policy"]))
    if stem == "classes":
        tasks.append(task(_check_instructor_count, t))
    if stem == "rosters" and _roster_pairs_checked(loaded):
        known = [loaded[f].frame[k] if _resolvable(loaded, f, k) else None
                 for f, k in (("classes", "class_id"), ("students", "person_id"))]
        tasks.append(task(_check_roster_pairs, t, frame["class_id"], frame["student_id"], known,
                          loaded.get("students")))
    return tasks


def _check_length(c: Collector, t: ReadTable, col: str, s: pd.Series, limit: int) -> None:
    flag(c, "asm.value.too_long", t, col, longer_than(s, limit), limit=limit)


def _check_unique(c: Collector, t: ReadTable, key: str, s: pd.Series) -> None:
    flag(c, "asm.value.duplicate_id", t, key, later_duplicates(s))


def _check_password_policy(c: Collector, t: ReadTable, s: pd.Series) -> None:
    flag(c, "asm.value.password_policy", t, "password_policy", not_in(s, PASSWORD_POLICIES))


def _check_id(c: Collector, t: ReadTable, col: str, s: pd.Series) -> None:
    """asm.md §1.1: letters, digits and '-' (``_``/``.`` tolerated with a warning, §7 Q4)."""
    odd, bad = asm_id_problems(s)
    if odd.any():
        flag(c, "asm.value.invalid_id", t, col, bad)
        flag(c, "asm.value.id_characters", t, col, odd & ~bad)
    _check_length(c, t, col, s, ID_MAX)


def _malformed_ids(s: pd.Series) -> Mask:
    """Values that are no ASM identifier at all (characters beyond even the tolerated ``_``/``.``)."""
    return asm_id_problems(s)[1]


def _flag_unresolved(c: Collector, t: ReadTable, col: str, s: pd.Series, missing: Mask | pd.Series, target: str,
                     target_col: str) -> None:
    """References that resolve nowhere: a malformed id is the cause when the value is one,
    else the record is missing (asm.md §1.1, §1.8)."""
    missing = np.asarray(missing, dtype=bool)
    bad = missing & _malformed_ids(s) if missing.any() else missing
    flag(c, "asm.value.invalid_id", t, col, bad)
    flag(c, "asm.reference.missing_record", t, col, missing & ~bad, target=f"{target}.csv", target_column=target_col)


def _resolvable(tables: dict[str, ReadTable], target: str, target_col: str) -> bool:
    """Whether references into ``target``'s ``target_col`` are checked: the file was read whole,
    the column once (a target with unreadable rows would make "missing" untrue)."""
    t = tables.get(target)
    return t is not None and target_col in t.frame.columns and target_col not in t.repeated and not len(t.malformed)


def _check_instructor_count(c: Collector, t: ReadTable) -> None:
    """asm.md §1.5: at most 15 instructors per class; a class without one is flagged (§1.8, OSS R12)."""
    frame = t.frame
    instr = [col for col in frame.columns if col == "instructor_id" or INSTRUCTOR_N.fullmatch(col)]
    if not instr:
        return
    counts = np.sum([(frame[col] != "").to_numpy(dtype=np.int64) for col in instr], axis=0)
    if "class_id" in frame.columns:
        flag(c, "asm.class.no_instructor", t, "class_id", counts == 0)
    too_many = counts > MAX_INSTRUCTORS
    for pos in np.flatnonzero(too_many)[: c.cap].tolist():
        c.add("asm.class.too_many_instructors", file=t.name, line=_line(t, pos), column="instructor_id",
              value=str(frame["class_id"].iat[pos]) if "class_id" in frame else None, count=int(counts[pos]))


#: rosters.csv references resolved by :func:`_check_roster_pairs` (it probes the same keys).
_ROSTER_TARGETS = (("class_id", "classes", "class_id"), ("student_id", "students", "person_id"))


def _check_roster_pairs(c: Collector, t: ReadTable, classes: pd.Series, students: pd.Series,
                        known: list[pd.Series | None], student_table: ReadTable | None) -> None:
    """One rosters.csv row per (class, student); every student in some class; and the
    references of both columns (asm.md §1.8), from the same lookups.

    The pair is numbered by the positions of its class and student in classes.csv and
    students.csv (hashing the small files, not the big one); a value missing from its
    file is reported as a missing record and makes the pair check fall back to
    hashing the pair itself.
    """
    codes: list[tuple[Positions, int]] = []
    for values, keys, (col, target, target_col) in zip((classes, students), known, _ROSTER_TARGETS):
        if keys is None:
            continue
        found = position_in(values, keys)
        if (found < 0).any():
            _flag_unresolved(c, t, col, values, (found < 0) & nonempty(values).to_numpy(), target, target_col)
            continue
        codes.append((found, len(keys)))
    if len(codes) == 2:
        (ca, _), (cb, _) = codes
        mask = code_pair_duplicate_mask(ca, cb)
    else:
        mask = pair_duplicate_mask(strings(classes), strings(students))
    mask = mask & nonempty(classes).to_numpy() & nonempty(students).to_numpy()
    flag(c, "asm.value.duplicate_roster", t, "student_id", mask)
    if student_table is None or known[1] is None or len(t.frame) == 0 or len(t.malformed):
        return  # with unreadable roster rows, "in no class" could be untrue
    ids = known[1]
    lonely: Mask | pd.Series
    if len(codes) == 2:
        first = pc.index_in(strings(ids), value_set=strings(ids).combine_chunks()).to_numpy(zero_copy_only=False)
        lonely = np.bincount(codes[1][0], minlength=len(ids))[first] == 0
        lonely &= nonempty(ids).to_numpy()
    else:
        lonely = missing_in(ids, students)
    flag(c, "asm.student.no_class", student_table, "person_id", lonely)


def _roster_pairs_checked(tables: dict[str, ReadTable]) -> bool:
    """Whether :func:`_check_roster_pairs` runs (and so resolves the rosters references)."""
    return "rosters" in tables and {"class_id", "student_id"} <= set(tables["rosters"].frame.columns)


def _check_people(c: Collector, tables: dict[str, ReadTable]) -> None:
    """person_id unique within and across students/staff; shared e-mail addresses (asm.md §1.1, §1.8)."""
    people = [tables[s] for s in ("students", "staff") if s in tables and "person_id" in tables[s].frame]
    for t in people:
        flag(c, "asm.value.duplicate_id", t, "person_id", later_duplicates(t.frame["person_id"]))
    if len(people) == 2:
        students, staff = people
        flag(c, "asm.value.person_in_both", staff, "person_id",
             nonempty(staff.frame["person_id"]) & ~missing_in(staff.frame["person_id"], students.frame["person_id"]))
    mails = [(t, pc.utf8_lower(pc.utf8_trim_whitespace(strings(t.frame["email_address"]))))
             for t in people if "email_address" in t.frame]
    if mails:
        every = pa.chunked_array([chunk for _, m in mails for chunk in m.chunks], type=mails[0][1].type)
        shared = duplicate_mask(every, keep_first=False) & pc.not_equal(every, "").to_numpy(zero_copy_only=False)
        start = 0
        for t, m in mails:
            flag(c, "asm.value.duplicate_email", t, "email_address", shared[start:start + len(m)])
            start += len(m)


def _reference_tasks(tables: dict[str, ReadTable]) -> list[Task]:
    """One task per reference column whose target file was read (asm.md §1.8)."""
    tasks: list[Task] = []
    for stem, col, target, target_col in REFERENCES:
        if stem not in tables or not _resolvable(tables, target, target_col):
            continue  # a missing or partly unreadable file is reported once, not once per reference
        if stem == "rosters" and _roster_pairs_checked(tables):
            continue  # resolved together with the pair check
        t = tables[stem]
        if col.endswith("_N"):
            rx = LOCATION_N if col.startswith("location") else INSTRUCTOR_N
            cols = [x for x in t.frame.columns if rx.fullmatch(x)]
        else:
            cols = [col] if col in t.frame.columns and col not in t.repeated else []
        targets = tables[target].frame[target_col]
        for x in cols:
            tasks.append(task(_check_reference, t, x, t.frame[x], targets, target, target_col))
    return tasks


def _check_reference(c: Collector, t: ReadTable, col: str, s: pd.Series, targets: pd.Series, target: str,
                     target_col: str) -> None:
    _flag_unresolved(c, t, col, s, missing_in(s, targets), target, target_col)


def _line(t: ReadTable, pos: int) -> int:
    return int(t.lines[pos]) if t.lines is not None else pos + 2
