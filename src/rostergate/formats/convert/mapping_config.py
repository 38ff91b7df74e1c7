"""A flow's ``[flows.mapping]`` TOML table → a :class:`~.mapping.Mapping`, or every mistake in it.

:func:`parse_mapping` checks every key up front and returns the mapping (``None`` when
anything is wrong) with *all* the problems found, each ``"<prefix>.<key>: <reason>"``;
the configuration loader adds them to its own list. Nothing here raises for bad input.

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

from rostergate.formats.convert.mapping import (
    DEFAULT_ROLES,
    Category,
    ColumnRule,
    DateFormat,
    Filters,
    Lower,
    Mapping,
    PasswordRule,
    RegexSub,
    Step,
    Template,
    Trim,
    Upper,
)
from rostergate.formats.schema.asm import HEADERS, ID_COLUMNS, ID_OK, OPTIONAL, PASSWORD_POLICIES, is_id_column
from rostergate.formats.schema.oneroster import PERSON_ROLES, SCHOOL_ENROLLMENT_ROLES, columns_of

#: The OneRoster file behind each ASM file a tenant may override columns of (asm.md §3.3).
SOURCE_OF: dict[str, str] = {
    "students": "users", "staff": "users", "courses": "courses", "classes": "classes", "locations": "orgs",
}

_TOP_KEYS = {"id_prefix", "roles", "instructor_roles", "filters", "password_policy", *SOURCE_OF}
_FILTER_KEYS = {f"{w}_{what}" for w in ("include", "exclude") for what in ("schools", "roles", "grades")}
_CATEGORIES: dict[str, Category] = {"student": "student", "staff": "staff", "drop": "drop"}
_RULE_KEYS = {"from", "template", "transform", "values", "default", "map"}


class _Collector:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.problems: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.prefix}.{key}: {reason}")


def parse_mapping(table: object, prefix: str) -> tuple[Mapping | None, list[str]]:
    """Check a ``[flows.mapping]`` table and build a :class:`Mapping`.

    Returns the mapping, or ``None`` unless the whole table is valid, and every
    problem found, each naming its key (``f"{prefix}.key: reason"``).
    """
    out = _Collector(prefix)
    if not isinstance(table, dict):
        return None, [f"{prefix}: must be a table"]
    for key in table:
        if key not in _TOP_KEYS:
            out.add(key, f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")

    id_prefix = table.get("id_prefix", "")
    if not isinstance(id_prefix, str) or not set(id_prefix) <= set(ID_OK):
        out.add("id_prefix", f"must be letters, digits and '-' only (ASM ids, asm.md §1.1); got {id_prefix!r}")
        id_prefix = ""

    roles: dict[str, Category] = dict(DEFAULT_ROLES)
    raw_roles = table.get("roles", {})
    if not isinstance(raw_roles, dict):
        out.add("roles", "must be a table of role = \"student\" | \"staff\" | \"drop\"")
    else:
        for role, target in raw_roles.items():
            if role not in PERSON_ROLES and not role.startswith("ext:"):
                out.add(f"roles.{role}", f"unknown role (expected one of {', '.join(PERSON_ROLES)} or ext:...)")
            elif target not in _CATEGORIES:
                out.add(f"roles.{role}", f"must be \"student\", \"staff\" or \"drop\"; got {target!r}")
            else:
                roles[role] = _CATEGORIES[target]

    instructor_roles = frozenset({"teacher"})
    if "instructor_roles" in table:
        raw = _string_list(table["instructor_roles"], "instructor_roles", out) or []
        bad = [r for r in raw if r not in SCHOOL_ENROLLMENT_ROLES and not r.startswith("ext:")]
        if bad:
            out.add("instructor_roles",
                    f"unknown enrolment role {bad[0]!r} (expected {', '.join(SCHOOL_ENROLLMENT_ROLES)})")
        elif "student" in raw:
            out.add("instructor_roles", "'student' enrolments go to rosters.csv, not instructor_id")
        elif raw:
            instructor_roles = frozenset(raw)

    filters = _parse_filters(table.get("filters", {}), out)
    policies = _parse_policies(table.get("password_policy", []), out)

    columns: dict[str, tuple[tuple[str, ColumnRule], ...]] = {}
    for kind, source in SOURCE_OF.items():
        source_file, source_columns = f"{source}.csv", columns_of(source)
        if kind not in table:
            continue
        raw_kind = table[kind]
        if not isinstance(raw_kind, dict):
            out.add(kind, "must be a table of ASM column = { ... }")
            continue
        file_name = f"{kind}.csv"
        allowed = set(HEADERS[kind]) | set(OPTIONAL.get(kind, ()))
        rules = {}
        for column, raw_rule in raw_kind.items():
            key = f"{kind}.{column}"
            if is_id_column(column):
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
        return None, out.problems
    return Mapping(
        id_prefix=id_prefix,
        roles=tuple(roles.items()),
        instructor_roles=instructor_roles,
        filters=filters,
        password_policy=policies,
        columns=tuple(columns.items()),
    ), []


def _string_list(value: object, key: str, out: _Collector) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        out.add(key, f"must be a list of non-empty strings; got {value!r}")
        return None
    return value


def _parse_filters(raw: object, out: _Collector) -> Filters:
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


def _parse_policies(raw: object, out: _Collector) -> tuple[PasswordRule, ...]:
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


def _parse_rule(raw: object, key: str, source_file: str, source_columns: tuple[str, ...],
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


def _parse_template(text: object, key: str, source_file: str, source_columns: tuple[str, ...],
                    out: _Collector) -> Template | None:
    if not isinstance(text, str):
        out.add(key, f"must be a string such as \"{{givenName}}.{{familyName}}\"; got {text!r}")
        return None
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        out.add(key, f"bad template {text!r}: {exc} (write a literal brace as {{{{ or }}}})")
        return None
    parts: list[tuple[str, str | None]] = []
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


def _parse_steps(raw: object, key: str, out: _Collector) -> tuple[Step, ...]:
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list):
        out.add(key, "must be a list of steps: \"lower\", \"upper\", \"trim\", "
                     "{ regex = ..., replace = ... }, { date = ..., from = ... }")
        return ()
    steps: list[Step] = []
    simple: dict[str, Step] = {"lower": Lower(), "upper": Upper(), "trim": Trim()}
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
            regex = _parse_regex(item, where, out)
            if regex is not None:
                steps.append(regex)
        elif isinstance(item, dict) and "date" in item:
            for extra in sorted(set(item) - {"date", "from"}):
                out.add(f"{where}.{extra}", "unknown key (expected date, from)")
            date = _parse_date(item, where, out)
            if date is not None:
                steps.append(date)
        else:
            out.add(where, f"unknown transformation {item!r}")
    return tuple(steps)


def _parse_regex(item: dict[str, object], where: str, out: _Collector) -> RegexSub | None:
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


def _parse_date(item: dict[str, object], where: str, out: _Collector) -> DateFormat | None:
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
    if not ok or not isinstance(target, str) or not isinstance(source, str):
        return None
    return DateFormat(target=target, source=source)
