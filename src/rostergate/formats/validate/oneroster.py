"""OneRoster 1.1 and 1.2 CSV rules, interpreted from :mod:`rostergate.formats.schema.oneroster`.

:func:`validate_oneroster` checks, in this order: the manifest (oneroster.md §4)
and its agreement with the files present; each file's header (§2 G4–G8, §6);
"no data file without rows" (§2 G9); every value against its column's type,
vocabulary and requiredness (§3, §7); the bulk/delta ``status`` and
``dateLastModified`` rules (§5); unique ``sourcedId``s (§2 G14); then every
reference and the semantic rules (§8), the gradebook's included (§7.11); and, in
the asm profile, Apple's id and name rules on the values that become ASM ids and
names (§10, asm.md §1.1). All value checks are column masks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import Mask, Positions, duplicate_mask, pair_duplicate_mask, position_in, strings
from rostergate.formats.issues import Severity
from rostergate.formats.read.csvio import ReadTable, load_table
from rostergate.formats.read.detect import Finder, Guess, finder, guess_version
from rostergate.formats.read.sources import match_name
from rostergate.formats.read.text import EncodingPolicy
from rostergate.formats.schema import asm
from rostergate.formats.schema import oneroster as S
from rostergate.formats.validate.collect import Collector, Task, parallel_map, task
from rostergate.formats.validate.masks import (
    asm_id_problems,
    flag,
    later_duplicates,
    longer_than,
    missing_in,
    nonempty,
    not_in,
    not_in_charset,
    not_matching,
    rows_mask,
    split_list,
)

MANIFEST = S.MANIFEST


@dataclass
class Package:
    """What the validator learned about one OneRoster upload."""

    version: str | None = None
    #: the manifest names a version this validator does not know (1.0, 2.0): nothing else is judged
    unsupported: bool = False
    modes: dict[str, str] = field(default_factory=dict)  # stem -> absent|bulk|delta (from the manifest)
    files: dict[str, Path] = field(default_factory=dict)  # stem -> path of the data files present
    tables: dict[str, ReadTable] = field(default_factory=dict)


def validate_oneroster(
    folder: Path,
    collector: Collector,
    *,
    encoding_policy: EncodingPolicy = "convert",
    progress: Callable[[str], None] | None = None,
) -> Package:
    """Validate the OneRoster upload in ``folder`` into ``collector``."""
    c = collector
    present = {p.name: p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")}
    pkg = Package()
    # the files' version (read/detect.py, the one guesser) applies when the manifest names no supported one
    find = finder(present)
    manifest_name = match_name(present, MANIFEST)
    if manifest_name is None:
        c.add("oneroster.manifest.missing", file=MANIFEST, value=MANIFEST)
        guess = guess_version(find)
    else:
        if manifest_name != MANIFEST:
            c.add("oneroster.file.name_case", file=manifest_name, value=manifest_name, expected=MANIFEST)
        guess = _read_manifest(present[manifest_name], pkg, c, encoding_policy, find)
        if pkg.unsupported:
            return pkg  # judged by no version's rules: the report holds the version and nothing that follows from it
    if pkg.version is None:
        c.add("oneroster.manifest.version_guessed", file=MANIFEST, value=guess.version, reason=guess.why)
    pkg.version = version = pkg.version or guess.version
    _match_files(present, pkg, version, c)
    files = list(pkg.files.items())
    if progress:
        for stem, _ in files:
            progress(f"reading {stem}.csv")
    loaded_files = parallel_map(lambda item: load_table(item[1], f"{item[0]}.csv", encoding_policy=encoding_policy),
                                files)
    for (stem, _), loaded in zip(files, loaded_files):
        c.extend_loaded(loaded)
        table = ReadTable.of(loaded)
        if table is not None:
            pkg.tables[stem] = table
    tasks: list[Task] = []
    for stem, t in pkg.tables.items():
        _check_header(stem, t, version, c)
        if len(t.frame) == 0:
            if not len(t.malformed):  # rows that could not be read are reported as such, not as no rows
                c.add("oneroster.file.no_rows", file=t.name, line=1)
            continue
        tasks += _value_tasks(stem, t, version, pkg.modes.get(stem, "bulk"), pkg)
    tasks += _reference_tasks(pkg, version, c)
    tasks.append(task(_check_semantics, pkg, version))
    if progress:
        progress("checking values and references")
    c.run(tasks)  # all independent: one pool keeps both cores busy to the end
    return pkg


# -- files and manifest --------------------------------------------------------------------------


def _read_manifest(path: Path, pkg: Package, c: Collector, policy: EncodingPolicy, find: Finder) -> Guess:
    """oneroster.md §4: header, properties, versions and file modes; returns the files' guess.

    ``pkg.version`` is the version ``oneroster.version`` names if supported, else ``None``;
    the other properties are then judged by the version the upload suggests (its files and
    the manifest's own property names, :func:`~rostergate.formats.read.detect.guess_version`).
    A version that is a number but not one this validator knows (``1.0``, ``2.0``) sets
    ``pkg.unsupported``: judging that upload by 1.1 or 1.2 rules would only bury the one
    real finding under follow-on errors.
    """
    t = load_table(path, MANIFEST, encoding_policy=policy)
    c.extend_loaded(t)
    if t.frame is None:
        return guess_version(find)
    frame = t.frame
    if list(t.header) != ["propertyName", "value"]:
        c.add("oneroster.manifest.invalid_header", file=MANIFEST, line=1, value=",".join(t.header))
    if frame.shape[1] < 2:
        return guess_version(find)
    names = frame.iloc[:, 0].str.strip()
    values = frame.iloc[:, 1].str.strip()
    props: dict[str, tuple[str, int]] = {}
    for pos, (name, value) in enumerate(zip(names.tolist(), values.tolist())):  # a manifest has ~25 rows
        line = int(t.lines[pos]) if t.lines is not None else pos + 2
        if name in props:
            c.add("oneroster.manifest.duplicate_property", file=MANIFEST, line=line, column="propertyName", value=name)
            continue
        props[name] = (value, line)
    guess = guess_version(find, props)

    version = None
    if "oneroster.version" in props:
        value, line = props["oneroster.version"]
        if value in S.VERSION_NAMES:
            version = S.VERSION_NAMES[value]
        else:
            c.add("oneroster.manifest.unsupported_version", file=MANIFEST, line=line, column="value", value=value)
            pkg.unsupported = bool(re.fullmatch(r"\d+(?:\.\d+)*", value))
    pkg.version = version
    v = version or guess.version
    if "manifest.version" in props:
        value, line = props["manifest.version"]
        if value == "1":
            c.add("oneroster.manifest.version_excel", file=MANIFEST, line=line, column="value", value=value)
        elif value != "1.0":
            c.add("oneroster.manifest.invalid_value", file=MANIFEST, line=line, column="value", value=value,
                  property="manifest.version", expected="1.0")
    if pkg.unsupported:
        return guess
    for key in S.MANIFEST_REQUIRED:
        if key not in props:
            c.add("oneroster.manifest.missing_property", file=MANIFEST, value=key,
                  expected="1.0" if key == "manifest.version" else v)
    known = set(S.MANIFEST_REQUIRED) | set(S.MANIFEST_OPTIONAL) | {f"file.{s}" for s in S.FILE_KEYS[v]}
    for name, (_value, line) in props.items():
        if name not in known:
            c.add("oneroster.manifest.unknown_property", file=MANIFEST, line=line, column="propertyName",
                  value=name, version=v)
    for stem in S.FILE_KEYS[v]:
        key = f"file.{stem}"
        if key not in props:
            c.add("oneroster.manifest.missing_property", file=MANIFEST, value=key, expected="absent")
            continue
        value, line = props[key]
        if value not in S.MANIFEST_MODES:
            c.add("oneroster.manifest.invalid_value", file=MANIFEST, line=line, column="value", value=value,
                  property=key, expected="absent, bulk, delta")
            continue
        pkg.modes[stem] = value
    return guess


def _match_files(present: dict[str, Path], pkg: Package, version: str, c: Collector) -> None:
    """oneroster.md §4 "Manifest ↔ ZIP consistency" and §10 (asm profile)."""
    catalogue = {f"{s}.csv": s for s in S.HEADERS[version]}
    for name, path in sorted(present.items()):
        if match_name([MANIFEST], name) is not None:
            continue
        known = match_name(catalogue, name)
        stem = None if known is None else catalogue[known]
        if known is not None and known != name:
            c.add("oneroster.file.name_case", file=name, value=name, expected=known)
        if stem is None:
            c.add("oneroster.file.unknown", file=name, value=name, version=version)
            continue
        pkg.files[stem] = path
    for stem in S.HEADERS[version]:
        mode = pkg.modes.get(stem)
        fname = f"{stem}.csv"
        if mode in ("bulk", "delta") and stem not in pkg.files:
            c.add("oneroster.manifest.file_missing", file=MANIFEST, value=fname, mode=mode)
        elif stem in pkg.files and mode == "absent":  # no mode at all was reported as missing_property
            c.add("oneroster.manifest.file_unexpected", file=fname, value=fname, mode=mode)
    profile = c.profile
    if profile.asm_checks:
        for stem in S.ASM_FILES:
            if stem not in pkg.files and pkg.modes.get(stem) not in ("bulk", "delta"):
                c.add("oneroster.asm.required_file", file=f"{stem}.csv", value=f"{stem}.csv")
        for stem, mode in pkg.modes.items():
            if mode == "delta":
                c.add("oneroster.asm.delta_file", file=MANIFEST, value=f"{stem}.csv")
    for stem in profile.required_oneroster_files - set(S.ASM_FILES):
        if stem not in pkg.files:
            c.add("oneroster.asm.required_file", file=f"{stem}.csv", value=f"{stem}.csv")


# -- headers -----------------------------------------------------------------------------------------


def _check_header(stem: str, t: ReadTable, version: str, c: Collector) -> None:
    """oneroster.md §2 G4–G8 and §6: exact names, exact order, metadata.* columns on the right."""
    cols = list(t.frame.columns)
    expected = S.HEADERS[version][stem]
    if stem == "users" and version == "1.2" and "resourceSourcedIds" in cols:
        expected = S.USERS_12_0
        c.add("oneroster.header.users_1_2_0", file=t.name, line=1)
    expected_text = ",".join(expected)
    defined = set(expected)
    by_fold = {col.casefold(): col for col in cols}
    case_variants: set[str] = set()
    for col in expected:
        if col in cols:
            continue
        variant = by_fold.get(col.casefold())
        if variant is not None and variant not in defined:
            case_variants.add(variant)
            c.add("oneroster.header.column_case", file=t.name, line=1, column=col, value=variant)
        else:
            c.add("oneroster.header.missing_column", file=t.name, line=1, column=col, expected=expected_text)
    last_defined = max((i for i, col in enumerate(cols) if col in defined), default=-1)
    for i, col in enumerate(cols):
        if col in defined or col in case_variants:
            continue
        if col.startswith("metadata."):
            if i < last_defined:
                c.add("oneroster.header.metadata_position", file=t.name, line=1, column=col)
        elif col in t.header:  # renamed duplicates/empty names were reported by the reader
            c.add("oneroster.header.unknown_column", file=t.name, line=1, column=col)
    order = [col for col in cols if col in defined]
    if order != [col for col in expected if col in cols]:
        c.add("oneroster.header.order", file=t.name, line=1, expected=expected_text)


# -- values ------------------------------------------------------------------------------------------


def _value_tasks(stem: str, t: ReadTable, version: str, mode: str, pkg: Package) -> list[Task]:
    """One task per column (plus uniqueness and the cross-column rules), to run side by side."""
    frame = t.frame
    tasks: list[Task] = []
    for name, col in S.COLUMNS[version][stem].items():
        if name in frame.columns and name not in t.repeated:  # a repeated column: which copy is meant?
            s = frame[name]  # taken here: tasks must not race on the frame
            ref_checked = _reference_checked(col, mode, pkg)
            tasks.append(task(_check_column, t, name, s, col, version, mode, ref_checked))
    if "sourcedId" in frame.columns and "sourcedId" not in t.repeated:
        tasks.append(task(_check_unique, t, frame["sourcedId"]))
    tasks.append(task(_check_cross_columns, t))
    return tasks


def _check_unique(c: Collector, t: ReadTable, ids: pd.Series) -> None:
    flag(c, "oneroster.value.duplicate_sourced_id", t, "sourcedId", later_duplicates(ids))


def _reference_checked(col: S.Col, mode: str, pkg: Package) -> bool:
    """Whether a reference task (:func:`_reference_tasks`) will compare this column with its target's ids."""
    if col.ref is None:
        return False
    target = pkg.tables.get(col.ref)
    return (target is not None and "sourcedId" in target.frame.columns and mode != "delta"
            and pkg.modes.get(col.ref, "bulk") != "delta" and not len(target.malformed))


def _check_column(c: Collector, t: ReadTable, name: str, s: pd.Series, col: S.Col, version: str, mode: str,
                  ref_checked: bool) -> None:
    if name in ("status", "dateLastModified"):
        _check_lifecycle(t, name, s, mode, c)
    if col.required:
        flag(c, "oneroster.value.required", t, name, s == "")
    _check_type(t, name, s, col, version, ref_checked, c)


def _check_cross_columns(c: Collector, t: ReadTable) -> None:
    frame = t.frame
    if {"subjects", "subjectCodes"} <= set(frame.columns):
        a, b = frame["subjects"], frame["subjectCodes"]
        both = nonempty(a) & nonempty(b)
        if both.any():
            flag(c, "oneroster.value.list_length_mismatch", t, "subjects",
                 both & (a.str.count(",") != b.str.count(",")), other="subjectCodes")
    for start, end in (("startDate", "endDate"), ("beginDate", "endDate")):
        if {start, end} <= set(frame.columns):
            a, b = frame[start], frame[end]
            both = nonempty(a) & nonempty(b)
            if not both.any():  # the usual case in big files (enrolments without dates): no regex pass
                continue
            ok = both & a.str.fullmatch(S.DATE_RE).fillna(False) & b.str.fullmatch(S.DATE_RE).fillna(False)
            if ok.any():
                flag(c, "oneroster.value.date_range", t, start, ok & (a > b), other=end)


def _check_lifecycle(t: ReadTable, name: str, s: pd.Series, mode: str, c: Collector) -> None:
    """oneroster.md §5: blank in bulk files, required in delta files."""
    if mode == "delta":
        flag(c, "oneroster.status.required_in_delta", t, name, s == "")
    else:
        flag(c, "oneroster.status.forbidden_in_bulk", t, name, nonempty(s))


def _check_type(t: ReadTable, name: str, s: pd.Series, col: S.Col, version: str, ref_checked: bool,
                c: Collector) -> None:
    """oneroster.md §3: one mask per rule."""
    kind = col.kind
    ext = S.EXT_RE if (col.ext and version == "1.2") else None
    if kind == "guid":
        if not ref_checked:  # a checked reference must equal a sourcedId that is itself checked
            sev: Severity = "error" if version == "1.2" else "warning"  # §13 Q2
            flag(c, "oneroster.value.invalid_guid", t, name, not_in_charset(s, S.GUID_CHARS, S.GUID_MAX),
                 severity=sev)
    elif kind == "date":
        _check_dates(t, name, s, c)
    elif kind == "datetime":
        _check_datetimes(t, name, s, version, c)
    elif kind == "year":
        flag(c, "oneroster.value.invalid_year", t, name, not_matching(s, S.YEAR_RE))
    elif kind == "bool":
        bad = not_in(s, ("true", "false"))
        if bad.any():
            excel = bad & s.str.lower().isin(["true", "false"])
            flag(c, "oneroster.value.boolean_case", t, name, excel)
            flag(c, "oneroster.value.invalid_boolean", t, name, bad & ~excel)
    elif kind == "enum":
        flag(c, "oneroster.value.invalid_enum", t, name, not_in(s, col.enum, ext),
             expected=", ".join(col.enum) + (" or ext:<token>" if ext else ""))
    elif kind in ("enum_list", "grades", "string_list", "guid_list"):
        _check_list(t, name, s, col, version, ext, ref_checked, c)
    elif kind == "user_ids":
        flag(c, "oneroster.value.invalid_user_ids", t, name, not_matching(s, S.USER_IDS_RE))
    elif kind == "score_scale":
        flag(c, "oneroster.value.invalid_score_scale", t, name, not_matching(s, S.SCORE_SCALE_RE))
    elif kind == "float":
        flag(c, "oneroster.value.invalid_number", t, name, not_matching(s, S.FLOAT_RE))
    elif kind == "int":
        flag(c, "oneroster.value.invalid_number", t, name, not_matching(s, S.INT_RE))


def _check_dates(t: ReadTable, name: str, s: pd.Series, c: Collector) -> None:
    filled = nonempty(s)
    if not filled.any():
        return
    shape_ok = s.str.fullmatch(S.DATE_RE).fillna(False).astype(bool)
    flag(c, "oneroster.value.invalid_date", t, name, (filled & ~shape_ok) | _no_such_day(s, shape_ok))


def _no_such_day(s: pd.Series, ok: pd.Series) -> pd.Series:
    """Among the rows ``ok`` (a date, or a date-time, whose fields are in range), those whose
    day does not exist in its month (2027-02-30, 2026-04-31); only days 29-31 can be wrong."""
    late = ok & s.str.slice(8, 10).isin(["29", "30", "31"])
    if not late.any():
        return pd.Series(False, index=s.index)
    parsed = pd.to_datetime(s[late].str.slice(0, 10).astype(object), format="%Y-%m-%d", errors="coerce")
    return pd.Series(False, index=s.index).mask(late, parsed.isna().reindex(s.index, fill_value=False))


def _check_datetimes(t: ReadTable, name: str, s: pd.Series, version: str, c: Collector) -> None:
    """oneroster.md §3, §13 Q1: the shape of ISO 8601, then real fields, then the usual form.

    A value without the shape is not a date-time; one with it whose month, day, hour,
    minute or second cannot be (2026-13-45T25:61, 0000-00-00) is impossible. 1.2 expects
    the canonical UTC form (a warning otherwise); 1.1 is looser, but a space instead of the
    "T" or a date alone is worth a note, as not every reader takes it.
    """
    bad = not_matching(s, S.DATETIME_ISO_RE)
    flag(c, "oneroster.value.invalid_datetime", t, name, bad)
    shaped = nonempty(s) & ~bad
    if not shaped.any():
        return
    unreal = shaped & not_matching(s, S.DATETIME_REAL_RE)
    unreal |= _no_such_day(s, shaped & ~unreal)
    flag(c, "oneroster.value.impossible_datetime", t, name, unreal)
    fine = shaped & ~unreal
    if version == "1.2":
        flag(c, "oneroster.value.datetime_not_canonical", t, name, fine & not_matching(s, S.DATETIME_CANONICAL_RE))
    else:
        flag(c, "oneroster.value.datetime_loose", t, name, fine & not_matching(s, S.DATETIME_T_RE))


def _check_list(t: ReadTable, name: str, s: pd.Series, col: S.Col, version: str, ext: str | None,
                ref_checked: bool, c: Collector) -> None:
    """Comma lists inside one field (§3): no empty items, no padding, items checked one by one."""
    filled = nonempty(s)
    if not filled.any():
        return
    multi = s.str.contains(",", regex=False)
    if multi.any():
        flag(c, "oneroster.value.invalid_list", t, name,
             multi & (s.str.startswith(",") | s.str.endswith(",") | s.str.contains(",,", regex=False)))
        padded = s.str.contains(", ", regex=False) | s.str.contains(" ,", regex=False)
        flag(c, "oneroster.value.padded_list_item", t, name, multi & padded)
    if col.kind == "string_list":
        return
    items, parents = split_list(s)
    items = pc.utf8_trim_whitespace(items)
    if col.kind == "guid_list":
        if not ref_checked:
            sev: Severity = "error" if version == "1.2" else "warning"
            bad = _items_not_matching(items, S.GUID_RE)
            _flag_items(c, "oneroster.value.invalid_guid", t, name, s, parents, bad, severity=sev)
        return
    if col.kind == "grades":
        allowed = pa.array(S.GRADES, type=items.type)
        unknown = _items_unknown(items, allowed, ext)
        if unknown.any():
            digits = pc.match_substring_regex(items, r"^[1-9]$").to_numpy(zero_copy_only=False)
            lost_zero = unknown & digits
            if lost_zero.any():
                values = np.asarray(items.to_numpy(zero_copy_only=False), dtype=object)
                for digit in sorted(set(values[lost_zero].tolist())):  # at most nine groups
                    _flag_items(c, "oneroster.value.grade_leading_zero", t, name, s, parents,
                                lost_zero & (values == digit), item_values=items, expected=f"'0{digit}'")
            _flag_items(c, "oneroster.value.unknown_grade", t, name, s, parents, unknown & ~lost_zero,
                        item_values=items)
        return
    allowed = pa.array(col.enum, type=items.type)
    unknown = _items_unknown(items, allowed, ext)
    _flag_items(c, "oneroster.value.invalid_enum", t, name, s, parents, unknown, item_values=items,
                expected=", ".join(col.enum))


def _items_not_matching(items: pa.Array, regex: str) -> Mask:
    ok: Mask = pc.and_(pc.match_substring_regex(items, f"^(?:{regex})$"),
                       pc.less_equal(pc.binary_length(items), S.GUID_MAX)).to_numpy(zero_copy_only=False)
    empty: Mask = pc.equal(items, "").to_numpy(zero_copy_only=False)
    return ~ok & ~empty


def _items_unknown(items: pa.Array, allowed: pa.Array, ext: str | None) -> Mask:
    known: Mask = pc.is_in(items, value_set=allowed).to_numpy(zero_copy_only=False)
    empty: Mask = pc.equal(items, "").to_numpy(zero_copy_only=False)
    bad = ~known & ~empty
    if ext is not None and bad.any():
        bad &= ~pc.match_substring_regex(items, f"^(?:{ext})$").to_numpy(zero_copy_only=False)
    return bad


def _flag_items(c: Collector, code: str, t: ReadTable, name: str, s: pd.Series, parents: Positions,
                bad: Mask, *, item_values: pa.Array | None = None, severity: Severity | None = None,
                **params: object) -> None:
    """Report list items: one issue per failing item, at its row's line."""
    idx = np.flatnonzero(bad)
    if len(idx) == 0:
        return
    rows = parents[idx]
    lines = (t.lines[rows] if t.lines is not None else rows + 2)
    # the collector materialises at most ``cap`` issues, so only that many values are needed
    if item_values is not None:
        vals = pd.Series(item_values.take(pa.array(idx[: c.cap])).to_pylist(), dtype=object)
    else:
        vals = pd.Series(s.iloc[rows[: c.cap]].tolist(), dtype=object)
    c.rows(code, t.name, np.ones(len(idx), bool), column=name, values=vals, lines=lines, severity=severity,
           **params)


# -- references and semantics (§8) -------------------------------------------------------------------


def _reference_tasks(pkg: Package, version: str, c: Collector) -> list[Task]:
    """One task per resolvable reference column (§8); an absent target file is reported here, once."""
    reported_files: set[tuple[str, str]] = set()
    tasks: list[Task] = []
    for stem, t in pkg.tables.items():
        if len(t.frame) == 0 or pkg.modes.get(stem, "bulk") == "delta":
            continue  # §5: delta rows may point at records the receiver already holds
        for name, col in S.COLUMNS[version][stem].items():
            if col.ref is None or name not in t.frame.columns:
                continue
            s = t.frame[name]
            target = pkg.tables.get(col.ref)
            if target is None or "sourcedId" not in target.frame.columns:
                if col.ref in pkg.files:
                    continue  # present but unreadable: already reported
                if nonempty(s).any() and (stem, name) not in reported_files:
                    reported_files.add((stem, name))
                    first = int(np.flatnonzero(nonempty(s).to_numpy(dtype=bool))[0])
                    sev: Severity | None = (
                        "warning" if (c.profile.lenient_sessions and col.ref == "academicSessions") else None)
                    c.add("oneroster.reference.missing_target_file", file=t.name, column=name,
                          line=_line(t, first), value=str(s.iat[first]), target=f"{col.ref}.csv", severity=sev)
                continue
            if pkg.modes.get(col.ref, "bulk") == "delta":
                continue  # a delta target lists only changes
            if len(target.malformed) or name in t.repeated or "sourcedId" in target.repeated:
                continue  # rows of the target could not be read: "missing" would often be untrue
            ids = target.frame["sourcedId"]  # columns are taken here: tasks must not race on frames
            types = target.frame["type"] if "type" in target.frame.columns else None
            tasks.append(task(_check_reference, t, name, s, col, ids, types))
    return tasks


def _check_reference(c: Collector, t: ReadTable, name: str, s: pd.Series, col: S.Col, ids: pd.Series,
                     types: pd.Series | None) -> None:
    """One reference column against its target's sourcedIds (§8), plus the target-type rules.

    A value that names no record is a missing record, unless it is no sourcedId at all
    (bad characters, too long): then that is the cause, and it is reported as such, as an
    error whatever the version (an unresolvable reference is one).
    """
    if not nonempty(s).any():
        return
    if col.kind == "guid_list":
        items, parents = split_list(s)
        items = pc.utf8_trim_whitespace(items)
        value_set = _id_set(ids, items.type)
        known = pc.is_in(items, value_set=value_set).to_numpy(zero_copy_only=False)
        empty = pc.equal(items, "").to_numpy(zero_copy_only=False)
        missing = ~known & ~empty
        malformed = missing & _items_not_matching(items, S.GUID_RE) if missing.any() else missing
        _flag_items(c, "oneroster.value.invalid_guid", t, name, s, parents, malformed, item_values=items,
                    severity="error")
        _flag_items(c, "oneroster.reference.missing_record", t, name, s, parents, missing & ~malformed,
                    item_values=items, target=f"{col.ref}.csv")
    else:
        missing = missing_in(s, ids)
        malformed = missing & not_in_charset(s, S.GUID_CHARS, S.GUID_MAX) if missing.any() else missing
        flag(c, "oneroster.value.invalid_guid", t, name, malformed, severity="error")
        flag(c, "oneroster.reference.missing_record", t, name, missing & ~malformed, target=f"{col.ref}.csv")
    if types is not None and col.school and col.ref == "orgs":
        _check_target_type(t, name, s, ids, types, "school", "oneroster.reference.not_a_school", "org_type", c)
    if types is not None and col.school_year and col.ref == "academicSessions":
        _check_target_type(t, name, s, ids, types, "schoolYear", "oneroster.reference.not_a_school_year",
                           "session_type", c)


def _id_set(ids: pd.Series, typ: pa.DataType) -> pa.Array:
    """The sourcedIds ``ids`` as one Arrow array of type ``typ`` (a value set for ``is_in``)."""
    return strings(ids).combine_chunks().cast(typ)


def _check_target_type(t: ReadTable, name: str, s: pd.Series, ids: pd.Series, types: pd.Series, wanted: str,
                       code: str, param: str, c: Collector) -> None:
    """The referenced record must have ``type == wanted`` (``ext:`` types are allowed, §8)."""
    wrong = (types != wanted) & ~types.str.startswith("ext:") & (types != "")
    if not wrong.any():
        return
    for kind in sorted(set(types[wrong].tolist())):  # a handful of org/session types
        bad_ids = ids[wrong & (types == kind)].tolist()
        flag(c, code, t, name, nonempty(s) & s.isin(bad_ids), **{param: kind})


def _check_semantics(c: Collector, pkg: Package, version: str) -> None:
    enr = pkg.tables.get("enrollments")
    if enr is not None and {"role", "primary", "classSourcedId"} <= set(enr.frame.columns) and len(enr.frame):
        f = enr.frame
        primary = f["primary"] == "true"
        if primary.any():
            rows = np.flatnonzero((primary & (f["role"] == "teacher")).to_numpy())  # the primary teachers
            classes = pc.take(strings(f["classSourcedId"]), pa.array(rows))
            flag(c, "oneroster.enrollment.multiple_primary", enr, "classSourcedId",
                 rows_mask(len(f), rows[duplicate_mask(classes)]))
            for role in f.loc[primary & (f["role"] != "teacher"), "role"].unique().tolist()[:10]:
                flag(c, "oneroster.enrollment.primary_not_teacher", enr, "primary",
                     primary & (f["role"] == role), role=role)
    roles = pkg.tables.get("roles")
    if roles is not None and {"roleType", "userSourcedId", "orgSourcedId"} <= set(roles.frame.columns):
        f = roles.frame
        prim = f["roleType"] == "primary"
        dup = pair_duplicate_mask(strings(f["userSourcedId"]), strings(f["orgSourcedId"].where(prim, "\x00")))
        flag(c, "oneroster.roles.multiple_primary", roles, "userSourcedId", dup & prim.to_numpy())
    for stem in ("orgs", "academicSessions"):
        t = pkg.tables.get(stem)
        if t is not None and {"sourcedId", "parentSourcedId"} <= set(t.frame.columns) and len(t.frame):
            flag(c, "oneroster.reference.parent_cycle", t, "sourcedId",
                 _parent_cycles(t.frame["sourcedId"], t.frame["parentSourcedId"]))
    users = pkg.tables.get("users")
    if roles is not None and users is not None and "primaryOrgSourcedId" in users.frame.columns \
            and {"userSourcedId", "orgSourcedId"} <= set(roles.frame.columns):
        _check_primary_org(users, roles, c)
    profiles = pkg.tables.get("userProfiles")
    if roles is not None and profiles is not None and "userProfileSourcedId" in roles.frame.columns \
            and {"sourcedId", "userSourcedId"} <= set(profiles.frame.columns) and len(profiles.frame):
        _check_profile_owner(roles, profiles, c)
    _check_gradebook(pkg, c)
    if c.profile.asm_checks:
        _check_asm(pkg, version, c)


def _parent_cycles(ids: pd.Series, parents: pd.Series) -> Mask:
    """Rows whose parent chain never ends (oneroster.md §8 recommends the check).

    Pointer doubling: after k rounds each row knows its 2^k-th ancestor, so
    log2(n) rounds decide every chain; a chain still going after that loops.
    """
    n = len(ids)
    first = np.flatnonzero(~duplicate_mask(strings(ids)))  # duplicates are reported elsewhere
    index = pd.Index(ids.to_numpy(dtype=object)[first])
    up = index.get_indexer(parents.to_numpy(dtype=object))  # -1: no parent (or unknown: reported elsewhere)
    up = np.where(up < 0, n, first[up]).astype(np.int64)
    up = np.append(up, n)  # row n is the root sentinel
    for _ in range(max(1, int(np.ceil(np.log2(n + 1))) + 1)):
        up = up[up]
    cycles: Mask = up[:n] != n
    return cycles


def _check_profile_owner(roles: ReadTable, profiles: ReadTable, c: Collector) -> None:
    """1.2: a role's userProfile must belong to the role's user (oneroster.md §7.6, LSG)."""
    r, p = roles.frame, profiles.frame
    sep = pa.scalar("\x1f", type=strings(r["userSourcedId"]).type)
    wanted = pc.binary_join_element_wise(strings(r["userProfileSourcedId"]), strings(r["userSourcedId"]), sep)
    have = pc.binary_join_element_wise(strings(p["sourcedId"]), strings(p["userSourcedId"]), sep)
    owned = pc.is_in(wanted, value_set=have.combine_chunks()).to_numpy(zero_copy_only=False)
    exists = ~missing_in(r["userProfileSourcedId"], p["sourcedId"]).to_numpy()  # else: missing_record
    flag(c, "oneroster.roles.profile_of_other_user", roles, "userProfileSourcedId",
         nonempty(r["userProfileSourcedId"]).to_numpy() & exists & ~owned)


def _check_primary_org(users: ReadTable, roles: ReadTable, c: Collector) -> None:
    """1.2: a user's primaryOrgSourcedId must be backed by a roles.csv row (oneroster.md §7.5, LSG)."""
    u, r = users.frame, roles.frame
    org = strings(u["primaryOrgSourcedId"])
    sep = pa.scalar("\x1f", type=org.type)
    wanted = pc.binary_join_element_wise(strings(u["sourcedId"]), org, sep)
    have = pc.binary_join_element_wise(strings(r["userSourcedId"]), strings(r["orgSourcedId"]), sep)
    known = pc.is_in(wanted, value_set=have.combine_chunks()).to_numpy(zero_copy_only=False)
    flag(c, "oneroster.roles.primary_org_without_role", users, "primaryOrgSourcedId",
         nonempty(u["primaryOrgSourcedId"]).to_numpy() & ~known)


def _check_gradebook(pkg: Package, c: Collector) -> None:
    """oneroster.md §7.11, §8 (LSG): a line item's minimum is not above its maximum, a result's
    score lies between its line item's, and a CASE learning objective is named by a urn:uuid."""
    items = pkg.tables.get("lineItems")
    bounds = None
    if items is not None and {"sourcedId", "resultValueMin", "resultValueMax"} <= set(items.frame.columns) \
            and len(items.frame):
        low, high = _numbers(items.frame["resultValueMin"]), _numbers(items.frame["resultValueMax"])
        flag(c, "oneroster.lineitem.min_above_max", items, "resultValueMin", low > high)
        bounds = (items.frame["sourcedId"], low, high)
    results = pkg.tables.get("results")
    if bounds is not None and results is not None and {"lineItemSourcedId", "score"} <= set(results.frame.columns) \
            and len(results.frame):
        ids, low, high = bounds
        at = position_in(results.frame["lineItemSourcedId"], ids)
        score = _numbers(results.frame["score"])
        found = at >= 0
        limit_low = np.where(found, low[np.maximum(at, 0)], np.nan)
        limit_high = np.where(found, high[np.maximum(at, 0)], np.nan)
        _flag_bound(c, "oneroster.result.score_above_max", results, score > limit_high, limit_high)
        _flag_bound(c, "oneroster.result.score_below_min", results, score < limit_low, limit_low)
    for stem in S.LEARNING_OBJECTIVE_FILES:
        t = pkg.tables.get(stem)
        if t is not None and {"source", "learningObjectiveId"} <= set(t.frame.columns) and len(t.frame):
            case = (t.frame["source"] == "case").to_numpy()
            if case.any():
                flag(c, "oneroster.value.invalid_case_id", t, "learningObjectiveId",
                     case & not_matching(t.frame["learningObjectiveId"], S.CASE_ID_RE).to_numpy())


def _numbers(s: pd.Series) -> np.ndarray:
    """A column of decimal numbers as floats (NaN where empty or not a number: reported elsewhere)."""
    return pd.to_numeric(s.where(s.str.fullmatch(S.FLOAT_RE).fillna(False).astype(bool)),
                         errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _flag_bound(c: Collector, code: str, t: ReadTable, mask: np.ndarray, limits: np.ndarray) -> None:
    """A score outside its line item's range, grouped by limit so that each message can name it
    (the first ten limits; scores past any other limit are reported together)."""
    distinct = np.unique(limits[mask])
    for limit in distinct[:10].tolist():
        flag(c, code, t, "score", mask & (limits == limit), limit=f"{limit:g}")
    if len(distinct) > 10:
        flag(c, code, t, "score", mask & ~np.isin(limits, distinct[:10]), limit="see lineItems.csv")


def _check_asm(pkg: Package, version: str, c: Collector) -> None:
    """oneroster.md §10: what Apple School Manager imports (warnings in the asm profile), and
    Apple's own rules on the values that become ASM identifiers and names (asm.md §1.1), so that
    what the conversion would make of them is refused here, at the district's own file and line."""
    for stem in ("users", "enrollments", "roles"):
        t = pkg.tables.get(stem)
        if t is not None and "role" in t.frame.columns:
            s = t.frame["role"]
            flag(c, "oneroster.asm.role_unsupported", t, "role", not_in(s, S.ASM_ROLES))
    orgs = pkg.tables.get("orgs")
    if orgs is not None and "type" in orgs.frame.columns:
        flag(c, "oneroster.asm.org_type_unsupported", orgs, "type", not_in(orgs.frame["type"], S.ASM_ORG_TYPES))
    for stem, column in S.ASM_ID_SOURCES.items():
        t = pkg.tables.get(stem)
        if t is None or column not in t.frame.columns or column in t.repeated or not len(t.frame):
            continue
        s = t.frame[column]
        sent = _sent_to_asm(stem, t, pkg, version)
        odd, bad = asm_id_problems(s)
        odd, bad = sent & odd, sent & bad
        if odd.any():
            flag(c, "oneroster.asm.invalid_id", t, column, bad)
            flag(c, "oneroster.asm.id_characters", t, column, odd & ~bad)
        flag(c, "oneroster.asm.too_long", t, column, sent & longer_than(s, asm.ID_MAX), limit=asm.ID_MAX,
             asm_column=asm.KEYS[_ASM_FILE_OF[stem]])
    for (stem, column), asm_column in S.ASM_NAME_SOURCES.items():
        t = pkg.tables.get(stem)
        if t is None or column not in t.frame.columns or column in t.repeated or not len(t.frame):
            continue
        flag(c, "oneroster.asm.too_long", t, column, _sent_to_asm(stem, t, pkg, version)
             & longer_than(t.frame[column], asm.NAME_MAX), limit=asm.NAME_MAX, asm_column=asm_column)


#: The ASM file each OneRoster file's rows become (users: students or staff, both keyed by person_id).
_ASM_FILE_OF = {"orgs": "locations", "users": "students", "courses": "courses", "classes": "classes",
                "enrollments": "rosters"}


def _sent_to_asm(stem: str, t: ReadTable, pkg: Package, version: str) -> Mask:
    """The rows of ``t`` the default mapping sends to ASM: people in a family role (guardian, parent,
    relative) and enrolments other than student and teacher ones are left out (docs/mapping.md)."""
    frame = t.frame
    rows: Mask = np.ones(len(frame), dtype=bool)
    if stem == "enrollments" and "role" in frame.columns:
        rows = frame["role"].isin(S.ASM_ROLES).to_numpy()
    elif stem == "users" and version == "1.1" and "role" in frame.columns:
        rows = ~frame["role"].isin(S.FAMILY_ROLES).to_numpy()
    elif stem == "users" and "sourcedId" in frame.columns:
        roles = pkg.tables.get("roles")
        if roles is not None and {"userSourcedId", "role"} <= set(roles.frame.columns):
            school = roles.frame.loc[~roles.frame["role"].isin(S.FAMILY_ROLES), "userSourcedId"]
            family = roles.frame.loc[roles.frame["role"].isin(S.FAMILY_ROLES), "userSourcedId"]
            in_family = position_in(frame["sourcedId"], family) >= 0
            rows = ~in_family | (position_in(frame["sourcedId"], school) >= 0)
    return rows


def _line(t: ReadTable, pos: int) -> int:
    return int(t.lines[pos]) if t.lines is not None else pos + 2
