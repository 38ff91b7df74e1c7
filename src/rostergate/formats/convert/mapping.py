"""A tenant's options for OneRoster → ASM conversion, as plain frozen data (docs/mapping.md).

A :class:`Mapping` says which roles go to which ASM file, which schools, roles and grades
are left out, which password policy students get, and how each overridable ASM column is
filled (:class:`ColumnRule`: sources or a template, transformation steps, a value table).
``Mapping()`` is the documented default. The converter applies it column-wise
(:mod:`.oneroster_to_asm`, column rules in :mod:`.columnrules`); :mod:`.mapping_config`
builds one from a flow's ``[flows.mapping]`` table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

# --- vocabularies -----------------------------------------------------------

Category = Literal["student", "staff", "drop"]

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

@dataclass(frozen=True)
class Mapping:
    """A tenant's conversion options; ``Mapping()`` is the documented default.

    Plain tuples throughout, so a mapping is immutable, hashable and picklable
    (the pipeline hands it to a worker process).
    """

    id_prefix: str = ""
    roles: tuple[tuple[str, Category], ...] = tuple(DEFAULT_ROLES.items())  # (role, category) pairs
    instructor_roles: frozenset[str] = frozenset({"teacher"})
    filters: Filters = field(default_factory=Filters)
    password_policy: tuple[PasswordRule, ...] = ()
    columns: tuple[tuple[str, tuple[tuple[str, ColumnRule], ...]], ...] = ()
    # columns: (("students", (("first_name", ColumnRule(...)), ...)), ...)

    def category(self, role: str) -> Category:
        return dict(self.roles).get(role, "drop")

    def rules_for(self, kind: str) -> dict[str, ColumnRule]:
        return dict(dict(self.columns).get(kind, ()))
