"""Validation profiles: which rules are errors and which are warnings.

``strict`` applies the standards as written. ``asm`` is "what Apple School
Manager accepts" (oneroster.md §10): the five files Apple imports become
required, a missing academicSessions.csv, roles other than student/teacher,
org types other than school/district, delta files and files the format does not
know become warnings, and the bulk-mode "status must be empty" rule is relaxed to a
warning because Apple documents ``active``/``tobedeleted`` values in full uploads.
It also adds Apple's rules for the OneRoster values that become ASM identifiers
and names (``oneroster.asm.*``), so that a value ASM would refuse is found at the
district's own file and line, before any conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rostergate.formats.issues import Severity
from rostergate.formats.schema.oneroster import ASM_FILES

ProfileName = Literal["strict", "asm"]


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    #: code -> severity, applied after a rule chose its own severity
    overrides: Mapping[str, Severity] = field(default_factory=dict)
    #: OneRoster data files that must be present (file stems)
    required_oneroster_files: frozenset[str] = frozenset()
    #: run the Apple-specific OneRoster checks (oneroster.asm.*)
    asm_checks: bool = False
    #: a reference into an absent academicSessions.csv is only a warning
    lenient_sessions: bool = False

    def severity(self, code: str, chosen: Severity) -> Severity:
        return self.overrides.get(code, chosen)


STRICT = Profile("strict")

ASM = Profile(
    "asm",
    overrides={"oneroster.status.forbidden_in_bulk": "warning",
               # Apple's importer ignores files it does not know; the standard's peers refuse them
               "oneroster.file.unknown": "warning", "asm.file.unexpected": "warning"},
    required_oneroster_files=frozenset(ASM_FILES),
    asm_checks=True,
    lenient_sessions=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (STRICT, ASM)}


def get_profile(name: str | Profile) -> Profile:
    """Look a profile up by name (``ValueError`` naming the choices if unknown)."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
