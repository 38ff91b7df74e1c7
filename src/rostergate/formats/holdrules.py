"""When what an upload changes is too much to deliver unattended: the hold rules.

:func:`rostergate.formats.snapshot.diff` compares an upload with the account's last
delivery and returns :class:`Changes`; :func:`reasons_to_hold` says why they exceed a
flow's :class:`Thresholds`, or why a delivery may not go unattended at all (no students,
staff or rosters, an account's first delivery included; empty: the run may go), and :func:`parse_thresholds`
reads a flow's ``[flows.safeguards]``. Plain Python, no pandas or Arrow: the
configuration and the CLI import this without paying for the diff's libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


class FileChanges(TypedDict):
    """Rows of one ASM file before and now, and what became of them."""

    before: int
    now: int
    added: int
    removed: int
    changed: int
    unchanged: int


class Changes(TypedDict):
    """:func:`~rostergate.formats.snapshot.diff`'s result: ``baseline`` is false on a first delivery
    (nothing to compare with); ``asm`` is false when the delivery holds none of Apple's six files (a
    flow with ``output = "same"`` forwarding OneRoster as it came), which the never-empty rule then
    leaves alone."""

    baseline: bool
    asm: bool
    files: dict[str, FileChanges]


@dataclass(frozen=True)
class Thresholds:
    """Hold a run when a file loses more than ``max_removed_percent`` of its previous rows.

    Files with fewer than ``min_previous_rows`` rows before are not judged by
    percentage (a small school losing 2 of 5 classes is ordinary), but a file
    that had rows and now has none is always held.
    """

    max_removed_percent: float = 10.0
    min_previous_rows: int = 20
    enabled: bool = True


def parse_thresholds(table: object, prefix: str) -> tuple[Thresholds, list[str]]:
    """``[flows.safeguards]`` → :class:`Thresholds` and a list of ``key: reason`` problems."""
    problems: list[str] = []
    if not isinstance(table, dict):
        return Thresholds(), [f"{prefix}: must be a table"]
    default = Thresholds()
    max_removed_percent, min_previous_rows = default.max_removed_percent, default.min_previous_rows
    enabled = default.enabled
    for key, value in table.items():
        if key == "enabled":
            if not isinstance(value, bool):
                problems.append(f"{prefix}.enabled: must be true or false")
            else:
                enabled = value
        elif key == "max_removed_percent":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:
                problems.append(f"{prefix}.max_removed_percent: must be a number from 0 to 100")
            else:
                max_removed_percent = float(value)
        elif key == "min_previous_rows":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{prefix}.min_previous_rows: must be a whole number >= 0")
            else:
                min_previous_rows = value
        else:
            problems.append(f"{prefix}.{key}: unknown key (enabled, max_removed_percent, min_previous_rows)")
    return Thresholds(max_removed_percent, min_previous_rows, enabled), problems


#: Files that may never be delivered empty, first delivery or not: an upload without students, staff or
#: rosters tells Apple that every one of them left (asm.md §2.3: rosters need at least one student, §2.5).
NEVER_EMPTY = ("students.csv", "staff.csv", "rosters.csv")

_WHO = {"students.csv": "student", "staff.csv": "staff member", "rosters.csv": "student's class membership"}


def reasons_to_hold(summary: Changes, thresholds: Thresholds) -> list[str]:
    """Why the change is too big to deliver unattended (empty when it may go).

    With a baseline: a file that empties, or loses more than the flow allows. Always, the
    first delivery of an account included: a file of :data:`NEVER_EMPTY` with no rows
    (there is nothing to compare a first delivery with, but nothing is needed to see
    that an empty students.csv would deactivate every student). ``enabled = false`` is
    the operator's switch for all of it.
    """
    if not thresholds.enabled:
        return []
    reasons = []
    for name, counts in summary["files"].items():
        before, removed = counts["before"], counts["removed"]
        if before and counts["now"] == 0:
            reasons.append(f"{name} would go from {before} rows to none")
        elif name in NEVER_EMPTY and counts["now"] == 0 and summary.get("asm", True):
            first = "" if summary["baseline"] else " in the account's first delivery"
            reasons.append(f"{name} would be delivered with no rows{first}, which tells Apple that every "
                           f"{_WHO[name]} left")
        elif summary["baseline"] and before >= thresholds.min_previous_rows \
                and removed * 100 > thresholds.max_removed_percent * before:
            share = removed * 100 / before
            reasons.append(
                f"{name} would lose {removed} of {before} rows ({share:.1f}%, more than the "
                f"{thresholds.max_removed_percent:g}% allowed)"
            )
    return reasons


def render_diff(summary: Changes) -> str:
    """The changes as a table for people, one line per file."""
    lines = ["file            before      now    added  removed  changed"]
    for name, c in summary["files"].items():
        lines.append(f"{name:<14}{c['before']:>8} {c['now']:>8} {c['added']:>8} {c['removed']:>8} {c['changed']:>8}")
    if not summary["baseline"]:
        lines.append("(first delivery for this account: nothing to compare with)")
    return "\n".join(lines)
