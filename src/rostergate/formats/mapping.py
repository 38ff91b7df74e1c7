"""Per-tenant mapping options for OneRoster → ASM conversion (docs/mapping.md).

A flow's ``[flows.mapping]`` TOML table is turned into a frozen :class:`Mapping`
by :func:`parse_mapping`, which checks every key up front and raises
:class:`rostergate.config.ConfigError` listing *all* mistakes as
``"<prefix>.<key>: <reason>"``. A :class:`Mapping` is plain data; the converter
applies it column-wise (``formats/oneroster_to_asm.py``, column rules in
``formats/columnrules.py``).

Shape (all keys optional)::

    id_prefix = "north-"                 # prepended to every id, consistently
    instructor_roles = ["teacher"]       # enrolment roles that become instructor_id*
    [roles]                              # person role -> "student" | "staff" | "drop"
    counselor = "drop"
    [filters]                            # include_/exclude_ schools, roles, grades
    include_schools = ["org-hs"]
    [[password_policy]]                  # first matching rule wins
    grades = ["KG", "01"]
    locations = ["org-es"]
    policy = 4
    [students.sis_username]              # one table per overridden ASM column
    template = "{givenName}.{familyName}"
    transform = ["lower", { regex = "[^a-z.]", replace = "" }]
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from rostergate.config import ConfigError

# --- vocabularies -----------------------------------------------------------

Category = Literal["student", "staff", "drop"]

#: Person roles of OneRoster 1.1 users.role (oneroster.md §7.5) and 1.2 roles.role (§7.6).
PERSON_ROLES = (
    "administrator", "aide", "counselor", "districtAdministrator", "guardian", "parent",
    "principal", "proctor", "relative", "siteAdministrator", "student", "systemAdministrator",
    "teacher",
)
#: Enrolment roles (oneroster.md §7.7; 1.1 per OAT also lists parent/guardian/relative/aide).
ENROLLMENT_ROLES = ("administrator", "aide", "proctor", "student", "teacher")

#: Default role → ASM file. asm.md §3.3 [Decision]: teacher/aide/administrator/proctor → staff,
#: guardian/parent/relative dropped. The 1.2-only staff roles (oneroster.md §9: the 1.1
#: "administrator" split into four, plus counselor) are school employees, so staff too.
DEFAULT_ROLES: dict[str, Category] = {
    "student": "student",
    "teacher": "staff", "aide": "staff", "administrator": "staff", "proctor": "staff",
    "districtAdministrator": "staff", "siteAdministrator": "staff",
    "systemAdministrator": "staff", "principal": "staff", "counselor": "staff",
    "guardian": "drop", "parent": "drop", "relative": "drop",
}

#: ASM header rows (asm.md §1.2-§1.7), in template order.
ASM_HEADERS: dict[str, tuple[str, ...]] = {
    "students.csv": ("person_id", "person_number", "first_name", "middle_name", "last_name",
                     "grade_level", "email_address", "sis_username", "password_policy", "location_id"),
    "staff.csv": ("person_id", "person_number", "first_name", "middle_name", "last_name",
                  "email_address", "sis_username", "location_id"),
    "courses.csv": ("course_id", "course_number", "course_name", "location_id"),
    "classes.csv": ("class_id", "class_number", "course_id", "instructor_id", "instructor_id_2",
                    "instructor_id_3", "location_id"),
    "rosters.csv": ("roster_id", "class_id", "student_id"),
    "locations.csv": ("location_id", "location_name"),
}
ASM_FILES = tuple(sorted(ASM_HEADERS))

#: Columns that hold ids or references: never overridden (they must stay consistent
#: across files); ``id_prefix`` is the only way to change them.
ID_COLUMNS = frozenset({
    "person_id", "location_id", "course_id", "class_id", "instructor_id", "roster_id", "student_id",
})

#: Source file behind each overridable ASM file, and its columns (1.1 ∪ 1.2, oneroster.md §6).
_USERS_COLUMNS = (
    "sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
    "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
    "agentSourcedIds", "grades", "password", "userMasterIdentifier", "preferredGivenName",
    "preferredMiddleName", "preferredFamilyName", "primaryOrgSourcedId", "pronouns",
)
SOURCE_OF: dict[str, tuple[str, tuple[str, ...]]] = {
    "students": ("users.csv", _USERS_COLUMNS),
    "staff": ("users.csv", _USERS_COLUMNS),
    "courses": ("courses.csv", ("sourcedId", "status", "dateLastModified", "schoolYearSourcedId",
                                "title", "courseCode", "grades", "orgSourcedId", "subjects",
                                "subjectCodes")),
    "classes": ("classes.csv", ("sourcedId", "status", "dateLastModified", "title", "grades",
                                "courseSourcedId", "classCode", "classType", "location",
                                "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes",
                                "periods")),
    "locations": ("orgs.csv", ("sourcedId", "status", "dateLastModified", "name", "type",
                               "identifier", "parentSourcedId")),
}
#: Optional ASM columns a tenant may switch on by overriding them (asm.md §1.5, Q6).
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"classes": ("class_display_name",)}

PASSWORD_POLICIES = ("4", "6", "8", "")
_ID_PREFIX = re.compile(r"[A-Za-z0-9-]*")  # asm.md §1.1: ids are alphanumeric plus hyphen


# --- the typed mapping ------------------------------------------------------

@dataclass(frozen=True)
class Lower:
    def describe(self) -> str:
        return "lower"


@dataclass(frozen=True)
class Upper:
    def describe(self) -> str:
        return "upper"


@dataclass(frozen=True)
class Trim:
    def describe(self) -> str:
        return "trim"


@dataclass(frozen=True)
class RegexSub:
    """Python ``re.sub(pattern, replace, value)`` on every value."""

    pattern: re.Pattern[str]
    replace: str

    def describe(self) -> str:
        return f"regex {self.pattern.pattern!r} -> {self.replace!r}"


@dataclass(frozen=True)
class DateFormat:
    """Re-format a date: parse with ``source`` (strptime), write with ``target`` (strftime).

    Values that do not parse are left unchanged.
    """

    target: str
    source: str = "%Y-%m-%d"

    def describe(self) -> str:
        return f"date {self.source} -> {self.target}"


Step = Lower | Upper | Trim | RegexSub | DateFormat


@dataclass(frozen=True)
class Template:
    """``{field}`` placeholders (source column names) between literal text."""

    text: str
    parts: tuple[tuple[str, str | None], ...]  # (literal, field or None)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for _, f in self.parts if f is not None)


@dataclass(frozen=True)
class ColumnRule:
    """How one ASM column is filled.

    ``sources`` (first non-empty wins) or ``template`` give the base value (neither:
    the converter's default for that column); ``steps`` transform it in order;
    ``values`` then maps whole values (match codes), ``default`` replacing values
    missing from the table (``None`` keeps them). ``skip`` leaves the column empty.
    """

    sources: tuple[str, ...] = ()
    template: Template | None = None
    steps: tuple[Step, ...] = ()
    values: tuple[tuple[str, str], ...] | None = None  # (source value, ASM value) pairs
    default: str | None = None
    skip: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        """The SchoolMint-style kinds this rule uses: direct, transformation, match, none."""
        if self.skip:
            return ("none",)
        kinds = []
        if self.sources:
            kinds.append("direct")
        if self.template is not None or self.steps:
            kinds.append("transformation")
        if self.values is not None:
            kinds.append("match")
        return tuple(kinds)

    def describe(self) -> str:
        if self.skip:
            return "not mapped"
        parts = []
        if self.sources:
            parts.append(" or ".join(self.sources))
        if self.template is not None:
            parts.append(f"template {self.template.text!r}")
        parts.extend(step.describe() for step in self.steps)
        if self.values is not None:
            parts.append(f"match codes ({len(self.values)})")
        return " | ".join(parts) or "default"


@dataclass(frozen=True)
class PasswordRule:
    """Students at one of ``locations`` (source org ids; empty = any) whose first grade
    code is in ``grades`` (empty = any) get ``policy``."""

    policy: str
    locations: frozenset[str] = frozenset()
    grades: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Filters:
    """Include/exclude rules; empty include sets mean "everything"."""

    include_schools: frozenset[str] = frozenset()
    exclude_schools: frozenset[str] = frozenset()
    include_roles: frozenset[str] = frozenset()
    exclude_roles: frozenset[str] = frozenset()
    include_grades: frozenset[str] = frozenset()
    exclude_grades: frozenset[str] = frozenset()

    def school_allowed(self, org: str) -> bool:
        return (not self.include_schools or org in self.include_schools) and org not in self.exclude_schools


@dataclass(frozen=True)
class Mapping:
    """A tenant's conversion options; ``Mapping()`` is the documented default.

    Plain tuples throughout, so a mapping is immutable, hashable and picklable
    (the pipeline hands it to a worker process).
    """

    id_prefix: str = ""
    roles: tuple[tuple[str, str], ...] = tuple(DEFAULT_ROLES.items())  # (role, category) pairs
    instructor_roles: frozenset[str] = frozenset({"teacher"})
    filters: Filters = field(default_factory=Filters)
    password_policy: tuple[PasswordRule, ...] = ()
    columns: tuple[tuple[str, tuple[tuple[str, ColumnRule], ...]], ...] = ()
    # columns: (("students", (("first_name", ColumnRule(...)), ...)), ...)

    def category(self, role: str) -> Category:
        return dict(self.roles).get(role, "drop")

    def rules_for(self, kind: str) -> dict[str, ColumnRule]:
        return dict(dict(self.columns).get(kind, ()))


# --- parsing ----------------------------------------------------------------

_TOP_KEYS = {"id_prefix", "roles", "instructor_roles", "filters", "password_policy", *SOURCE_OF}
_FILTER_KEYS = {f"{w}_{what}" for w in ("include", "exclude") for what in ("schools", "roles", "grades")}
_RULE_KEYS = {"from", "template", "transform", "values", "default", "map"}


class _Collector:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.problems: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.prefix}.{key}: {reason}")


def parse_mapping(table: dict, prefix: str) -> Mapping:
    """Check a ``[flows.mapping]`` table and build a :class:`Mapping`.

    Raises :class:`ConfigError` naming every wrong key (``f"{prefix}.key: reason"``);
    returns only when the whole table is valid.
    """
    out = _Collector(prefix)
    if not isinstance(table, dict):
        raise ConfigError([f"{prefix}: must be a table"])
    for key in table:
        if key not in _TOP_KEYS:
            out.add(key, f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")

    id_prefix = table.get("id_prefix", "")
    if not isinstance(id_prefix, str) or not _ID_PREFIX.fullmatch(id_prefix):
        out.add("id_prefix", f"must be letters, digits and '-' only (ASM ids, asm.md §1.1); got {id_prefix!r}")
        id_prefix = ""

    roles = dict(DEFAULT_ROLES)
    raw_roles = table.get("roles", {})
    if not isinstance(raw_roles, dict):
        out.add("roles", "must be a table of role = \"student\" | \"staff\" | \"drop\"")
    else:
        for role, target in raw_roles.items():
            if role not in PERSON_ROLES and not role.startswith("ext:"):
                out.add(f"roles.{role}", f"unknown role (expected one of {', '.join(PERSON_ROLES)} or ext:...)")
            elif target not in ("student", "staff", "drop"):
                out.add(f"roles.{role}", f"must be \"student\", \"staff\" or \"drop\"; got {target!r}")
            else:
                roles[role] = target

    instructor_roles = frozenset({"teacher"})
    if "instructor_roles" in table:
        raw = _string_list(table["instructor_roles"], "instructor_roles", out) or []
        bad = [r for r in raw if r not in ENROLLMENT_ROLES and not r.startswith("ext:")]
        if bad:
            out.add("instructor_roles", f"unknown enrolment role {bad[0]!r} (expected {', '.join(ENROLLMENT_ROLES)})")
        elif "student" in raw:
            out.add("instructor_roles", "'student' enrolments go to rosters.csv, not instructor_id")
        elif raw:
            instructor_roles = frozenset(raw)

    filters = _parse_filters(table.get("filters", {}), out)
    policies = _parse_policies(table.get("password_policy", []), out)

    columns: dict[str, tuple[tuple[str, ColumnRule], ...]] = {}
    for kind, (source_file, source_columns) in SOURCE_OF.items():
        if kind not in table:
            continue
        raw_kind = table[kind]
        if not isinstance(raw_kind, dict):
            out.add(kind, "must be a table of ASM column = { ... }")
            continue
        file_name = f"{kind}.csv"
        allowed = set(ASM_HEADERS[file_name]) | set(OPTIONAL_COLUMNS.get(kind, ()))
        rules = {}
        for column, raw_rule in raw_kind.items():
            key = f"{kind}.{column}"
            if column in ID_COLUMNS or re.fullmatch(r"(location_id|instructor_id)_\d+", column):
                out.add(key, "is an id column: ids follow the source sourcedId so references stay "
                             "consistent (use id_prefix to change them)")
                continue
            if column not in allowed:
                out.add(key, f"unknown {file_name} column (expected one of "
                             f"{', '.join(c for c in sorted(allowed) if c not in ID_COLUMNS)})")
                continue
            rule = _parse_rule(raw_rule, key, source_file, source_columns, out)
            if rule is not None:
                rules[column] = rule
        columns[kind] = tuple(rules.items())

    if out.problems:
        raise ConfigError(out.problems)
    return Mapping(
        id_prefix=id_prefix,
        roles=tuple(roles.items()),
        instructor_roles=instructor_roles,
        filters=filters,
        password_policy=policies,
        columns=tuple(columns.items()),
    )


def _string_list(value: Any, key: str, out: _Collector) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        out.add(key, f"must be a list of non-empty strings; got {value!r}")
        return None
    return value


def _parse_filters(raw: Any, out: _Collector) -> Filters:
    if not isinstance(raw, dict):
        out.add("filters", "must be a table")
        return Filters()
    values: dict[str, frozenset[str]] = {}
    for key, value in raw.items():
        if key not in _FILTER_KEYS:
            out.add(f"filters.{key}", f"unknown key (expected one of {', '.join(sorted(_FILTER_KEYS))})")
            continue
        items = _string_list(value, f"filters.{key}", out)
        if items is None:
            continue
        if key.endswith("_roles"):
            bad = [r for r in items if r not in PERSON_ROLES and not r.startswith("ext:")]
            if bad:
                out.add(f"filters.{key}", f"unknown role {bad[0]!r} (expected one of {', '.join(PERSON_ROLES)})")
                continue
        values[key] = frozenset(items)
    return Filters(**values)


def _parse_policies(raw: Any, out: _Collector) -> tuple[PasswordRule, ...]:
    if not isinstance(raw, list):
        out.add("password_policy", "must be an array of tables ([[flows.mapping.password_policy]])")
        return ()
    rules = []
    for index, item in enumerate(raw):
        key = f"password_policy[{index}]"
        if not isinstance(item, dict):
            out.add(key, "must be a table with policy = 4|6|8 and optional locations/grades")
            continue
        for extra in set(item) - {"policy", "locations", "grades"}:
            out.add(f"{key}.{extra}", "unknown key (expected policy, locations, grades)")
        policy = item.get("policy")
        text = str(policy) if isinstance(policy, (int, str)) and not isinstance(policy, bool) else None
        if text not in PASSWORD_POLICIES:
            out.add(f"{key}.policy", f"required: 4, 6, 8 or \"\" (asm.md §1.2); got {policy!r}")
            continue
        locations = _string_list(item.get("locations", []), f"{key}.locations", out) if "locations" in item else []
        grades = _string_list(item.get("grades", []), f"{key}.grades", out) if "grades" in item else []
        if locations is None or grades is None:
            continue
        rules.append(PasswordRule(policy=text, locations=frozenset(locations), grades=frozenset(grades)))
    return tuple(rules)


def _hint(column: str, source_columns: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(column, source_columns, n=1) or \
        [c for c in source_columns if c.lower() == column.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known(column: str, source_columns: tuple[str, ...]) -> bool:
    # OneRoster extension columns are named metadata.* (oneroster.md §2 G7)
    return column in source_columns or (column.startswith("metadata.") and len(column) > 9)


def _parse_rule(raw: Any, key: str, source_file: str, source_columns: tuple[str, ...],
                out: _Collector) -> ColumnRule | None:
    if not isinstance(raw, dict):
        out.add(key, "must be a table with from / template / transform / values / default / map")
        return None
    before = len(out.problems)
    for extra in sorted(set(raw) - _RULE_KEYS):
        out.add(f"{key}.{extra}", f"unknown key (expected one of {', '.join(sorted(_RULE_KEYS))})")
    mapped = raw.get("map", True)
    if not isinstance(mapped, bool):
        out.add(f"{key}.map", f"must be true or false; got {mapped!r}")
    elif mapped is False:
        others = sorted(set(raw) & (_RULE_KEYS - {"map"}))
        if others:
            out.add(key, f"map = false (do not map) cannot be combined with {', '.join(others)}")
            return None
        return ColumnRule(skip=True)

    sources: tuple[str, ...] = ()
    if "from" in raw:
        value = raw["from"]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            out.add(f"{key}.from", f"must be a {source_file} column name or a list of them; got {value!r}")
        else:
            for item in items:
                if not _known(item, source_columns):
                    out.add(f"{key}.from", f"unknown {source_file} column {item!r}{_hint(item, source_columns)}")
            sources = tuple(items)
    template = None
    if "template" in raw:
        if "from" in raw:
            out.add(key, "use either from or template, not both")
        template = _parse_template(raw["template"], f"{key}.template", source_file, source_columns, out)
    steps = _parse_steps(raw.get("transform", []), f"{key}.transform", out)
    values = default = None
    if "values" in raw:
        table = raw["values"]
        if not isinstance(table, dict) or not table:
            out.add(f"{key}.values", "must be a non-empty table of \"source value\" = \"ASM value\"")
        else:
            converted = {}
            for code, target in table.items():
                if isinstance(target, bool) or not isinstance(target, (str, int)):
                    out.add(f"{key}.values.{code}", f"must be a string; got {target!r}")
                else:
                    converted[code] = str(target)
            values = tuple(converted.items())
    if "default" in raw:
        if "values" not in raw:
            out.add(f"{key}.default", "only meaningful with values (the value for codes missing from the table)")
        elif not isinstance(raw["default"], str):
            out.add(f"{key}.default", f"must be a string; got {raw['default']!r}")
        else:
            default = raw["default"]
    if not ({"from", "template", "transform", "values"} & set(raw)) and len(out.problems) == before:
        out.add(key, "says nothing: give from, template, transform, values, or map = false")
    if len(out.problems) > before:
        return None
    return ColumnRule(sources=sources, template=template, steps=steps, values=values, default=default)


def _parse_template(text: Any, key: str, source_file: str, source_columns: tuple[str, ...],
                    out: _Collector) -> Template | None:
    if not isinstance(text, str):
        out.add(key, f"must be a string such as \"{{givenName}}.{{familyName}}\"; got {text!r}")
        return None
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        out.add(key, f"bad template {text!r}: {exc} (write a literal brace as {{{{ or }}}})")
        return None
    parts = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if name == "" or spec or conversion:
            out.add(key, f"placeholders must be plain column names like {{givenName}}; got "
                         f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}")
            return None
        if not _known(name, source_columns):
            out.add(key, f"unknown template field {{{name}}}: not a {source_file} column{_hint(name, source_columns)}")
            return None
        parts.append((literal, name))
    if not any(name for _, name in parts):
        out.add(key, "has no {column} placeholder; a constant belongs in values/default")
        return None
    return Template(text=text, parts=tuple(parts))


def _parse_steps(raw: Any, key: str, out: _Collector) -> tuple[Step, ...]:
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list):
        out.add(key, "must be a list of steps: \"lower\", \"upper\", \"trim\", "
                     "{ regex = ..., replace = ... }, { date = ..., from = ... }")
        return ()
    steps: list[Step] = []
    simple = {"lower": Lower(), "upper": Upper(), "trim": Trim()}
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        if isinstance(item, str):
            if item not in simple:
                out.add(where, f"unknown transformation {item!r} (expected lower, upper, trim, "
                               "{ regex = ..., replace = ... } or { date = ... })")
            else:
                steps.append(simple[item])
        elif isinstance(item, dict) and "regex" in item:
            for extra in sorted(set(item) - {"regex", "replace"}):
                out.add(f"{where}.{extra}", "unknown key (expected regex, replace)")
            step = _parse_regex(item, where, out)
            if step is not None:
                steps.append(step)
        elif isinstance(item, dict) and "date" in item:
            for extra in sorted(set(item) - {"date", "from"}):
                out.add(f"{where}.{extra}", "unknown key (expected date, from)")
            step = _parse_date(item, where, out)
            if step is not None:
                steps.append(step)
        else:
            out.add(where, f"unknown transformation {item!r}")
    return tuple(steps)


def _parse_regex(item: dict, where: str, out: _Collector) -> RegexSub | None:
    pattern, replace = item.get("regex"), item.get("replace", "")
    if not isinstance(pattern, str) or not isinstance(replace, str):
        out.add(where, "regex and replace must be strings")
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        out.add(f"{where}.regex", f"bad regular expression {pattern!r}: {exc}")
        return None
    try:
        # Checks group references (\1, \g<name>) against the pattern without a match.
        re._parser.parse_template(replace, compiled)  # type: ignore[attr-defined]
    except (re.error, IndexError) as exc:
        out.add(f"{where}.replace", f"bad replacement {replace!r}: {exc}")
        return None
    return RegexSub(pattern=compiled, replace=replace)


_DATE_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUWcxXGuV%")


def _parse_date(item: dict, where: str, out: _Collector) -> DateFormat | None:
    target, source = item.get("date"), item.get("from", "%Y-%m-%d")
    ok = True
    for name, fmt in (("date", target), ("from", source)):
        if not isinstance(fmt, str) or not fmt:
            out.add(f"{where}.{name}", f"must be a strftime format such as \"%d/%m/%Y\"; got {fmt!r}")
            ok = False
            continue
        directives = re.findall(r"%(.)", fmt.replace("%%", ""))
        bad = [d for d in directives if d not in _DATE_DIRECTIVES]
        if bad or fmt.replace("%%", "").endswith("%"):
            out.add(f"{where}.{name}", f"unknown date directive %{bad[0] if bad else ''} in {fmt!r}")
            ok = False
        elif not directives:
            out.add(f"{where}.{name}", f"has no % directive: {fmt!r}")
            ok = False
    return DateFormat(target=target, source=source) if ok else None
