"""The column-rule engine: the mapped (non-id) columns of each ASM file.

:func:`fill` computes every mapped column of one ASM file from its aligned
source frame: the column's default source (the ``*_DEFAULTS`` tables, asm.md
§3.3) or the mapping's ``from``/``template`` override, then its ``transform``
steps, then its ``values``/``default`` table (docs/mapping.md §2.5). A source
column the file lacks reads as empty and adds one warning
``convert.mapping.missing_column``. :func:`describe_rules` names the rule behind
each column for the preview; :func:`apply_prefix` applies ``id_prefix`` to every
id and reference. All work is per column, never per row.
"""

from __future__ import annotations

import re

import pandas as pd

from rostergate.formats.catalogue import issue
from rostergate.formats.convert.frames import col
from rostergate.formats.convert.mapping import ColumnRule, DateFormat, Lower, Mapping, RegexSub, Template, Trim, Upper
from rostergate.formats.issues import Issue
from rostergate.formats.schema.asm import is_id_column


def _base_values(src: pd.DataFrame, rule: ColumnRule, issues: list[Issue], file: str) -> pd.Series:
    if rule.template is not None:
        return _render_template(src, rule.template, issues, file)
    result: pd.Series | None = None
    for source in rule.sources:
        if source not in src.columns:
            _warn_missing_column(issues, file, source)
        values = col(src, source)
        result = values if result is None else result.where(result != "", values)
    return result if result is not None else pd.Series("", index=src.index, dtype="str")


def _render_template(src: pd.DataFrame, template: Template, issues: list[Issue], file: str) -> pd.Series:
    out = pd.Series("", index=src.index, dtype="str")
    for literal, name in template.parts:
        if literal:
            out = out + literal
        if name is not None:
            if name not in src.columns:
                _warn_missing_column(issues, file, name)
            out = out + col(src, name)
    return out


def _warn_missing_column(issues: list[Issue], file: str, column: str) -> None:
    warning = issue("convert.mapping.missing_column", file=file, column=column)
    if warning not in issues:
        issues.append(warning)


def _apply_steps(values: pd.Series, rule: ColumnRule) -> pd.Series:
    for step in rule.steps:
        if isinstance(step, Lower):
            values = values.str.lower()
        elif isinstance(step, Upper):
            values = values.str.upper()
        elif isinstance(step, Trim):
            values = values.str.strip()
        elif isinstance(step, RegexSub):
            # Python re semantics (the config was checked with re), not pyarrow's RE2.
            values = values.astype(object).str.replace(step.pattern, step.replace, regex=True).astype("str")
        elif isinstance(step, DateFormat):
            parsed = pd.to_datetime(values, format=step.source, errors="coerce")
            formatted = parsed.dt.strftime(step.target)
            values = formatted.where(parsed.notna(), values).astype("str")
    if rule.values is not None:
        mapped = values.map(dict(rule.values))
        values = mapped.fillna(values if rule.default is None else rule.default).astype("str")
    return values


def fill(src: pd.DataFrame, defaults: dict[str, ColumnRule], overrides: dict[str, ColumnRule],
         optional: dict[str, ColumnRule], issues: list[Issue], file: str) -> dict[str, pd.Series]:
    """Compute every mapped (non-id) column of one ASM file from its aligned source frame."""
    columns: dict[str, pd.Series] = {}
    for column, default in {**defaults, **{k: v for k, v in optional.items() if k in overrides}}.items():
        rule = overrides.get(column)
        if rule is not None and rule.skip:
            columns[column] = pd.Series("", index=src.index, dtype="str")
            continue
        base_rule = rule if rule is not None and (rule.sources or rule.template) else default
        values = _base_values(src, base_rule, issues, file)
        columns[column] = _apply_steps(values, rule) if rule is not None else values
    return columns


def _d(*sources: str) -> ColumnRule:
    return ColumnRule(sources=sources)


#: Default (non-id) column sources, asm.md §3.3. ``_grade`` and ``_password_policy``
#: are derived columns the converter adds to the users frame.
PERSON_DEFAULTS = {
    "person_number": _d("identifier"), "first_name": _d("givenName"), "middle_name": _d("middleName"),
    "last_name": _d("familyName"), "grade_level": _d("_grade"), "email_address": _d("email"),
    "sis_username": _d("username"), "password_policy": _d("_password_policy"),
}
COURSE_DEFAULTS = {"course_number": _d("courseCode"), "course_name": _d("title")}
CLASS_DEFAULTS = {"class_number": _d("classCode")}
CLASS_OPTIONAL = {"class_display_name": _d("title")}  # asm.md §3.3 [Decision/Unverified]: opt-in
LOCATION_DEFAULTS = {"location_name": _d("name")}


def describe_rules(name: str, source_format: str, mapping: Mapping, columns: list[str]) -> dict[str, str]:
    kind = name[:-4]
    if source_format == "asm":
        return {c: "as uploaded" for c in columns}
    defaults = {"students": PERSON_DEFAULTS, "staff": PERSON_DEFAULTS, "courses": COURSE_DEFAULTS,
                "classes": {**CLASS_DEFAULTS, **CLASS_OPTIONAL}, "locations": LOCATION_DEFAULTS}.get(kind, {})
    overrides = mapping.rules_for(kind)
    structural = {
        "person_id": "sourcedId", "location_id": "org (first)", "course_id": "sourcedId",
        "class_id": "sourcedId", "roster_id": "enrollment sourcedId", "student_id": "userSourcedId",
        "instructor_id": "teacher enrolment 1 (primary first)",
    }
    if kind in ("students", "staff"):
        structural["location_id"] = ("roles.csv org 1 (primaryOrgSourcedId, then roleType=primary)"
                                     if source_format == "oneroster-1.2" else "orgSourcedIds (first)")
    elif kind == "courses":
        structural["location_id"] = "orgSourcedId"
    elif kind == "classes":
        structural["location_id"] = "schoolSourcedId"
        structural["course_id"] = "courseSourcedId"
    elif kind == "rosters":
        structural["class_id"] = "classSourcedId"
    elif kind == "locations":
        structural["location_id"] = "sourcedId"
    special = {"_grade": "grades (first)", "_password_policy": "password_policy rules"}

    def label(rule: ColumnRule) -> str:
        return special.get(rule.sources[0], rule.describe()) if len(rule.sources) == 1 else rule.describe()

    out = {}
    for column in columns:
        base = re.sub(r"_\d+$", "", column)
        if column in overrides:
            rule = overrides[column]
            text = rule.describe()
            if not (rule.sources or rule.template or rule.skip) and column in defaults:
                text = f"{label(defaults[column])} | {text}"
        elif column in defaults:
            text = label(defaults[column])
        elif base != column and base in ("location_id", "instructor_id"):
            number = column.rsplit("_", 1)[1]
            text = f"org {number} of the person" if base == "location_id" else f"teacher enrolment {number}"
        else:
            text = structural.get(column, "")
        if mapping.id_prefix and is_id_column(column):
            text = f"{mapping.id_prefix!r} + {text}"
        out[column] = text
    return out


#: For each ASM file, the OneRoster column its structural (id and reference) columns are copied from
#: (asm.md §3.3); ``None`` where the value is assembled from another file (a 1.2 person's locations come
#: from roles.csv, a class's instructors from enrollments.csv).
_STRUCTURAL_SOURCES: dict[str, dict[str, str | None]] = {
    "students": {"person_id": "sourcedId", "location_id": "orgSourcedIds"},
    "staff": {"person_id": "sourcedId", "location_id": "orgSourcedIds"},
    "courses": {"course_id": "sourcedId", "location_id": "orgSourcedId"},
    "classes": {"class_id": "sourcedId", "course_id": "courseSourcedId", "location_id": "schoolSourcedId",
                "instructor_id": None},
    "rosters": {"roster_id": "sourcedId", "class_id": "classSourcedId", "student_id": "userSourcedId"},
    "locations": {"location_id": "sourcedId"},
}
_DERIVED_SOURCES = {"_grade": "grades", "_password_policy": None}


def source_column(asm_file: str, column: str, source_format: str, mapping: Mapping) -> str | None:
    """The source column an ASM column's value was taken from (``None`` when it was assembled
    from several, or from another file): for pointing a problem in the output at the upload."""
    if source_format == "asm":
        return column
    kind = asm_file.removesuffix(".csv")
    base = re.sub(r"_\d+$", "", column)
    structural = _STRUCTURAL_SOURCES.get(kind, {})
    if base in structural:
        if kind in ("students", "staff") and base == "location_id" and source_format == "oneroster-1.2":
            return None
        return structural[base]
    defaults = {"students": PERSON_DEFAULTS, "staff": PERSON_DEFAULTS, "courses": COURSE_DEFAULTS,
                "classes": {**CLASS_DEFAULTS, **CLASS_OPTIONAL}, "locations": LOCATION_DEFAULTS}.get(kind, {})
    rule = mapping.rules_for(kind).get(column)
    if rule is None or not (rule.sources or rule.template):
        rule = defaults.get(column)
    if rule is None or rule.template is not None or not rule.sources:
        return None
    first = rule.sources[0]
    return _DERIVED_SOURCES.get(first, first) if first.startswith("_") else first


def apply_prefix(tables: dict[str, pd.DataFrame], prefix: str) -> dict[str, pd.DataFrame]:
    """Prefix every non-empty id and reference, in every file, the same way."""
    if not prefix:
        return tables
    out = {}
    for name, frame in tables.items():
        frame = frame.copy()
        for column in frame.columns:
            if is_id_column(column):
                values = frame[column]
                frame[column] = values.where(values == "", prefix + values)
        out[name] = frame
    return out
